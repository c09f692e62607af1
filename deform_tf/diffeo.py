"""Maximum-entropy random diffeomorphisms (Petrini, Favero, Geiger & Wyart 2021), beyond the paper.

A second family of smooth deformations, from "Relative stability toward diffeomorphisms indicates
performance in deep nets" (their reference code `diffeo.py`). On an image with coordinates
x = linspace(0, 1, width) and y = linspace(0, 1, height), each displacement component is an
independent random sine series that vanishes on the border:

    field(y, x) = sum_{i, j >= 1} C_ij sin(i pi y) sin(j pi x),
    C_ij ~ N(0, T / (i^2 + j^2)) if sqrt(i^2 + j^2) < cutoff + 0.5, else C_ij = 0,

with temperature T and an integer cutoff (modes i, j in 1..cutoff). The displacement in pixels is
the field times the image size: dy = height * field_y, dx = width * field_x (their code has square
n x n images and scales both by n; for non-square images we use height for y and width for x, so
the deformation is the same in units of the image's extent along each axis). Their typical
displacement is delta = n sqrt(pi T log(cutoff)) / 2 pixels; `exact_rms_displacement` gives the
exact value on the pixel grid, and `temperature_matching_tps` the T whose displacement matches the
paper's TPS deformation, so the two families can be compared at equal displacement.

Conventions: flows are [batch, height, width, 2] in pixels, (dy, dx), in `dense_image_warp`'s
convention out[y, x] = image[y - dy, x - dx] (the fields are sign-symmetric, so the sign only
matters for consistency; Petrini's `remap` uses the same one). Coefficients are drawn with
`stateless_random.normal`, identical in eager, graph, tf.data and XLA. With per-example seeds
([batch, 2]) the coefficient of mode (i, j) is always the same draw of the example's stream,
whatever the cutoff (modes are laid out in square shells max(i, j) = 1, 2, ...), so a smaller
cutoff keeps the low modes of a larger one. (A shared seed [2] is one stream over the batch,
example-major, so this holds only for its first example.)
"""

import functools
import math
import numbers

import numpy as np
import tensorflow as tf

from deform_tf import checks
from deform_tf import dense_warp
from deform_tf import stateless_random
from deform_tf import tps


def check_cutoff(cutoff):
    """Returns `cutoff` as an int; raises ValueError unless it is a Python int >= 1."""
    if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Integral):
        raise ValueError(f"`cutoff` must be a Python int >= 1 (the highest sine mode), got "
                         f"{cutoff!r}.")
    if cutoff < 1:
        raise ValueError(f"`cutoff` must be an int >= 1 (the highest sine mode), got {cutoff!r}.")
    return int(cutoff)


def _check_size(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
        raise ValueError(f"`{name}` must be an int >= 2 pixels, got {value!r}.")
    return int(value)


def _check_nonnegative_number(value, name, meaning):
    """Validates Python/numpy numbers or arrays: finite and >= 0; returns float64 array."""
    try:
        array = None if isinstance(value, bool) else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"`{name}` ({meaning}) must be finite and >= 0, got {value!r}.")
    return array


def _as_result(array):
    return float(array) if np.ndim(array) == 0 else array


def _check_temperature(temperature):
    """Python numbers are checked now (ValueError); tensors at run time (InvalidArgumentError)."""
    if isinstance(temperature, (numbers.Real, np.ndarray)) and not isinstance(temperature, bool):
        if np.ndim(temperature) != 0:
            raise ValueError(f"`temperature` must be a scalar, got {temperature!r}.")
        return float(_check_nonnegative_number(temperature, "temperature", "T"))
    temperature = tf.convert_to_tensor(temperature)
    if temperature.shape.rank not in (None, 0):
        raise ValueError(
            f"`temperature` must be a scalar, got shape {temperature.shape.as_list()}.")
    checks.check_float(temperature, "temperature")
    with tf.control_dependencies([
            tf.debugging.assert_all_finite(temperature, "`temperature` must be finite."),
            tf.debugging.assert_non_negative(temperature, "`temperature` must be >= 0.")]):
        return tf.identity(temperature)


