"""Argument checks shared by the ops: clear errors that name the argument and the fix.

Static facts (rank, known sizes, Python numbers) are checked when the op is built and raise
`ValueError`; values only known at run time are checked with `tf.debugging` asserts, which raise
`tf.errors.InvalidArgumentError` with the same kind of message. The `ensure_*` checks accept a
rank or size unknown when a function is traced (`tf.TensorSpec(shape=None)`): they check it at
run time and return the tensor with the checked static shape.
"""

import math

import tensorflow as tf

FLOAT_DTYPES = (tf.float16, tf.bfloat16, tf.float32, tf.float64)


def compute_dtype(*dtypes):
    """The float dtype the ops compute in: float64 if any input is float64, else float32.

    float16/bfloat16 and integer images are computed in float32 so that pixel coordinates keep
    sub-pixel precision (float16 has a step of 0.125 px at 224 px).
    """
    return tf.float64 if any(d == tf.float64 for d in dtypes) else tf.float32


def check_rank(tensor, rank, name, layout):
    """Raises ValueError unless `tensor` has static rank `rank` (layout names the axes)."""
    if tensor.shape.rank is None:
        raise ValueError(f"`{name}` must have a known rank {rank} {layout}; its rank is unknown.")
    if tensor.shape.rank != rank:
        raise ValueError(
            f"`{name}` must have rank {rank} {layout}, got shape {tensor.shape.as_list()}."
        )


def ensure_rank(tensor, rank, name, layout):
    """`check_rank` when the rank is known, else a run-time check; returns `tensor`.

    The returned tensor has static rank `rank`; with an unknown rank it first asserts the rank
    at run time (InvalidArgumentError naming `name` and `layout`).
    """
    if tensor.shape.rank is not None:
        check_rank(tensor, rank, name, layout)
        return tensor
    check = tf.debugging.assert_rank(
        tensor, rank, message=f"`{name}` must have rank {rank} {layout}.")
    with tf.control_dependencies([check]):
        return tf.ensure_shape(tensor, [None] * rank)


def ensure_last_dim(tensor, size, name, meaning):
    """`check_last_dim` when the size is known, else a run-time check; returns `tensor`.

    `tensor` must have a known rank (see `ensure_rank`); the returned tensor's last axis is
    statically `size`.
    """
    check_last_dim(tensor, size, name, meaning)
    if tensor.shape[-1] is not None:
        return tensor
    check = tf.debugging.assert_equal(
        tf.shape(tensor)[-1], size,
        message=f"The last axis of `{name}` must have size {size} ({meaning}).")
    with tf.control_dependencies([check]):
        return tf.ensure_shape(tensor, tensor.shape[:-1].concatenate([size]))


def check_last_dim(tensor, size, name, meaning):
    """Raises ValueError unless the last axis of `tensor` is statically `size` (or unknown)."""
    last = tensor.shape[-1]
    if last is not None and last != size:
        raise ValueError(
            f"The last axis of `{name}` must have size {size} ({meaning}), "
            f"got shape {tensor.shape.as_list()}."
        )


def ensure_same_sizes(first, second, axes, message):
    """Checks that two tensors agree on pairs of axes; returns `second` (after the check).

    Args:
      first, second: tensors of known rank.
      axes: pairs (axis of `first`, axis of `second`) that must have equal sizes.
      message: the error message, naming both arguments (e.g. "`image` and `flow` must have the
        same batch, height and width.").

    Sizes known when the op is built are compared then (ValueError, with both shapes); the others
    at run time (InvalidArgumentError).
    """
    for axis_first, axis_second in axes:
        a, b = first.shape[axis_first], second.shape[axis_second]
        if a is not None and b is not None and a != b:
            raise ValueError(f"{message} Got shapes {first.shape.as_list()} and "
                             f"{second.shape.as_list()}.")
    if all(first.shape[i] is not None and second.shape[j] is not None for i, j in axes):
        return second
    check = tf.debugging.assert_equal(
        tf.gather(tf.shape(first), [i for i, _ in axes]),
        tf.gather(tf.shape(second), [j for _, j in axes]), message=message)
    with tf.control_dependencies([check]):
        return tf.identity(second)


def check_image_dtype(image, name="image"):
    """Raises ValueError unless `image` is a float or uint8/uint16/int image."""
    if not (image.dtype.is_floating or image.dtype.is_integer):
        raise ValueError(f"`{name}` must be a float or integer image, got dtype {image.dtype.name}.")


