"""Weight init of the paper: fan-in truncated normal, smoothed filters (docs/method.md#models).

`FanInTruncatedNormal` is Sonnet's default, which DeepMind used: a normal with stddev
1 / sqrt(fan_in), redrawn outside 2 std (as `keras.initializers.TruncatedNormal`). The truncation
is not compensated, so the actual std is 0.8796 / sqrt(fan_in) (unlike Keras' VarianceScaling,
which divides by 0.8796). Its 3x3 filters have a smoothness measure of ~1.857.

Smooth init (Fig. 4): `gaussian_smooth_kernel` convolves each 2-D spatial filter with a Gaussian of
std sigma pixels, restricted to the filter's own support (zero padding, output the same size), and
rescales each filter to its former L2 norm (docs/method.md#choices): only the spatial structure, not
the scale, so signal propagation at init is comparable across sigma). `SmoothedInitializer` draws
from a base initializer and smooths; `smooth_model_kernels` smooths a built model in place.
"""

import functools
import math

import keras
import numpy as np
import tensorflow as tf

from deform_tf import kernels

# std of a standard normal truncated at +-2 std (the factor Keras' VarianceScaling divides by).
TRUNCATED_NORMAL_STD_FACTOR = 0.87962566103423978


def _fan_in(shape):
    """Inputs per output unit: prod(shape[:-1]) (kh * kw * c_in for conv, input dim for dense)."""
    shape = [int(s) for s in shape]
    if len(shape) == 0:
        return 1
    if len(shape) == 1:
        return shape[0]
    return int(np.prod(shape[:-1]))


def _check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"`seed` must be None or an int, got {seed!r}.")
    return None if seed is None else int(seed)


@keras.saving.register_keras_serializable(package="deform_tf")
class FanInTruncatedNormal(keras.initializers.Initializer):
    """Truncated normal with stddev 1 / sqrt(fan_in), cut at 2 std (Sonnet's default init).

    fan_in = kh * kw * c_in for conv kernels [kh, kw, c_in, c_out], the input dim for dense
    kernels [in, out] (in general prod(shape[:-1]); shape[0] for rank 1). Values more than 2 std
    from 0 are redrawn, as in `keras.initializers.TruncatedNormal`, and the truncation is not
    compensated: the actual std is 0.88 / sqrt(fan_in) and |w| < 2 / sqrt(fan_in). (For
    DepthwiseConv2D kernels [kh, kw, c_in, mult] this still uses kh * kw * c_in, like Keras.)

    Args:
      seed: None (a fresh draw on each call, from Keras' global seed generator) or an int (every
        call returns the same values for the same shape and dtype, as Keras' seeded initializers:
        use a different seed per layer).
    """

    def __init__(self, seed=None):
        self.seed = _check_seed(seed)

    def __call__(self, shape, dtype=None):
        """Returns a [*shape] tensor of `dtype` (default: Keras floatx)."""
        dtype = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
        stddev = 1.0 / math.sqrt(_fan_in(shape))
        return keras.random.truncated_normal(
            shape, mean=0.0, stddev=stddev, dtype=dtype, seed=self.seed)

    def get_config(self):
        return {"seed": self.seed}


def _check_sigma(sigma):
    try:
        sigma = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"`sigma` must be a number of pixels, got {sigma!r}.") from None
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(
            f"`sigma` is the Gaussian's std in pixels and must be a finite number >= 0, "
            f"got {sigma!r}."
        )
    return sigma


@functools.lru_cache(maxsize=64)
def _cached_matrix(kh, kw, sigma):
    ys, xs = np.meshgrid(np.arange(kh, dtype=np.float64), np.arange(kw, dtype=np.float64),
                         indexing="ij")
    taps = np.stack([ys.ravel(), xs.ravel()], axis=1)
    squared = np.sum(np.square(taps[:, None, :] - taps[None, :, :]), axis=-1)
    matrix = np.exp(-squared / (2.0 * sigma * sigma))
    matrix.setflags(write=False)
    return matrix


def gaussian_smoothing_matrix(kh, kw, sigma):
    """The [kh * kw, kh * kw] matrix G of Gaussian smoothing restricted to a kh x kw filter.

    G[p, q] = exp(-|p - q|^2 / (2 sigma^2)) for taps p, q = (y, x) in pixels, flattened
    row-major (p = y * kw + x). G @ w is the 2-D convolution of the filter w with the Gaussian,
    with zeros outside the filter and the output cropped to the filter's size. The Gaussian is
    not normalized (peak 1); `gaussian_smooth_kernel` rescales each filter, so its scale does not
    matter. Read-only float64, cached.

    Args:
      kh, kw: filter height and width (ints >= 1).
      sigma: Gaussian std in pixels (> 0).
    """
    kh, kw = int(kh), int(kw)
    if kh < 1 or kw < 1:
        raise ValueError(f"The filter size `kh` x `kw` must be positive, got {kh}x{kw}.")
    sigma = _check_sigma(sigma)
    if sigma == 0:
        raise ValueError("`sigma` must be > 0 for a smoothing matrix (sigma = 0 is the identity).")
    return _cached_matrix(kh, kw, sigma)