def _check_dtype(dtype):
    dtype = tf.as_dtype(dtype)
    if dtype not in (tf.float32, tf.float64):
        raise ValueError(f"`dtype` must be float32 or float64, got {dtype.name}.")
    return dtype


@functools.lru_cache(maxsize=None)
def _mode_tables(cutoff):
    """(shell index [c, c] int32, 1/r [c, c] float64 with the mask applied), read-only.

    Mode (i, j) (1-based) with k = max(i, j) is draw k^2 - 2k + 1 + (j - 1) if i == k, else
    k^2 - k + (i - 1): shells of (2k - 1) draws, so the first c^2 draws are the modes <= c.
    """
    i, j = np.meshgrid(np.arange(1, cutoff + 1), np.arange(1, cutoff + 1), indexing="ij")
    k = np.maximum(i, j)
    index = np.where(i == k, (k - 1) ** 2 + (j - 1), (k - 1) ** 2 + k + (i - 1)).astype(np.int32)
    radius = np.sqrt(i ** 2 + j ** 2)
    inverse_radius = np.where(radius < cutoff + 0.5, 1.0 / radius, 0.0)
    index.setflags(write=False)
    inverse_radius.setflags(write=False)
    return index, inverse_radius


@functools.lru_cache(maxsize=64)
def sine_matrix(size, cutoff):
    """S [size, cutoff] float64, S[p, k - 1] = sin(k pi p / (size - 1)): x = linspace(0, 1, size).

    Entries that are mathematically zero (k p a multiple of size - 1, e.g. the border rows) are
    exactly 0, so the flow vanishes exactly on the image border. Read-only, cached.
    """
    size, cutoff = _check_size(size, "size"), check_cutoff(cutoff)
    p = np.arange(size)[:, None]
    k = np.arange(1, cutoff + 1)[None, :]
    # Reduce k p modulo 2 (size - 1) in integers first, for accuracy at high modes.
    phase = (k * p) % (2 * (size - 1))
    matrix = np.where(phase % (size - 1) == 0, 0.0, np.sin(np.pi * phase / (size - 1)))
    matrix.setflags(write=False)
    return matrix


def max_entropy_coefficients(batch_size, cutoff, temperature, seed, dtype=tf.float32):
    """The random sine-series coefficients of the maximum-entropy diffeomorphism.

    Args:
      batch_size: int or int32 scalar tensor.
      cutoff: Python int >= 1, the highest mode per axis.
      temperature: T >= 0 (Python number or scalar float tensor).
      seed: stateless seed, int tensor [2] (one stream for the batch) or [batch, 2] (one per
        example: each example then depends only on its own seed).
      dtype: float32 or float64.

    Returns:
      C [batch, 2, cutoff, cutoff] in `dtype`, dimensionless (the field is on the unit square).
      C[b, 0] is the dy field's, C[b, 1] the dx field's; C[b, c, i - 1, j - 1] multiplies
      sin(i pi y) sin(j pi x), and is N(0, T / (i^2 + j^2)) inside the mask
      sqrt(i^2 + j^2) < cutoff + 0.5 and exactly 0 outside (and everywhere when T = 0).
    """
    cutoff = check_cutoff(cutoff)
    temperature = _check_temperature(temperature)
    dtype = _check_dtype(dtype)
    seed = checks.check_stateless_seed(seed, batch_size)
    index, inverse_radius = _mode_tables(cutoff)
    # Draws [batch, cutoff^2, 2]: element 2 * shell_index + component, independent of cutoff.
    draws = stateless_random.normal(tf.stack([batch_size, cutoff * cutoff, 2]), seed, dtype)
    draws = tf.gather(draws, index, axis=1)  # [batch, c, c, 2]
    scale = tf.sqrt(tf.cast(temperature, dtype)) * tf.constant(inverse_radius, dtype)
    return tf.transpose(draws, [0, 3, 1, 2]) * scale


