"""Bilinear interpolation of images at scattered points (tensorflow-addons' `interpolate_bilinear`).

The values come from `dense_warp.resample_bilinear`, the resampling behind `dense_image_warp`:
positions outside the image take the value of the nearest edge pixel (tfa clamps the lower
neighbour to [0, size - 2] and the weight to [0, 1], which is the same), whole-pixel positions
return the pixel exactly and constant images stay exactly constant. The arithmetic is tfa's,
`alpha * (b - a) + a` along x then y, so float32 results equal tfa's bit for bit except where
tfa rounds a weight of 1 (positions on or past the last row or column, exact here).

As in tfa, a batch of query points of size 1 is used for every image of the grid's batch (and
a grid of batch 1 for every batch of query points). A query point with a NaN coordinate gives
NaN values: the same defined answer eagerly, in graphs and under XLA (no assert).
"""

import tensorflow as tf

from deform_tf import checks
from deform_tf import dense_warp
from deform_tf import traceable


@traceable.traceable
def interpolate_bilinear(grid, query_points, indexing="ij", name=None):
    """Values of `grid` at `query_points` by bilinear interpolation, as tfa's.

    Args:
      grid: [batch, height, width, channels] image, float or integer (e.g. uint8). Heights and
        widths of 1 are allowed (tfa required at least 2).
      query_points: [batch, n, 2] float positions in pixels: (row, column) = (y, x) with
        `indexing="ij"`, (x, y) with `indexing="xy"`; a batch of 1 serves every grid (as
        tfa). Infinite values sample the edge; a point with a NaN coordinate gives NaN.
      indexing: "ij" or "xy", the order of the two coordinates of each point.
      name: optional name scope.

    Any size, and the ranks, may be unknown when the function is traced. Differentiable with
    respect to `grid` and `query_points`: at a whole-pixel position the derivative is the
    difference to the next pixel (tfa's was 0), and 0 on the last row or column and outside.

    Returns:
      [batch, n, channels] values (batch: the larger of the two batches), in the dtype of a
      float `grid` (float32 for integer grids), computed in float32 (float64 if `grid` or
      `query_points` is float64).

    Raises:
      ValueError: `indexing` not "ij"/"xy", wrong ranks, a last axis of `query_points` other
        than 2, different batch sizes (neither 1), non-numeric dtypes.
      InvalidArgumentError: (run time) the same for what was unknown when traced.
    """
    if indexing not in ("ij", "xy"):
        raise ValueError(f"`indexing` must be 'ij' (y, x) or 'xy' (x, y), got {indexing!r}.")
    with tf.name_scope(name or "interpolate_bilinear"):
        grid = tf.convert_to_tensor(grid, name="grid")
        query_points = tf.convert_to_tensor(query_points, name="query_points")
        grid = checks.ensure_rank(grid, 4, "grid", "[batch, height, width, channels]")
        query_points = checks.ensure_rank(query_points, 3, "query_points", "[batch, n, 2]")
        checks.check_image_dtype(grid, "grid")
        checks.check_float(query_points, "query_points")
        meaning = "(y, x) in pixels" if indexing == "ij" else "(x, y) in pixels"
        query_points = checks.ensure_last_dim(query_points, 2, "query_points", meaning)
        query_points = checks.ensure_batch_broadcasts(
            grid, query_points,
            "`grid` and `query_points` must have the same batch size (or one of them 1).")
        out_dtype = dense_warp.output_dtype(grid.dtype)
        grid, dtype = dense_warp.to_compute_dtype(grid, query_points)
        query_points = tf.cast(query_points, dtype)
        undefined = tf.reduce_any(tf.math.is_nan(query_points), axis=-1, keepdims=True)
        query_points = tf.where(undefined, tf.zeros([], dtype), query_points)
        y_axis = 0 if indexing == "ij" else 1
        values = dense_warp.resample_bilinear(
            grid, query_points[..., y_axis], query_points[..., 1 - y_axis])
        values = tf.where(undefined, tf.constant(float("nan"), dtype), values)
        return tf.cast(values, out_dtype)
