"""Experiments: the flag-free layer between the command-line tools (`launch/`) and the library.

It names what an experiment is made of, so that a tool or a study picks it by name:
`experiments.models` is the model registry (the paper's VGG nets, keras.applications networks,
reference nets of other kinds, a user's own builder). It imports `deform_tf` and `pipelines`,
never `launch/`; it reads no flag, and its errors name settings (arguments), not flags.
"""
