"""Bilinear resampling of images by a dense flow field (tensorflow-addons' `dense_image_warp`).

Conventions (those of `tfa.image.dense_image_warp`): images are [batch, height, width, channels];
a flow is [batch, height, width, 2] in pixels, (y, x) order, and

    out[b, y, x, c] = image[b, y - flow[b, y, x, 0], x - flow[b, y, x, 1], c]

with bilinear interpolation. Positions outside the image take the value of the nearest edge pixel
(as `scipy.ndimage.map_coordinates(order=1, mode='nearest')`). Integer query positions return the
pixel exactly, so a zero flow is the identity and a flow of whole pixels is an exact shift.
"""

import tensorflow as tf

from deform_tf import checks


def axis_corner(coords, size):
    """Lower neighbour index and the weight of the next pixel along one axis.

    Args:
      coords: float tensor of query coordinates along the axis, in pixels.
      size: int32 scalar (or Python int), the length of the axis.

    Returns:
      (lower, alpha): int32 index in [0, max(size - 2, 0)] and the float weight in [0, 1] of
      pixel `lower + 1`. Coordinates are first clamped to [0, size - 1] (outside the image the
      edge value is used), and the lower index is capped at size - 2 so that the last pixel is
      reached with alpha = 1 exactly; integer coordinates give alpha = 0 or 1 exactly.
    """
    lower, alpha = axis_corner_float(coords, size)
    return tf.cast(lower, tf.int32), alpha


def axis_corner_float(coords, size):
    """`axis_corner` with the lower index as a whole number in the dtype of `coords`."""
    size = tf.cast(size, coords.dtype)
    coords = tf.clip_by_value(coords, tf.zeros([], coords.dtype), size - 1.0)
    lower = tf.minimum(tf.floor(coords), tf.maximum(size - 2.0, 0.0))
    return lower, coords - lower


def resample_bilinear(image, query_y, query_x):
    """Samples `image` at arbitrary (y, x) pixel positions with bilinear interpolation.

    Args:
      image: [batch, height, width, channels] float tensor (already in the compute dtype).
      query_y, query_x: [batch, ...] float tensors of the same shape (and dtype as `image`),
        positions in pixels; outside the image the nearest edge pixel is used.

    Returns:
      [batch, ..., channels] tensor: the sampled values.
    """
    shape = tf.shape(image)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    y0, ay = axis_corner(query_y, height)
    x0, ax = axis_corner(query_x, width)
    # The upper neighbour is lower + 1, except on an axis of size 1 (then alpha is 0).
    y1 = tf.minimum(y0 + 1, height - 1)
    x1 = tf.minimum(x0 + 1, width - 1)

    flat = tf.reshape(image, [-1, channels])
    query_rank = tf.rank(query_y)
    base_shape = tf.concat([[batch], tf.ones([query_rank - 1], tf.int32)], axis=0)
    base = tf.reshape(tf.range(batch) * (height * width), base_shape)
    rows0 = base + y0 * width
    rows1 = base + y1 * width

    by, bx = 1.0 - ay, 1.0 - ax
    return weighted_rows(flat, [rows0 + x0, rows0 + x1, rows1 + x0, rows1 + x1],
                         [by * bx, by * ax, ay * bx, ay * ax])


def weighted_rows(flat, indices, weights):
    """sum_k weights[k] * flat[indices[k]]: the bilinear sum over the four corners.

    Args:
      flat: [rows, channels] image rows (pixels).
      indices: int32 [batch, ...] row index of each corner (top-left, top-right, bottom-left,
        bottom-right).
      weights: the [batch, ...] corner weights, in the same order.

    Returns:
      [batch, ..., channels]. The weights are formed without the channel axis, so only four
      multiplies broadcast over channels; the weighted-sum form (not a + t * (b - a)) returns a
      pixel exactly when the weights are 0 or 1.
    """
    # gather_nd of whole rows is faster than tf.gather on CPU (TF 2.21).
    return tf.add_n([w[..., None] * tf.gather_nd(flat, i[..., None])
                     for i, w in zip(indices, weights)])


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


def dense_image_warp(image, flow, name=None):
    """Warps images by a dense per-pixel flow, as `tfa.image.dense_image_warp`.

    Args:
      image: [batch, height, width, channels] image, float16/bfloat16/float32/float64 or an
        integer type such as uint8. Height and width may be unknown when the graph is built.
      flow: [batch, height, width, 2] float flow in pixels, (dy, dx):
        out[b, y, x] = image[b, y - flow[b, y, x, 0], x - flow[b, y, x, 1]].
      name: optional name scope.

    Returns:
      The warped [batch, height, width, channels] image. Float images keep their dtype; integer
      images are returned as float32 in their original value range (not rounded).

    Raises:
      ValueError: wrong rank, a last axis of `flow` other than 2, mismatched known sizes, or
        non-numeric dtypes.
    """
    with tf.name_scope(name or "dense_image_warp"):
        image = tf.convert_to_tensor(image, name="image")
        flow = tf.convert_to_tensor(flow, name="flow")
        checks.check_rank(image, 4, "image", "[batch, height, width, channels]")
        checks.check_rank(flow, 4, "flow", "[batch, height, width, 2]")
        checks.check_image_dtype(image)
        checks.check_float(flow, "flow")
        checks.check_last_dim(flow, 2, "flow", "(dy, dx) in pixels")
        for axis, axis_name in enumerate(("batch", "height", "width")):
            a, b = image.shape[axis], flow.shape[axis]
            if a is not None and b is not None and a != b:
                raise ValueError(
                    f"`image` and `flow` must have the same {axis_name}, got image shape "
                    f"{image.shape.as_list()} and flow shape {flow.shape.as_list()}."
                )
        with tf.control_dependencies([
            tf.debugging.assert_equal(
                tf.shape(image)[:3], tf.shape(flow)[:3],
                message="`image` and `flow` must have the same batch, height and width.")
        ]):
            flow = tf.identity(flow)
        out_dtype = output_dtype(image.dtype)
        image, dtype = to_compute_dtype(image, flow)
        return tf.cast(warp_with_flow(image, tf.cast(flow, dtype)), out_dtype)
