"""Bilinear resampling of images by a dense flow field (tensorflow-addons' `dense_image_warp`).

Conventions (those of `tfa.image.dense_image_warp`): images are [batch, height, width, channels];
a flow is [batch, height, width, 2] in pixels, (y, x) order, and

    out[b, y, x, c] = image[b, y - flow[b, y, x, 0], x - flow[b, y, x, 1], c]

with bilinear interpolation. Positions outside the image take the value of the nearest edge pixel
(as `scipy.ndimage.map_coordinates(order=1, mode='nearest')`), or, with `fill_mode`, a constant
or the reflected image (as Keras' preprocessing layers). A flow vector that is not finite keeps
the input pixel (in eager mode, graphs and XLA alike, without an assert). Integer query
positions return the pixel exactly, so a zero flow is the identity (also on 1-pixel axes) and a
flow of whole pixels is an exact shift; a constant image stays exactly constant under any flow
(`lerp`). Eager calls and `tf.function` traces with known or unknown shapes give bit-identical
results.
"""

import math

import tensorflow as tf

from deform_tf import checks
from deform_tf import traceable


FILL_MODES = ("nearest", "constant", "reflect")
INTERPOLATIONS = ("bilinear", "nearest")


def check_fill_mode(fill_mode, fill_value=0.0):
    """Raises ValueError unless `fill_mode` is one of `FILL_MODES` and `fill_value` a finite
    number; returns (fill_mode, float(fill_value))."""
    if fill_mode not in FILL_MODES:
        raise ValueError(f"`fill_mode` must be one of {FILL_MODES} (nearest = the edge pixel), "
                         f"got {fill_mode!r}.")
    try:
        fill_value = float(fill_value)
    except (TypeError, ValueError):
        fill_value = float("nan")
    if not math.isfinite(fill_value):
        raise ValueError(f"`fill_value` must be a finite number, got {fill_value!r}.")
    return fill_mode, fill_value


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


def reflect_coordinates(coords, size):
    """Coordinates folded into the image by reflection about the outer edges of the border
    pixels (-0.5 and size - 0.5): the image extended as (d c b a | a b c d | d c b a).

    Folding the coordinate and then interpolating (with edge clamping) equals interpolating the
    reflected image, since the fold maps each stretch between two pixel centres onto one.
    Coordinates inside [-0.5, size - 0.5] are returned unchanged (bit for bit).
    """
    size = tf.cast(size, coords.dtype)
    folded = tf.math.floormod(coords + 0.5, 2.0 * size)
    folded = tf.where(folded > size, 2.0 * size - folded, folded) - 0.5
    inside = (coords >= -0.5) & (coords <= size - 0.5)
    return tf.where(inside, coords, folded)


def constant_neighbours(coords, size):
    """`axis_neighbours` for `fill_mode="constant"`: (lower, upper, weight, lower_inside,
    upper_inside).

    The image is extended by the fill value, so a neighbour outside [0, size - 1] is marked
    (its index is clamped only to stay a valid gather index). Coordinates are first clamped to
    [-1, size], which changes no value (beyond it both neighbours are outside).
    """
    size_f = tf.cast(size, coords.dtype)
    coords = tf.clip_by_value(coords, -tf.ones([], coords.dtype), size_f)
    lower = tf.floor(coords)
    weight = coords - lower
    lower = tf.cast(lower, tf.int32)
    upper = lower + 1
    lower_inside = (lower >= 0) & (lower <= size - 1)
    upper_inside = upper <= size - 1
    return (tf.clip_by_value(lower, 0, size - 1), tf.minimum(upper, size - 1), weight,
            lower_inside, upper_inside)


def lerp(a, b, weight):
    """a + weight * (b - a): the one blend formula of the bilinear resampling.

    Exact (returns `a` bit for bit) when weight = 0 (whole pixels) and when a == b (constant
    images, for any weight); elsewhere it is tfa's arithmetic, `alpha * (b - a) + a`.
    `weight` must broadcast against the values (give it a trailing channel axis).
    """
    return a + weight * (b - a)