def check_float(tensor, name):
    """Raises ValueError unless `tensor` has a floating dtype."""
    if not tensor.dtype.is_floating:
        raise ValueError(f"`{name}` must be a float tensor (pixels), got dtype {tensor.dtype.name}.")


def assert_finite(tensor, name, meaning="pixel coordinates"):
    """Run-time check that `tensor` holds no NaN/Inf; returns `tensor` (identity otherwise)."""
    return tf.debugging.assert_all_finite(
        tensor, f"`{name}` must hold finite {meaning} (no NaN or Inf)."
    )


def ensure_batch_broadcasts(first, second, message):
    """Checks that two tensors' first axes are equal or one of them is 1; returns `second`.

    Known sizes are compared when the op is built (ValueError, with both shapes), the others at
    run time (InvalidArgumentError with `message`).
    """
    a, b = first.shape[0], second.shape[0]
    if a is not None and b is not None:
        if a != b and 1 not in (a, b):
            raise ValueError(f"{message} Got shapes {first.shape.as_list()} and "
                             f"{second.shape.as_list()}.")
        return second
    size_a, size_b = tf.shape(first)[0], tf.shape(second)[0]
    check = tf.debugging.Assert(
        (size_a == size_b) | (size_a == 1) | (size_b == 1), [message, size_a, size_b])
    with tf.control_dependencies([check]):
        return tf.identity(second)


def check_grid_size(grid_size):
    """Returns (rows, cols) from an int or a pair; raises ValueError if any is < 2."""
    if isinstance(grid_size, int):
        rows = cols = grid_size
    else:
        try:
            rows, cols = (int(g) for g in grid_size)
        except (TypeError, ValueError):
            raise ValueError(
                f"`grid_size` must be an int or a pair of ints (rows, cols), got {grid_size!r}."
            ) from None
    if rows < 2 or cols < 2:
        raise ValueError(
            f"`grid_size` must be at least 2 per axis (a TPS needs points spanning the image), "
            f"got {grid_size!r}."
        )
    return rows, cols


def check_strength(strength, name="strength",
                   meaning="the maximal source offset in pixels"):
    """Validates a non-negative amount in pixels; returns it (Python float or tensor).

    A Python number must be finite and >= 0 (ValueError); a tensor must be a scalar, and is
    checked to be >= 0 at run time (InvalidArgumentError). Messages name `name` and `meaning`.
    """
    if isinstance(strength, (int, float)):
        if not math.isfinite(strength) or strength < 0:
            raise ValueError(
                f"`{name}` is {meaning} and must be a finite number >= 0, got {strength!r}."
            )
        return float(strength)
    strength = tf.convert_to_tensor(strength)
    if strength.shape.rank not in (None, 0):
        raise ValueError(f"`{name}` must be a scalar, got shape {strength.shape.as_list()}.")
    with tf.control_dependencies(
        [tf.debugging.assert_non_negative(strength, f"`{name}` must be >= 0 pixels.")]
    ):
        return tf.identity(strength)


def batch_size_of(tensor):
    """The size of the first axis: a Python int if known when traced, else an int32 tensor.

    Sizes known as Python ints let checks such as `check_stateless_seed` run when the graph is
    built instead of as run-time asserts (which XLA drops, with a warning in the log).
    """
    return tensor.shape[0] if tensor.shape[0] is not None else tf.shape(tensor)[0]


def check_stateless_seed(seed, batch_size):
    """Validates a stateless seed: integer [2] (per batch) or [batch, 2] (per example)."""
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer:
        raise ValueError(f"`seed` must be an integer tensor of shape [2] or [batch, 2], got "
                         f"dtype {seed.dtype.name}.")
    if seed.shape.rank not in (1, 2):
        raise ValueError(f"`seed` must have shape [2] or [batch, 2], got {seed.shape.as_list()}.")
    check_last_dim(seed, 2, "seed", "a stateless seed pair")
    if seed.shape.rank == 2:
        static_batch = tf.get_static_value(batch_size)
        if static_batch is not None and seed.shape[0] is not None:
            # Known when traced: checked now, so no run-time assert (which XLA would drop).
            if seed.shape[0] != static_batch:
                raise ValueError(f"`seed` of shape [batch, 2] must have one row per image: got "
                                 f"{seed.shape[0]} rows for {static_batch} images.")
            return seed
        with tf.control_dependencies([tf.debugging.assert_equal(
                tf.shape(seed)[0], batch_size,
                message="`seed` of shape [batch, 2] must have one row per image.")]):
            seed = tf.identity(seed)
    return seed
