"""The paper's normalized filter smoothness measure (Fig. 5, 6; docs/method.md#smoothness).

For a conv kernel W of shape [kh, kw, c_in, c_out] the total variation TV(W) is the sum, over the
whole kernel, of the absolute differences between spatial neighbours along both spatial axes
(|W[i+1, j] - W[i, j]| and |W[i, j+1] - W[i, j]|; channels are never compared with each other).
The normalized smoothness measure is TV(W) / sum|W|: it is invariant to the kernel's scale, lower
means smoother, and a constant filter scores 0. For i.i.d. Gaussian 3x3 filters it tends to
24 / (9 sqrt 2) ~ 1.886; for Keras' truncated normal (cut at 2 std) to ~1.857.

Everything is computed in float64 numpy and returned as plain Python / numpy values, so results
can go straight into JSON. `model_smoothness` reads every spatial conv kernel of a Keras model
(`deform_tf.kernels.conv_kernels`; 1x1 convs and dense layers have no spatial neighbours and are
skipped).
"""

import math

import keras
import numpy as np

from deform_tf import kernels
from deform_tf import model_io


def _kernel_numpy(kernel, name="kernel"):
    """`kernel` (numpy, tensor or Keras variable) as a float64 numpy array of rank 4."""
    try:
        array = keras.ops.convert_to_numpy(kernel)
    except Exception:  # pylint: disable=broad-except  # e.g. ragged lists
        array = np.asarray(kernel)
    array = np.asarray(array)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"`{name}` must hold real numbers, got dtype {array.dtype}.")
    if array.ndim != 4:
        raise ValueError(
            f"`{name}` must have rank 4 [kh, kw, c_in, c_out], got shape {list(array.shape)}."
        )
    kh, kw = array.shape[:2]
    if kh * kw <= 1:
        raise ValueError(
            f"Filter smoothness needs kh * kw > 1 (spatial neighbours to compare); `{name}` has "
            f"shape {list(array.shape)}. 1x1 convs have no spatial structure; skip them."
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` must be finite (no NaN or Inf).")
    return array


def _total_variation(kernel):
    """Per-filter TV of a float64 [kh, kw, c_in, c_out] kernel: [c_in, c_out] float64."""
    vertical = np.abs(np.diff(kernel, axis=0)).sum(axis=(0, 1))
    horizontal = np.abs(np.diff(kernel, axis=1)).sum(axis=(0, 1))
    return vertical + horizontal


def filter_smoothness(kernel):
    """The normalized smoothness measure TV(W) / sum|W| of a whole conv kernel.

    Args:
      kernel: [kh, kw, c_in, c_out] real kernel (numpy array, tf tensor or Keras variable) with
        kh * kw > 1.

    Returns:
      Python float >= 0: the kernel's total variation (summed over all c_in x c_out spatial
      filters) divided by the sum of |W| over the whole kernel. 0 for constant filters; about
      1.886 for i.i.d. Gaussian 3x3 filters.

    Raises:
      ValueError: `kernel` is not rank 4, has kh * kw == 1 (no spatial neighbours), is not finite,
        or is all zeros (the measure is 0 / 0).
    """
    array = _kernel_numpy(kernel)
    mass = np.abs(array).sum()
    if mass == 0:
        raise ValueError(
            f"`kernel` is all zeros (shape {list(array.shape)}): its smoothness TV / sum|W| is "
            "0 / 0 and undefined."
        )
    return float(_total_variation(array).sum() / mass)


def per_filter_smoothness(kernel):
    """The smoothness measure of each 2-D spatial filter of a kernel, e.g. for histograms.

    Args:
      kernel: [kh, kw, c_in, c_out] real kernel with kh * kw > 1 (numpy, tensor or variable).

    Returns:
      float64 numpy array [c_in, c_out]: TV(W[:, :, i, o]) / sum|W[:, :, i, o]|. A filter that is
      entirely zero (e.g. pruned) gets NaN; drop those with `np.isnan`.

    Raises:
      ValueError: as `filter_smoothness` (bad rank, kh * kw == 1, non-finite, all-zero kernel).
    """
    array = _kernel_numpy(kernel)
    mass = np.abs(array).sum(axis=(0, 1))
    if not np.any(mass > 0):
        raise ValueError(
            f"`kernel` is all zeros (shape {list(array.shape)}): every filter's smoothness is "
            "0 / 0 and undefined."
        )
    tv = _total_variation(array)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, tv / np.where(mass > 0, mass, 1.0), np.nan)


def model_smoothness(model):
    """The smoothness measure of every spatial conv kernel of a built Keras model.

    Args:
      model: a built Keras model, a saved `.keras` file or a checkpoint directory (see
        `deform_tf.model_io.load_model`).

    Returns:
      List of JSON-serializable dicts, one per conv layer in model order:
      {"layer": name (str), "index": 1-based conv index (int), "shape": [kh, kw, c_in, c_out]
      (ints), "smoothness": TV / sum|W| (float)}.

    Raises:
      ValueError: a conv kernel is all zeros or not finite (see `filter_smoothness`).
    """
    rows = []
    model = model_io.load_model(model)
    for index, (name, kernel) in enumerate(kernels.conv_kernels(model), start=1):
        rows.append({
            "layer": str(name),
            "index": index,
            "shape": [int(s) for s in kernel.shape],
            "smoothness": filter_smoothness(kernel),
        })
    return rows


def mean_smoothness(rows):
    """The unweighted mean over layers of the "smoothness" of `model_smoothness` rows.

    Every layer counts once, whatever its size (as when averaging the paper's per-layer curves).

    Args:
      rows: non-empty list of dicts with a "smoothness" float.

    Returns:
      Python float.

    Raises:
      ValueError: `rows` is empty (e.g. a model without spatial convs).
    """
    values = [float(row["smoothness"]) for row in rows]
    if not values:
        raise ValueError("`rows` is empty: the model has no spatial conv kernels to average.")
    return math.fsum(values) / len(values)