def _row_bases(batch, height, width, query_y):
    """The flat index of the first pixel of each example, shaped to broadcast against queries.

    A query batch of 1 against an image batch of B (or the reverse) broadcasts, as in tfa.
    """
    query_rank = tf.rank(query_y)
    base_shape = tf.concat([[batch], tf.ones([query_rank - 1], tf.int32)], axis=0)
    return tf.reshape(tf.range(batch) * (height * width), base_shape)


def resample_bilinear(image, query_y, query_x, fill_mode="nearest", fill_value=0.0):
    """Samples `image` at arbitrary (y, x) pixel positions with bilinear interpolation.

    The one resampling of every op and path (eager, graph, and compiled by XLA, where it is the
    fast path's resampling).

    Args:
      image: [batch, height, width, channels] float tensor (already in the compute dtype).
      query_y, query_x: [batch, ...] float tensors of the same shape (and dtype as `image`),
        positions in pixels (no NaN: the callers replace them). A batch of 1 (queries or
        image) broadcasts against the other's batch.
      fill_mode: how the image is extended beyond its border (`check_fill_mode`): "nearest"
        (the edge pixel, tfa's), "constant" (`fill_value`; a position between the border pixel
        and the outside blends the two) or "reflect" (d c b a | a b c d | d c b a).
      fill_value: the value outside the image for "constant".

    Returns:
      [batch, ..., channels] tensor: `lerp` along x between the two rows, then along y (as
      tfa), so whole-pixel positions return the pixel and a constant image stays constant.
      Gradients: at a whole-pixel position the derivative with respect to the position is the
      difference to the next pixel (0 on the last row or column and outside the image).
    """
    shape = tf.shape(image)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    if fill_mode == "reflect":
        query_y = reflect_coordinates(query_y, height)
        query_x = reflect_coordinates(query_x, width)
    if fill_mode == "constant":
        y0, y1, weight_y, y0_in, y1_in = constant_neighbours(query_y, height)
        x0, x1, weight_x, x0_in, x1_in = constant_neighbours(query_x, width)
    else:
        y0, y1, weight_y = axis_neighbours(query_y, height)
        x0, x1, weight_x = axis_neighbours(query_x, width)

    flat = tf.reshape(image, [-1, channels])
    base = _row_bases(batch, height, width, query_y)
    rows0 = base + y0 * width
    rows1 = base + y1 * width
    # gather_nd of whole rows is faster than tf.gather on CPU (TF 2.21); XLA compiles the four
    # gathers and the blend into one loop.
    corners = [tf.gather_nd(flat, index[..., None])
               for index in (rows0 + x0, rows0 + x1, rows1 + x0, rows1 + x1)]
    if fill_mode == "constant":
        fill = tf.cast(fill_value, image.dtype)
        inside = (y0_in & x0_in, y0_in & x1_in, y1_in & x0_in, y1_in & x1_in)
        corners = [tf.where(ok[..., None], value, fill) for ok, value in zip(inside, corners)]
    top_left, top_right, bottom_left, bottom_right = corners
    weight_y, weight_x = weight_y[..., None], weight_x[..., None]
    top = lerp(top_left, top_right, weight_x)
    bottom = lerp(bottom_left, bottom_right, weight_x)
    return lerp(top, bottom, weight_y)