def coefficients_to_flow(coefficients, height, width):
    """The pixel flow [batch, height, width, 2] (dy, dx) of coefficients [batch, 2, c, c].

    flow[b, y, x, 0] = height * sum_ij C[b, 0, i, j] S_y[y, i] S_x[x, j] (and width for dx),
    with S_y = sine_matrix(height, c), S_x = sine_matrix(width, c): one small matmul per image.
    """
    coefficients = tf.convert_to_tensor(coefficients)
    height, width = _check_size(height, "height"), _check_size(width, "width")
    cutoff = coefficients.shape[-1]
    dtype = coefficients.dtype
    sine_y = tf.constant(sine_matrix(height, cutoff), dtype)
    sine_x = tf.constant(sine_matrix(width, cutoff), dtype)
    field = tf.einsum("yi,bcij,xj->byxc", sine_y, coefficients, sine_x)
    return field * tf.constant([height, width], dtype)


def max_entropy_flow(batch_size, height, width, temperature, cutoff, seed, dtype=tf.float32):
    """Random maximum-entropy diffeomorphism flows (Petrini et al. 2021), in pixels.

    Args:
      batch_size: int or int32 scalar tensor (may be dynamic).
      height, width: Python ints >= 2, the image size in pixels.
      temperature: T >= 0; Petrini's useful range is `temperature_range(size, cutoff)`.
      cutoff: Python int >= 1, the highest sine mode per axis (Petrini use 3 to 15).
      seed: stateless seed, int tensor [2] or [batch, 2] (as `tps.random_source_offsets`).
      dtype: float32 or float64.

    Returns:
      [batch, height, width, 2] flow (dy, dx) in pixels in `dtype`, for `dense_image_warp`
      (out[y, x] = image[y - dy, x - dx]); exactly 0 on the image border and for T = 0.
    """
    height, width = _check_size(height, "height"), _check_size(width, "width")
    coefficients = max_entropy_coefficients(batch_size, cutoff, temperature, seed, dtype)
    return coefficients_to_flow(coefficients, height, width)


def random_diffeo(images, temperature, cutoff, seed, return_flow=False):
    """Applies an independent random maximum-entropy diffeomorphism to each image.

    Args:
      images: [batch, height, width, channels] images with static height and width (>= 2),
        float or integer; the batch size may be unknown.
      temperature: T >= 0 (Python number or scalar float tensor); see `temperature_range`,
        `temperature_for_displacement` and `temperature_matching_tps`.
      cutoff: Python int >= 1, the highest sine mode per axis.
      seed: stateless seed, int tensor [2] (one draw for the batch) or [batch, 2] (one per
        example). Same seed, same deformation, on any device and under XLA.
      return_flow: also return the [batch, height, width, 2] flow (dy, dx) in pixels.

    Returns:
      The deformed images, resampled bilinearly with edge clamping (float images keep their
      dtype, integer images come back as float32, not rounded), or (images, flow).
    """
    images = tf.convert_to_tensor(images, name="images")
    checks.check_rank(images, 4, "images", "[batch, height, width, channels]")
    checks.check_image_dtype(images, "images")
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise ValueError(
            "`random_diffeo` needs the image height and width at graph-build time, got shape "
            f"{images.shape.as_list()}. Resize or `ensure_shape` the images first.")
    compute_images, dtype = dense_warp.to_compute_dtype(images)
    flow = max_entropy_flow(checks.batch_size_of(images), height, width, temperature, cutoff, seed,
                            dtype)
    warped = dense_warp.warp_with_flow(compute_images, flow)
    warped = tf.ensure_shape(tf.cast(warped, dense_warp.output_dtype(images.dtype)), images.shape)
    flow = tf.ensure_shape(flow, images.shape[:3].concatenate([2]))
    return (warped, flow) if return_flow else warped


def typical_displacement(temperature, cutoff, size):
    """Petrini et al.'s typical displacement n sqrt(pi T log(cutoff)) / 2, in pixels.

    Their large-cutoff estimate of the RMS displacement norm on an n x n image (0 for cutoff 1);
    `exact_rms_displacement` is the exact value. Accepts numbers or numpy arrays of T.
    """
    temperature = _check_nonnegative_number(temperature, "temperature", "T")
    cutoff, size = check_cutoff(cutoff), _check_size(size, "size")
    return _as_result(size * np.sqrt(np.pi * temperature * math.log(cutoff)) / 2.0)


