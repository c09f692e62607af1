"""Stateless uniform and normal random numbers that are bit-identical everywhere, including XLA.

Why not `tf.random.stateless_uniform`: for the same seed it returns different numbers inside
`jit_compile=True` functions than in eager/graph mode (XLA has its own Philox lowering), so a
deformation would change with the compilation mode. This module hashes (seed, element index) with
the MurmurHash3 32-bit finalizer, using only uint32 multiply/xor/shift, which every device and XLA
compute identically. The numbers are for sampling deformations, not for cryptography; a test
checks their uniformity and independence across seeds and elements.

`normal` turns two such streams into Gaussian numbers with the Box-Muller transform. XLA's and
TensorFlow's own `log` and `cos` disagree in the last bits (millions of the 2^24 possible inputs
differ), and even a float polynomial does not help: XLA contracts `a * b + c` into a fused
multiply-add, eager does not. So log and cos are evaluated here in int64 fixed point (exact
integer arithmetic, identical everywhere), followed only by a correctly rounded float64 sqrt and
one multiply.
"""

import math

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


def _seed_keys(seed, stream=0):
    """Two uint32 keys [...] from integer seeds [..., 2] (all 64 bits of each word count).

    Stream 0 is `uniform`'s; other streams re-mix both keys with a stream tag, so they are
    independent of stream 0 without being the stream 0 of any other seed pair.
    """
    seed = tf.cast(seed, tf.int64)
    low = tf.cast(tf.bitwise.bitwise_and(seed, tf.constant(0xFFFFFFFF, tf.int64)), tf.uint32)
    high = tf.cast(tf.bitwise.right_shift(seed, tf.constant(32, tf.int64)), tf.uint32)
    keys = []
    for start in (0x243F6A88, 0x85A308D3):  # digits of pi: two independent chains
        h = _u32(start)
        for word in (low[..., 0], high[..., 0], low[..., 1], high[..., 1]):
            h = fmix32(tf.bitwise.bitwise_xor(h, word) * _u32(_GOLDEN))
        keys.append(h)
    if stream:
        keys = [fmix32(key + _u32((stream * tag) & 0xFFFFFFFF))
                for key, tag in zip(keys, (0xB7E15162, _GOLDEN))]  # tags: digits of e, phi
    return keys


def _top24(shape, seed, stream):
    """24 random bits per element: int32 in [0, 2^24) of `shape` (see `uniform` for `seed`)."""
    seed = tf.convert_to_tensor(seed)
    shape = tf.convert_to_tensor(shape, tf.int32)
    per_row = seed.shape.rank == 2
    count = tf.reduce_prod(shape[1:]) if per_row else tf.reduce_prod(shape)
    counter = tf.range(count, dtype=tf.int32)
    key1, key2 = _seed_keys(seed, stream)
    if per_row:
        counter, key1, key2 = counter[None, :], key1[:, None], key2[:, None]
    bits = fmix32(tf.cast(counter, tf.uint32) * _u32(_GOLDEN) + key1)
    bits = fmix32(tf.bitwise.bitwise_xor(bits, key2))
    return tf.reshape(tf.cast(tf.bitwise.right_shift(bits, _u32(8)), tf.int32), shape)


def uniform(shape, seed, dtype=tf.float32, stream=0):
    """Uniform numbers in [0, 1) with 24 random bits, determined by `seed` alone.

    Args:
      shape: int list or 1-D int32 tensor, the shape of the result.
      seed: integer tensor of shape [2] (one stream) or [batch, 2] (one stream per row; then
        `shape` must start with that batch size and each row depends only on its own seed).
      dtype: float32 or float64.
      stream: Python int >= 0; other streams give independent numbers from the same seed
        (0, the default, is the deformations' offsets; `normal` uses 1 and 2).

    Returns:
      A `dtype` tensor of `shape`. Row/element values do not depend on the rest of the shape:
      element i of a stream is the same whatever the total size.
    """
    return tf.cast(_top24(shape, seed, stream), dtype) * (1.0 / (1 << 24))


_Q = 30  # fixed-point fraction bits of `normal`'s integer log and cos
_ONE = 1 << _Q


def _fixed(value):
    """A real constant in Q30 fixed point (computed once, in Python)."""
    return int(round(value * _ONE))


def _horner_fixed(t, coefficients):
    """sum_k coefficients[k] t^k in Q30 int64 fixed point (t in Q30, |t| < 1): exact integer ops."""
    result = tf.constant(coefficients[-1], tf.int64)
    for c in reversed(coefficients[:-1]):
        result = tf.bitwise.right_shift(result * t, tf.constant(_Q, tf.int64)) + c
    return result


