"""Loading models for measurement: a Keras model, a saved `.keras` file, or a checkpoint.

A checkpoint directory is what the launchers write: `tf.train.Checkpoint(model=...)` files
(`checkpoint`, `ckpt-N.index`, `ckpt-N.data-*`) next to `model_config.json`, what rebuilds the
architecture: the keyword arguments of `deform_tf.models.vgg` (for the VGG family, under "vgg"),
or a model description that a `build` function given to `load_model` reads. A path may name the
directory (the latest checkpoint is used) or one checkpoint prefix (`.../ckpt-N`).

Checkpoint files: `ckpt-N.index` plus `ckpt-N.data-SSSSS-of-TTTTT` (one per shard), listed by
the `checkpoint` state file. A checkpoint is *complete* when its index and all its data shards
are present; `latest_checkpoint` falls back to the newest complete one when the file the state
names is missing (moved away), and reports a damaged state file instead of ignoring it.

Any Keras model can be read from a `.keras` file. A `.keras` file keeps no declared measured
points (`deform_tf.representations.declare_measured_layers`), so a model of the VGG family read
from one is recognized by its layer names and declared again: it is measured at the same 13 / 19
points as when it was built.
"""

import json
import os
import re
import zipfile

import keras
import tensorflow as tf

from deform_tf import models
from deform_tf import representations

MODEL_CONFIG_FILE = "model_config.json"
CHECKPOINT_STATE_FILE = "checkpoint"
_DATA_SHARD = re.compile(r"^(?P<prefix>.+)\.data-(?P<shard>\d{5})-of-(?P<count>\d{5})$")


def save_model_config(directory, **fields):
    """Writes what rebuilds a model to `directory/model_config.json`; returns the path.

    `fields`: the `deform_tf.models.vgg` keyword arguments, or a description a builder reads
    (`load_model`'s `build`; the experiments layer writes its registry's, with a "model" key
    and, for the VGG family, the `vgg` arguments under "vgg").
    """
    vgg_kwargs = _vgg_kwargs(fields)
    if vgg_kwargs is not None:
        models.vgg(**vgg_kwargs)  # fails early on arguments that cannot build a model
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, MODEL_CONFIG_FILE)
    temp = path + ".tmp"  # then renamed: a reader never sees a partial file
    with tf.io.gfile.GFile(temp, "w") as f:
        json.dump(fields, f, indent=2, sort_keys=True)
    tf.io.gfile.rename(temp, path, overwrite=True)
    return path


def _checkpoint_number(prefix):
    match = re.search(r"-(\d+)$", prefix)
    return (int(match.group(1)) if match else -1, prefix)


def complete_checkpoints(directory):
    """Prefixes of the complete checkpoints in `directory` (index and every data shard present),
    oldest first (by N of `ckpt-N`); [] if the directory does not exist."""
    if not tf.io.gfile.isdir(directory):
        return []
    names = set(tf.io.gfile.listdir(directory))
    shards = {}
    for name in names:
        match = _DATA_SHARD.match(name)
        if match:
            shards.setdefault((match["prefix"], int(match["count"])), set()).add(
                int(match["shard"]))
    prefixes = [prefix for (prefix, count), found in shards.items()
                if prefix + ".index" in names and found == set(range(count))]
    return [os.path.join(directory, p) for p in sorted(prefixes, key=_checkpoint_number)]


def checkpoint_files(prefix):
    """The files of checkpoint `prefix` that exist (`prefix.index`, `prefix.data-*`), sorted."""
    directory, base = os.path.split(prefix)
    if not tf.io.gfile.isdir(directory):
        return []
    return [os.path.join(directory, name) for name in sorted(tf.io.gfile.listdir(directory))
            if name == base + ".index" or name.startswith(base + ".data-")]


def latest_checkpoint(directory):
    """The prefix of the checkpoint `directory` stands for, or None if it holds none.

    The latest checkpoint its `checkpoint` state file names, if complete; otherwise (the files
    were moved away, or there is no state file) the newest complete checkpoint present.

    Raises:
      ValueError: the state file exists but cannot be read (named in the message).
    """
    state_path = os.path.join(directory, CHECKPOINT_STATE_FILE)
    present = complete_checkpoints(directory)
    if tf.io.gfile.exists(state_path):
        try:
            state = tf.train.get_checkpoint_state(directory)
        except (ValueError, tf.errors.OpError) as e:  # UnicodeDecodeError is a ValueError
            state, error = None, f"{type(e).__name__}: {e}"
        else:
            error = "not a checkpoint state"
        if state is None or not state.model_checkpoint_path:
            fallback = (f"the newest complete checkpoint ({os.path.basename(present[-1])}) is "
                        "then used" if present else "but the directory holds no complete "
                        "checkpoint either")
            raise ValueError(f"The checkpoint state file {state_path} is damaged ({error}). "
                             f"Move it out of {directory}: {fallback}.")
        named = os.path.basename(state.model_checkpoint_path)
        for prefix in present:
            if os.path.basename(prefix) == named:
                return prefix
    return present[-1] if present else None


def other_checkpoints(prefix):
    """The complete checkpoints beside checkpoint `prefix`, other than it, oldest first."""
    return [p for p in complete_checkpoints(os.path.dirname(prefix))
            if os.path.basename(p) != os.path.basename(prefix)]


def _vgg_kwargs(fields):
    """The `vgg` arguments in a model_config.json's fields, or None (another model)."""
    if "vgg" in fields:
        return fields["vgg"]
    return None if "model" in fields else fields