def gaussian_smooth_kernel(kernel, sigma):
    """Smooths every 2-D spatial filter of a conv kernel with a Gaussian, keeping its L2 norm.

    For each filter w = kernel[:, :, i, o]: out[p] = sum_q g(p - q) w[q] over the kh x kw taps
    (zero outside the filter; see `gaussian_smoothing_matrix`), then out is rescaled to
    ||w||_2. All-zero filters stay zero. Computed in float64 and cast back.

    Args:
      kernel: [kh, kw, c_in, c_out] float kernel (float32 or float64; numpy array, tf tensor or
        tf/Keras variable) with static kh and kw.
      sigma: Gaussian std in pixels, >= 0. sigma = 0 returns the kernel unchanged (exactly; a
        copy for numpy input).

    Returns:
      The smoothed kernel, same shape and dtype; a numpy array for numpy input, else a tf tensor.

    Raises:
      ValueError: `kernel` is not rank 4 or not float; `sigma` is negative or not finite.
    """
    sigma = _check_sigma(sigma)
    if isinstance(kernel, np.ndarray):
        if kernel.ndim != 4:
            raise ValueError(
                f"`kernel` must have rank 4 [kh, kw, c_in, c_out], got shape {list(kernel.shape)}.")
        if not np.issubdtype(kernel.dtype, np.floating):
            raise ValueError(f"`kernel` must be a float array, got dtype {kernel.dtype}.")
        if sigma == 0:
            return kernel.copy()
        kh, kw = kernel.shape[:2]
        flat = kernel.astype(np.float64).reshape(kh * kw, -1)
        smoothed = gaussian_smoothing_matrix(kh, kw, sigma) @ flat
        old_norm = np.linalg.norm(flat, axis=0)
        new_norm = np.linalg.norm(smoothed, axis=0)
        scale = np.divide(old_norm, new_norm, out=np.zeros_like(old_norm), where=new_norm > 0)
        return (smoothed * scale).reshape(kernel.shape).astype(kernel.dtype)

    kernel = tf.convert_to_tensor(kernel, name="kernel")
    if kernel.shape.rank != 4:
        raise ValueError(
            f"`kernel` must have rank 4 [kh, kw, c_in, c_out], got shape {kernel.shape}.")
    if not kernel.dtype.is_floating:
        raise ValueError(f"`kernel` must be a float tensor, got dtype {kernel.dtype.name}.")
    if sigma == 0:
        return kernel
    kh, kw = kernel.shape[0], kernel.shape[1]
    if kh is None or kw is None:
        raise ValueError(f"`kernel` needs static kh and kw, got shape {kernel.shape}.")
    matrix = tf.constant(gaussian_smoothing_matrix(kh, kw, sigma), tf.float64)
    flat = tf.reshape(tf.cast(kernel, tf.float64), [kh * kw, -1])
    smoothed = tf.matmul(matrix, flat)
    scale = tf.math.divide_no_nan(tf.norm(flat, axis=0), tf.norm(smoothed, axis=0))
    out = tf.reshape(smoothed * scale, tf.shape(kernel))
    return tf.cast(out, kernel.dtype)


@keras.saving.register_keras_serializable(package="deform_tf")
class SmoothedInitializer(keras.initializers.Initializer):
    """Draws from a base initializer, then Gaussian-smooths each spatial filter (Fig. 4).

    For 4-D shapes [kh, kw, c_in, c_out] the base draw goes through
    `gaussian_smooth_kernel(draw, sigma)` (each filter keeps its L2 norm); other shapes (dense
    kernels, biases) get the base draw unchanged.

    Args:
      sigma: Gaussian std in pixels, >= 0 (0: the base initializer's values exactly).
      base: a Keras initializer (instance, name or config dict); default
        `FanInTruncatedNormal(seed)`.
      seed: seed of the default base; give the seed to `base` instead when passing one.
    """

    def __init__(self, sigma, base=None, seed=None):
        self.sigma = _check_sigma(sigma)
        seed = _check_seed(seed)
        if base is None:
            base = FanInTruncatedNormal(seed)
        elif seed is not None:
            raise ValueError(
                "Pass either `base` or `seed`, not both: `seed` only seeds the default base "
                "(FanInTruncatedNormal); seed your `base` initializer itself.")
        self.base = keras.initializers.get(base)
        if self.base is None:
            raise ValueError(f"`base` must be a Keras initializer, got {base!r}.")

    def __call__(self, shape, dtype=None):
        """Returns a [*shape] tensor of `dtype` (default: Keras floatx)."""
        values = self.base(shape, dtype=dtype)
        if len(shape) != 4:
            return values
        return gaussian_smooth_kernel(values, self.sigma)

    def get_config(self):
        return {"sigma": self.sigma, "base": keras.initializers.serialize(self.base)}


def smooth_model_kernels(model, sigma):
    """Gaussian-smooths, in place, every spatial conv kernel (kh * kw > 1) of a built model.

    Each 2-D filter is smoothed and rescaled to its L2 norm (`gaussian_smooth_kernel`); 1x1 convs,
    dense layers and biases are left alone. Nested models are searched (`kernels.conv_layers`).

    Args:
      model: a built Keras model.
      sigma: Gaussian std in pixels, >= 0.

    Returns:
      Names of the layers whose kernels were changed, in model order; [] for sigma = 0 (a no-op).
    """
    sigma = _check_sigma(sigma)
    layers = kernels.conv_layers(model)
    if sigma == 0:
        return []
    names = []
    for layer in layers:
        kernel = layer.kernel
        kernel.assign(gaussian_smooth_kernel(keras.ops.convert_to_numpy(kernel), sigma))
        names.append(layer.name)
    return names