_ATANH_SERIES = [_fixed(1.0 / (2 * k + 1)) for k in range(11)]  # ln f = 2s sum s^2k / (2k + 1)
_COS_SERIES = [_fixed((-1.0) ** k / math.factorial(2 * k)) for k in range(8)]
_SIN_SERIES = [_fixed((-1.0) ** k / math.factorial(2 * k + 1)) for k in range(8)]
_LN2_Q56 = int(round(math.log(2.0) * (1 << 56)))
_TWO_PI_STEP = int(round(2.0 * math.pi * (1 << (_Q + 6))))  # 2 pi / 2^24 in Q60


def log_of_lattice(m):
    """ln(m / 2^24) for int32 m in [1, 2^24], in float64, identical on every backend.

    Computed in int64 Q30 fixed point (exact integer ops; see the module doc for why not float
    Horner): m = 2^e f with f in [1, 2) split exactly through the float32 bit pattern (m <= 2^24
    is exact in float32), ln f = 2 atanh(s) with s = (f - 1) / (f + 1) < 1/3 by 11 terms of its
    series. Absolute error below 1e-8.
    """
    bits = tf.bitcast(tf.cast(m, tf.float32), tf.int32)
    exponent = tf.cast(tf.bitwise.right_shift(bits, 23) - 127, tf.int64)
    mantissa = tf.cast(tf.bitwise.bitwise_or(tf.bitwise.bitwise_and(bits, 0x7FFFFF), 0x800000),
                       tf.int64)
    f = tf.bitwise.left_shift(mantissa, tf.constant(_Q - 23, tf.int64))  # f in Q30, [1, 2)
    s = tf.math.floordiv(tf.bitwise.left_shift(f - _ONE, tf.constant(_Q, tf.int64)), f + _ONE)
    s2 = tf.bitwise.right_shift(s * s, tf.constant(_Q, tf.int64))
    log_f = tf.bitwise.right_shift(2 * s * _horner_fixed(s2, _ATANH_SERIES),
                                   tf.constant(_Q, tf.int64))
    log_2e = tf.bitwise.right_shift((exponent - 24) * _LN2_Q56, tf.constant(56 - _Q, tf.int64))
    return tf.cast(log_2e + log_f, tf.float64) * (1.0 / _ONE)


def cos_of_lattice(k):
    """cos(2 pi k / 2^24) for int32 k in [0, 2^24), in float64, identical on every backend.

    The quadrant and the reflection about pi/4 are taken on the integer k (exact), leaving
    t = j 2 pi / 2^24 in [0, pi/4] for Q30 fixed-point Taylor series of cos or sin (8 terms).
    Absolute error below 1e-8.
    """
    quadrant = tf.bitwise.right_shift(k, 22)
    r = tf.bitwise.bitwise_and(k, (1 << 22) - 1)
    reflect = r > (1 << 21)
    j = tf.cast(tf.where(reflect, (1 << 22) - r, r), tf.int64)
    t = tf.bitwise.right_shift(j * _TWO_PI_STEP, tf.constant(_Q, tf.int64))  # Q30
    t2 = tf.bitwise.right_shift(t * t, tf.constant(_Q, tf.int64))
    sin_t = tf.bitwise.right_shift(t * _horner_fixed(t2, _SIN_SERIES), tf.constant(_Q, tf.int64))
    use_sin = tf.not_equal(tf.equal(tf.bitwise.bitwise_and(quadrant, 1), 1), reflect)
    value = tf.where(use_sin, sin_t, _horner_fixed(t2, _COS_SERIES))
    negative = tf.logical_or(tf.equal(quadrant, 1), tf.equal(quadrant, 2))
    return tf.cast(tf.where(negative, -value, value), tf.float64) * (1.0 / _ONE)


def normal(shape, seed, dtype=tf.float32):
    """Standard normal numbers determined by `seed` alone, bit-identical under XLA.

    Box-Muller on two streams of 24-bit uniforms u1, u2 derived from `seed` (streams 1 and 2,
    independent of `uniform`'s stream for the same seed): z = sqrt(-2 ln(1 - u1)) cos(2 pi u2),
    with log and cos in fixed point (absolute error < 1e-8), then cast to `dtype`. 1 - u1 lies in
    [2^-24, 1], so |z| <= 5.77 (the normal tail beyond has probability 8e-9); otherwise z is
    N(0, 1) up to 24-bit resolution.

    Args:
      shape: int list or 1-D int32 tensor, the shape of the result.
      seed: integer tensor of shape [2] or [batch, 2], as for `uniform` (per-row streams).
      dtype: float dtype of the result (float32 or float64).

    Returns:
      A `dtype` tensor of `shape`; element i of a stream does not depend on the total size.
    """
    u1 = _top24(shape, seed, 1)
    u2 = _top24(shape, seed, 2)
    radius = tf.sqrt(-2.0 * log_of_lattice((1 << 24) - u1))
    return tf.cast(radius * cos_of_lattice(u2), dtype)