def _load_checkpoint(path, build):
    directory = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
    config_path = os.path.join(directory, MODEL_CONFIG_FILE)
    if not tf.io.gfile.exists(config_path):
        raise ValueError(
            f"{path!r} is not a .keras file and has no {MODEL_CONFIG_FILE} beside it, so the "
            "architecture is unknown. Pass a model, a .keras file, or a launcher output "
            "checkpoint directory.")
    try:
        with tf.io.gfile.GFile(config_path) as f:
            config = json.load(f)
        vgg_kwargs = _vgg_kwargs(config)
        if build is not None and "model" in config:
            model = build(config)
        elif vgg_kwargs is not None:
            model = models.vgg(**vgg_kwargs)
        else:
            raise ValueError(
                f"its model {config.get('model')!r} is rebuilt by the experiments layer's "
                "model registry: load it with `experiments.runs.load_model`, or measure it "
                "with `python -m launch.profile --model=RUN_DIR`")
    except (ValueError, TypeError) as e:
        raise ValueError(f"Cannot rebuild the model from {config_path}: {e}") from None
    prefix = latest_checkpoint(path) if tf.io.gfile.isdir(path) else path
    if prefix is None:
        raise ValueError(f"No checkpoint found in directory {path!r}.")
    try:
        status = tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
        status.assert_existing_objects_matched()
    except Exception as e:  # pylint: disable=broad-except
        # A damaged file raises anything from OpError to IndexError inside the reader.
        files = ", ".join(checkpoint_files(prefix)) or "no files"
        earlier = other_checkpoints(prefix)
        advice = (f"Give an earlier checkpoint instead, e.g. {earlier[-1]!r}, or move these "
                  "files out of the directory (its newest complete checkpoint is then used)."
                  if earlier else "It is the directory's only checkpoint, so no earlier one "
                  "can be measured instead.")
        raise ValueError(f"Cannot restore the model from checkpoint {prefix!r} ({files}): "
                         f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}. "
                         f"{advice}") from None
    return model


# What to tell a user whose model file holds Python code Keras does not load by default.
UNSAFE_CODE_HINT = ("if you trust the file, load it with keras.models.load_model(path, "
                    "safe_mode=False) and pass the model, or load_model(path, safe_mode=False)")


def _load_keras_file(path, safe_mode, unsafe_hint):
    if path.endswith(".keras") and not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} exists but is not a readable Keras model: a .keras file is "
                         "a zip archive (written by model.save), this file is not one.")
    try:
        return keras.models.load_model(path, safe_mode=safe_mode)
    except Exception as e:  # pylint: disable=broad-except  # Keras raises many types.
        message = (str(e).splitlines() or [""])[0]
        if "safe_mode" in message or "unsafe" in message.lower():
            raise ValueError(
                f"{path!r} holds a layer with Python code (e.g. a Lambda layer), which Keras "
                f"refuses to run from a file by default: {unsafe_hint}; or rebuild the model "
                "without it (a Keras layer or a registered custom layer) and save it again.") \
                from None
        raise ValueError(f"{path!r} exists but is not a readable Keras model "
                         f"({type(e).__name__}: {message[:300]}).") from None


def load_model(source, safe_mode=True, unsafe_hint=UNSAFE_CODE_HINT, build=None):
    """Returns a Keras model from a model, a `.keras`/`.h5` file or a checkpoint path.

    Args:
      source: a `keras.Model` (returned as is) or a path.
      safe_mode: Keras' `safe_mode`: False runs the Python code a file holds (Lambda layers);
        only for files one trusts.
      unsafe_hint: what the message on a file with Python code tells the user to do (a
        launcher names its own flag).
      build: None, or fn(model_config.json fields) -> the model, for checkpoints whose
        model_config.json names a model (a "model" key) rather than `vgg` arguments.

    Raises:
      FileNotFoundError: the path does not exist.
      ValueError: the file cannot be read as a model (named in the message).
    """
    if isinstance(source, keras.Model):
        return source
    path = os.fspath(source)
    if not (tf.io.gfile.exists(path) or tf.io.gfile.exists(path + ".index")):
        raise FileNotFoundError(f"No model at {path!r}: expected a .keras file or a checkpoint.")
    if path.endswith((".keras", ".h5")):
        model = _load_keras_file(path, safe_mode, unsafe_hint)
        vgg_layers = models.vgg_layout_layers(model)
        if vgg_layers:
            representations.declare_measured_layers(model, vgg_layers)
        return model
    return _load_checkpoint(path, build)


def as_representations(model, layers=None, input_shape=None):
    """`deform_tf.representations.Representations` of what to measure.

    Args:
      model: a `Representations`; a `(rep_model, names)` pair (a model returning the outputs to
        measure, and their names); a Keras model or a path (`load_model`).
      layers, input_shape: for a Keras model or a path: the selection and the input size (see
        `deform_tf.representations.representation_model`); must be None otherwise.
    """
    if isinstance(model, (tuple, representations.Representations)):
        if layers is not None or input_shape is not None:
            raise ValueError("`layers` and `input_shape` apply to a Keras model or a path, not to "
                             "a given representation model.")
        if isinstance(model, representations.Representations):
            return model
        rep_model, names = model
        if len(rep_model.outputs) != len(names):
            raise ValueError(
                f"The representation model has {len(rep_model.outputs)} outputs but "
                f"{len(names)} names were given.")
        return representations.Representations(
            rep_model, representations.output_points(rep_model, names))
    return representations.representation_model(load_model(model), layers, input_shape)


def as_representation_model(model):
    """(rep_model, names) of what `as_representations` selects by default."""
    reps = as_representations(model)
    return reps.model, reps.names
