"""Bilinear resampling for XLA-compiled functions: `dense_warp.resample_bilinear`, faster.

Only for code compiled with XLA (`tf.function(jit_compile=True)`); the ops used here have no
kernels outside XLA. `tps.tps_grid_warp` uses it for its compiled core.

Why it is faster: XLA's CPU backend emits one fused scalar loop over the output pixels, and
each pixel evaluates its index arithmetic and gathers. Here the four corners are read through
one windowed gather (XLA's gather with a slice of width + 2 image rows from the top-left corner,
which `tf.gather` cannot express; only the four rows used are loaded), so one start index is
formed and bounds-clamped per pixel instead of four; the index within the image is formed in
floating point, so one float-to-int conversion serves both axes. The upper neighbour is always
the lower one plus 1 (`axis_corner` caps the lower index at size - 2), so no clamping of the
upper index is needed either. Measured in bench/README.md.

`gather` comes from TensorFlow's tf2xla Python module (`tensorflow.compiler.tf2xla.python.xla`),
which is not part of the public API: it exists in the TensorFlow versions setup.py allows, and
tests/bilinear_xla_test.py checks it. The op has no registered gradient, so it is wrapped in
`tf.custom_gradient` with the gradient of the plain four-gather formulation
(`dense_warp.weighted_rows`).
"""

import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla
from tensorflow.compiler.xla import xla_data_pb2

from deform_tf import dense_warp

# Pixels per image up to which a pixel index formed in the compute dtype is exact (every whole
# number up to 2^24 is a float32, up to 2^53 a float64); beyond, it is formed in int32.
EXACT_INDEX_LIMIT = {tf.float32: 2 ** 24, tf.float64: 2 ** 53}


def _weighted_corners(flat, index, weights, width):
    """sum_k weights[k] * corner_k, reading the four corners as one window.

    Args:
      flat: [batch * height * width, channels] image rows.
      index: int32 [batch, ...] row of each query's top-left corner; its top-right corner is
        the next row, its bottom corners `width` rows further (so the top-left x must be at most
        width - 2 and y at most height - 2, as `dense_warp.axis_corner` guarantees for sizes
        >= 2).
      weights: four [batch, ...] weights (top-left, top-right, bottom-left, bottom-right).
    """
    rank = index.shape.rank
    numbers = xla_data_pb2.GatherDimensionNumbers(
        offset_dims=[rank, rank + 1], collapsed_slice_dims=[], start_index_map=[0],
        index_vector_dim=rank)
    # One window of width + 2 rows from the top-left corner holds all four corners (rows 0, 1,
    # width, width + 1); XLA evaluates only the four it reads, with one start index.
    slice_sizes = [width + 2, flat.shape[1]]

    @tf.custom_gradient
    def weighted(flat, *weights):
        window = xla.gather(flat, index[..., None], numbers, slice_sizes)
        corners = [window[..., row, :] for row in (0, 1, width, width + 1)]
        out = tf.add_n([w[..., None] * c for w, c in zip(weights, corners)])

        def grad(upstream):
            with tf.GradientTape() as tape:
                tape.watch([flat, *weights])
                plain = dense_warp.weighted_rows(
                    flat, [index, index + 1, index + width, index + width + 1], weights)
            return tape.gradient(plain, [flat, *weights], output_gradients=upstream)

        return out, grad

    return weighted(flat, *weights)


def resample_bilinear(image, query_y, query_x):
    """`dense_warp.resample_bilinear` for XLA-compiled functions.

    The values are bit for bit those of `dense_warp.resample_bilinear` compiled by XLA (and
    within float rounding, ~1e-7 relative, of its eager kernels, as XLA contracts multiply-adds).

    Args:
      image: [batch, height, width, channels] float tensor with static height and width (each
        >= 2). With an unknown channel count it computes `dense_warp.resample_bilinear` (the
        windowed gather needs static slice sizes).
      query_y, query_x: [batch, ...] float tensors (the image's dtype), positions in pixels;
        outside the image the nearest edge pixel is used.

    Returns:
      [batch, ..., channels]: the sampled values.
    """
    height, width, channels = image.shape[1], image.shape[2], image.shape[3]
    if channels is None:
        return dense_warp.resample_bilinear(image, query_y, query_x)
    y0, ay = dense_warp.axis_corner_float(query_y, height)
    x0, ax = dense_warp.axis_corner_float(query_x, width)
    batch = tf.shape(image)[0]
    base_shape = tf.concat([[batch], tf.ones([query_y.shape.rank - 1], tf.int32)], axis=0)
    base = tf.reshape(tf.range(batch) * (height * width), base_shape)
    if height * width <= EXACT_INDEX_LIMIT.get(image.dtype, 0):
        pixel = tf.cast(y0 * width + x0, tf.int32)  # one conversion for both axes
    else:
        pixel = tf.cast(y0, tf.int32) * width + tf.cast(x0, tf.int32)
    by, bx = 1.0 - ay, 1.0 - ax
    weights = [by * bx, by * ax, ay * bx, ay * ax]
    flat = tf.reshape(image, [-1, channels])
    return _weighted_corners(flat, base + pixel, weights, width)
