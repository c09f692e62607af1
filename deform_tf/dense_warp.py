"""Bilinear resampling of images by a dense flow field (tensorflow-addons' `dense_image_warp`).

Conventions (those of `tfa.image.dense_image_warp`): images are [batch, height, width, channels];
a flow is [batch, height, width, 2] in pixels, (y, x) order, and

    out[b, y, x, c] = image[b, y - flow[b, y, x, 0], x - flow[b, y, x, 1], c]

with bilinear interpolation. Positions outside the image take the value of the nearest edge pixel
(as `scipy.ndimage.map_coordinates(order=1, mode='nearest')`). Integer query positions return the
pixel exactly, so a zero flow is the identity (also on 1-pixel axes) and a flow of whole pixels is
an exact shift; a constant image stays exactly constant under any flow (`lerp`). Eager calls and
`tf.function` traces with known or unknown shapes give bit-identical results.
"""

import tensorflow as tf

from deform_tf import checks
from deform_tf import traceable


def axis_neighbours(coords, size):
    """The two neighbours of each coordinate along one axis and the weight of the upper one.

    Args:
      coords: float tensor of query coordinates along the axis, in pixels.
      size: int32 scalar (or Python int), the length of the axis (>= 1).

    Returns:
      (lower, upper, weight): int32 indices and the float weight in [0, 1) of `upper`.
      Coordinates are first clamped to [0, size - 1] (outside the image the edge value is used,
      as tfa's `interpolate_bilinear`); lower = floor(coordinate), upper = min(lower + 1,
      size - 1). Whole-pixel coordinates, the last pixel included, give weight 0 exactly.
    """
    coords = tf.clip_by_value(coords, tf.zeros([], coords.dtype), tf.cast(size, coords.dtype) - 1.0)
    lower = tf.floor(coords)
    weight = coords - lower
    lower = tf.cast(lower, tf.int32)
    return lower, tf.minimum(lower + 1, size - 1), weight


def lerp(a, b, weight):
    """a + weight * (b - a): the one blend formula of the bilinear resampling.

    Exact (returns `a` bit for bit) when weight = 0 (whole pixels) and when a == b (constant
    images, for any weight); elsewhere it is tfa's arithmetic, `alpha * (b - a) + a`.
    `weight` must broadcast against the values (give it a trailing channel axis).
    """
    return a + weight * (b - a)


def resample_bilinear(image, query_y, query_x):
    """Samples `image` at arbitrary (y, x) pixel positions with bilinear interpolation.

    The one resampling of every op and path (eager, graph, and compiled by XLA, where it is the
    fast path's resampling).

    Args:
      image: [batch, height, width, channels] float tensor (already in the compute dtype).
      query_y, query_x: [batch, ...] float tensors of the same shape (and dtype as `image`),
        positions in pixels; outside the image the nearest edge pixel is used.

    Returns:
      [batch, ..., channels] tensor: `lerp` along x between the two rows, then along y (as
      tfa), so whole-pixel positions return the pixel and a constant image stays constant.
      Gradients: at a whole-pixel position the derivative with respect to the position is the
      difference to the next pixel (0 on the last row or column and outside the image).
    """
    shape = tf.shape(image)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    y0, y1, weight_y = axis_neighbours(query_y, height)
    x0, x1, weight_x = axis_neighbours(query_x, width)

    flat = tf.reshape(image, [-1, channels])
    query_rank = tf.rank(query_y)
    base_shape = tf.concat([[batch], tf.ones([query_rank - 1], tf.int32)], axis=0)
    base = tf.reshape(tf.range(batch) * (height * width), base_shape)
    rows0 = base + y0 * width
    rows1 = base + y1 * width
    # gather_nd of whole rows is faster than tf.gather on CPU (TF 2.21); XLA compiles the four
    # gathers and the blend into one loop.
    top_left, top_right, bottom_left, bottom_right = [
        tf.gather_nd(flat, index[..., None])
        for index in (rows0 + x0, rows0 + x1, rows1 + x0, rows1 + x1)]
    weight_y, weight_x = weight_y[..., None], weight_x[..., None]
    top = lerp(top_left, top_right, weight_x)
    bottom = lerp(bottom_left, bottom_right, weight_x)
    return lerp(top, bottom, weight_y)


def pixel_grid(height, width, dtype):
    """The (y, x) coordinates of every pixel: two [height, width] tensors."""
    ys = tf.range(tf.cast(height, dtype))
    xs = tf.range(tf.cast(width, dtype))
    grid_y, grid_x = tf.meshgrid(ys, xs, indexing="ij")
    return grid_y, grid_x


def warp_with_flow(image, flow):
    """`dense_image_warp` without argument checks: image and flow in one float compute dtype."""
    shape = tf.shape(image)
    grid_y, grid_x = pixel_grid(shape[1], shape[2], flow.dtype)
    return resample_bilinear(image, grid_y - flow[..., 0], grid_x - flow[..., 1])


def to_compute_dtype(image, *others):
    """Casts an image to the float dtype the warp computes in; returns (image, dtype)."""
    dtype = checks.compute_dtype(image.dtype, *(o.dtype for o in others))
    return tf.cast(image, dtype), dtype


def output_dtype(image_dtype):
    """Float images keep their dtype; integer images (e.g. uint8) come back as float32.

    Integer images are not rounded back: interpolated values are kept in the input's value range
    (0..255 for uint8) so that no precision is lost before normalization.
    """
    return image_dtype if image_dtype.is_floating else tf.float32


@traceable.traceable
def dense_image_warp(image, flow, name=None):
    """Warps images by a dense per-pixel flow, as `tfa.image.dense_image_warp`.

    Args:
      image: [batch, height, width, channels] image, float16/bfloat16/float32/float64 or an
        integer type such as uint8. Any size may be unknown when the function is traced, and so
        may the rank (then it is checked at run time). Heights and widths of 1 are allowed.
      flow: [batch, height, width, 2] float flow in pixels, (dy, dx):
        out[b, y, x] = image[b, y - flow[b, y, x, 0], x - flow[b, y, x, 1]]. No NaN (infinite
        values sample the edge).
      name: optional name scope.

    Returns:
      The warped [batch, height, width, channels] image. Float images keep their dtype; integer
      images are returned as float32 in their original value range (not rounded). Computed in
      float32 (float64 if image or flow is float64).

    Raises:
      ValueError: wrong rank, a last axis of `flow` other than 2, mismatched known sizes, or
        non-numeric dtypes.
      InvalidArgumentError: (run time) the same for what was unknown when traced; NaN in `flow`.
    """
    with tf.name_scope(name or "dense_image_warp"):
        image = tf.convert_to_tensor(image, name="image")
        flow = tf.convert_to_tensor(flow, name="flow")
        image = checks.ensure_rank(image, 4, "image", "[batch, height, width, channels]")
        flow = checks.ensure_rank(flow, 4, "flow", "[batch, height, width, 2]")
        checks.check_image_dtype(image)
        checks.check_float(flow, "flow")
        flow = checks.ensure_last_dim(flow, 2, "flow", "(dy, dx) in pixels")
        flow = checks.ensure_same_sizes(
            image, flow, [(0, 0), (1, 1), (2, 2)],
            "`image` and `flow` must have the same batch, height and width.")
        flow = checks.assert_not_nan(flow, "flow", "(dy, dx) in pixels")
        out_dtype = output_dtype(image.dtype)
        image, dtype = to_compute_dtype(image, flow)
        return tf.cast(warp_with_flow(image, tf.cast(flow, dtype)), out_dtype)