def resample_nearest(image, query_y, query_x, fill_mode="nearest", fill_value=0):
    """Samples `image` at (y, x) pixel positions by the nearest pixel (for label maps).

    Args as `resample_bilinear`; `image` may have any dtype (e.g. integer class ids, which are
    returned unchanged, never blended). A position takes the pixel whose centre is nearest
    (halves round up); with "constant", positions nearer to a pixel outside the image take
    `fill_value` (cast to the image's dtype).
    """
    shape = tf.shape(image)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    if fill_mode == "reflect":
        query_y = reflect_coordinates(query_y, height)
        query_x = reflect_coordinates(query_x, width)

    def index(coords, size):
        size_f = tf.cast(size, coords.dtype)
        rounded = tf.floor(tf.clip_by_value(coords, -1.0, size_f) + 0.5)
        inside = (rounded >= 0) & (rounded <= size_f - 1)
        return tf.cast(tf.clip_by_value(rounded, 0.0, size_f - 1), tf.int32), inside

    y, y_in = index(query_y, height)
    x, x_in = index(query_x, width)
    flat = tf.reshape(image, [-1, channels])
    values = tf.gather_nd(flat, (_row_bases(batch, height, width, query_y) + y * width + x)[
        ..., None])
    if fill_mode == "constant":
        values = tf.where((y_in & x_in)[..., None], values, tf.cast(fill_value, image.dtype))
    return values


def pixel_grid(height, width, dtype):
    """The (y, x) coordinates of every pixel: two [height, width] tensors."""
    ys = tf.range(tf.cast(height, dtype))
    xs = tf.range(tf.cast(width, dtype))
    grid_y, grid_x = tf.meshgrid(ys, xs, indexing="ij")
    return grid_y, grid_x


def warp_with_flow(image, flow, fill_mode="nearest", fill_value=0.0):
    """`dense_image_warp` without argument checks: image and flow in one float compute dtype."""
    shape = tf.shape(image)
    grid_y, grid_x = pixel_grid(shape[1], shape[2], flow.dtype)
    return resample_bilinear(image, grid_y - flow[..., 0], grid_x - flow[..., 1], fill_mode,
                             fill_value)


def finite_flow(flow):
    """The flow with every vector that has a NaN or infinite component replaced by (0, 0).

    The defined answer of the warps for a non-finite flow: the output keeps the input pixel
    there. Finite vectors are returned bit for bit.
    """
    finite = tf.reduce_all(tf.math.is_finite(flow), axis=-1, keepdims=True)
    return tf.where(finite, flow, tf.zeros([], flow.dtype))


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
def dense_image_warp(image, flow, name=None, fill_mode="nearest", fill_value=0.0):
    """Warps images by a dense per-pixel flow, as `tfa.image.dense_image_warp`.

    Args:
      image: [batch, height, width, channels] image, float16/bfloat16/float32/float64 or an
        integer type such as uint8. Any size may be unknown when the function is traced, and so
        may the rank (then it is checked at run time). Heights and widths of 1 are allowed.
      flow: [batch, height, width, 2] float flow in pixels, (dy, dx):
        out[b, y, x] = image[b, y - flow[b, y, x, 0], x - flow[b, y, x, 1]]. Where a flow
        vector is not finite (a NaN or infinite component) the output is the input pixel
        (the vector is taken as (0, 0)): the same finite result in eager mode, in graphs and
        under XLA, and no error.
      name: optional name scope.
      fill_mode: the image beyond its border: "nearest" (the edge pixel, tfa's and the
        default), "constant" (`fill_value`) or "reflect" (d c b a | a b c d | d c b a).
      fill_value: the value outside the image for "constant" (in the image's value range).

    Returns:
      The warped [batch, height, width, channels] image. Float images keep their dtype; integer
      images are returned as float32 in their original value range (not rounded). Computed in
      float32 (float64 if image or flow is float64).

    Raises:
      ValueError: wrong rank, a last axis of `flow` other than 2, mismatched known sizes,
        non-numeric dtypes, an unknown `fill_mode` or a non-finite `fill_value`.
      InvalidArgumentError: (run time) the same for what was unknown when traced.
    """
    fill_mode, fill_value = check_fill_mode(fill_mode, fill_value)
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
        out_dtype = output_dtype(image.dtype)
        image, dtype = to_compute_dtype(image, flow)
        flow = finite_flow(tf.cast(flow, dtype))
        return tf.cast(warp_with_flow(image, flow, fill_mode, fill_value), out_dtype)