def temperature_for_displacement(delta, cutoff, size):
    """The inverse of `typical_displacement`: T = 4 delta^2 / (pi n^2 log(cutoff)).

    `delta` in pixels (number or numpy array); needs cutoff >= 2 (log 1 = 0).
    """
    delta = _check_nonnegative_number(delta, "delta", "a displacement in pixels")
    cutoff, size = check_cutoff(cutoff), _check_size(size, "size")
    if cutoff < 2:
        raise ValueError(f"`cutoff` must be >= 2 to invert Petrini's typical displacement "
                         f"(log(1) = 0), got {cutoff}.")
    return _as_result(4.0 * delta ** 2 / (np.pi * size ** 2 * math.log(cutoff)))


def temperature_range(size, cutoff):
    """Petrini et al.'s temperature range (T1, T2) for an n x n image, cutoff c >= 2.

    T1 = 1 / (pi n^2 log c): typical displacement of half a pixel. T2 = 4 / (pi^3 c^2 log c):
    typical displacement n / (pi c), beyond which the deformation stops being a diffeomorphism.
    """
    cutoff, size = check_cutoff(cutoff), _check_size(size, "size")
    if cutoff < 2:
        raise ValueError(f"`cutoff` must be >= 2 for Petrini's temperature range (log(1) = 0), "
                         f"got {cutoff}.")
    log_c = math.log(cutoff)
    return 1.0 / (math.pi * size ** 2 * log_c), 4.0 / (math.pi ** 3 * cutoff ** 2 * log_c)


def exact_rms_displacement(height, width, temperature, cutoff):
    """The exact RMS displacement norm in pixels, sqrt(mean over pixels of E|flow|^2).

    Closed form from the mode variances T / r^2 and the sine matrices (no sampling):
    E|flow(y, x)|^2 = T (height^2 + width^2) sum_ij mask_ij / r_ij^2 S_y[y, i]^2 S_x[x, j]^2,
    whose pixel mean factors into the column means of S_y^2 and S_x^2. Scales as sqrt(T).
    Accepts numbers or numpy arrays of T.
    """
    height, width = _check_size(height, "height"), _check_size(width, "width")
    temperature = _check_nonnegative_number(temperature, "temperature", "T")
    cutoff = check_cutoff(cutoff)
    _, inverse_radius = _mode_tables(cutoff)
    mean_y = np.mean(np.square(sine_matrix(height, cutoff)), axis=0)
    mean_x = np.mean(np.square(sine_matrix(width, cutoff)), axis=0)
    unit = (height ** 2 + width ** 2) * (mean_y @ np.square(inverse_radius) @ mean_x)
    return _as_result(np.sqrt(temperature * unit))


def tps_rms_displacement(height, width, grid_size, strength):
    """The exact RMS displacement norm in pixels of the paper's TPS deformation.

    Offsets are independent and uniform in [-C, C] per axis (variance C^2 / 3) and the flow at
    pixel p is -M[p] @ offsets with M = `tps.tps_grid_operator(height, width, grid_size)`, so
    E|flow_p|^2 = 2 (C^2 / 3) sum_k M[p, k]^2; this returns the square root of its pixel mean.
    """
    height, width = _check_size(height, "height"), _check_size(width, "width")
    strength = _check_nonnegative_number(strength, "strength", "C in pixels")
    operator = tps.tps_grid_operator(height, width, grid_size)
    mean_square_gain = np.mean(np.sum(np.square(operator), axis=1))
    return _as_result(strength * np.sqrt(2.0 / 3.0 * mean_square_gain))


def temperature_matching_tps(height, width, grid_size, strength, cutoff):
    """The temperature T whose exact RMS displacement equals the TPS deformation's.

    Closed form, since `exact_rms_displacement` is sqrt(T) times its value at T = 1.
    """
    tps_rms = tps_rms_displacement(height, width, grid_size, strength)
    return _as_result(np.square(tps_rms / exact_rms_displacement(height, width, 1.0, cutoff)))
