"""Environment every benchmark sets before TensorFlow is imported.

Call `configure()` before `import tensorflow`; values already in the environment win.

- TF_CPP_MIN_LOG_LEVEL=2: quiet C++ logs.
- TF_CPU_ALLOCATOR_USE_BFC=true: TensorFlow's pooling (BFC) allocator for CPU tensors. With the
  default allocator, glibc malloc returns freed multi-megabyte buffers to the OS and the next
  op page-faults them back in; on the project's 2-core machine that made, e.g., one
  32 x 225 x 225 x 3 resize take 5 ms or 18 ms depending on the allocator's state (thousands of
  page faults per call), so the benchmarks measured the allocator as much as the ops. Pooled
  buffers are reused from the second call on, for every method alike. Set it to "false" to
  measure with the default allocator.
"""

import os

SETTINGS = (("TF_CPP_MIN_LOG_LEVEL", "2"), ("TF_CPU_ALLOCATOR_USE_BFC", "true"))


def configure():
    """Sets the benchmark defaults in `os.environ` (before TensorFlow is imported)."""
    for name, value in SETTINGS:
        os.environ.setdefault(name, value)


def describe():
    """One line for a report: the CPU allocator in effect."""
    value = os.environ.get("TF_CPU_ALLOCATOR_USE_BFC", "(unset)")
    return f"TF_CPU_ALLOCATOR_USE_BFC={value}"
