"""Launchers: one absl module per experiment (`python -m launch.<name>`).

Importing the package sets `TF_CPU_ALLOCATOR_USE_BFC=true` unless the environment already sets
it, before any launcher imports TensorFlow: TensorFlow then pools its CPU memory instead of
handing freed multi-megabyte buffers back to the OS and page-faulting them in again on the next
step. On the project's 2-core machine this made XLA training of `vgg("cifar10", width=0.25)`
~1.35x faster and the classifier's forward ~15% faster (bench/README.md); results are unchanged
(`launch.reproduce --profile=quick` wrote the same tables byte for byte with and without it).
Set it to "false" to use TensorFlow's default allocator; `TF_CPU_BFC_MEM_LIMIT_IN_MB` bounds the
pool (TensorFlow's default: 64 GiB).
"""

import os

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import os

# The launchers' flagfiles (generated from the study's grid by `python -m launch.write_configs`).
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
