"""Stateless uniform random numbers that are bit-identical everywhere, including under XLA.

Why not `tf.random.stateless_uniform`: for the same seed it returns different numbers inside
`jit_compile=True` functions than in eager/graph mode (XLA has its own Philox lowering), so a
deformation would change with the compilation mode. This module hashes (seed, element index) with
the MurmurHash3 32-bit finalizer, using only uint32 multiply/xor/shift, which every device and XLA
compute identically. The numbers are for sampling deformations, not for cryptography; a test
checks their uniformity and independence across seeds and elements.
"""

import tensorflow as tf

_GOLDEN = 0x9E3779B9


def _u32(value):
    return tf.constant(value, tf.uint32)


def fmix32(h):
    """MurmurHash3's 32-bit finalizer: a bijective avalanche mix of uint32 values."""
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, _u32(16)))
    h = h * _u32(0x85EBCA6B)
    h = tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, _u32(13)))
    h = h * _u32(0xC2B2AE35)
    return tf.bitwise.bitwise_xor(h, tf.bitwise.right_shift(h, _u32(16)))


def _seed_keys(seed):
    """Two uint32 keys [...] from integer seeds [..., 2] (all 64 bits of each word count)."""
    seed = tf.cast(seed, tf.int64)
    low = tf.cast(tf.bitwise.bitwise_and(seed, tf.constant(0xFFFFFFFF, tf.int64)), tf.uint32)
    high = tf.cast(tf.bitwise.right_shift(seed, tf.constant(32, tf.int64)), tf.uint32)
    keys = []
    for start in (0x243F6A88, 0x85A308D3):  # digits of pi: two independent chains
        h = _u32(start)
        for word in (low[..., 0], high[..., 0], low[..., 1], high[..., 1]):
            h = fmix32(tf.bitwise.bitwise_xor(h, word) * _u32(_GOLDEN))
        keys.append(h)
    return keys


def uniform(shape, seed, dtype=tf.float32):
    """Uniform numbers in [0, 1) with 24 random bits, determined by `seed` alone.

    Args:
      shape: int list or 1-D int32 tensor, the shape of the result.
      seed: integer tensor of shape [2] (one stream) or [batch, 2] (one stream per row; then
        `shape` must start with that batch size and each row depends only on its own seed).
      dtype: float32 or float64.

    Returns:
      A `dtype` tensor of `shape`. Row/element values do not depend on the rest of the shape:
      element i of a stream is the same whatever the total size.
    """
    seed = tf.convert_to_tensor(seed)
    shape = tf.convert_to_tensor(shape, tf.int32)
    per_row = seed.shape.rank == 2
    count = tf.reduce_prod(shape[1:]) if per_row else tf.reduce_prod(shape)
    counter = tf.range(count, dtype=tf.int32)
    key1, key2 = _seed_keys(seed)
    if per_row:
        counter, key1, key2 = counter[None, :], key1[:, None], key2[:, None]
    bits = fmix32(tf.cast(counter, tf.uint32) * _u32(_GOLDEN) + key1)
    bits = fmix32(tf.bitwise.bitwise_xor(bits, key2))
    top24 = tf.cast(tf.bitwise.right_shift(bits, _u32(8)), tf.int32)
    return tf.reshape(tf.cast(top24, dtype) * (1.0 / (1 << 24)), shape)
