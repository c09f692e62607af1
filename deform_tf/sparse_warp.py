"""Warping images by moving sparse control points (tensorflow-addons' `sparse_image_warp`).

Conventions (tfa's): points are [batch, num_points, 2] in pixels, (y, x). The displacements
`dest - source` are interpolated with a polyharmonic spline fitted at the *destination* points,
and the image is resampled with `dense_image_warp`, so the pixel at each source point lands on its
destination. Images of rank 2, 3 or 4 are accepted, as in tfa. The paper's deformation is `sparse_image_warp(image, grid + offsets, grid)`; for
that special case `deform_tf.tps` has a much faster path giving the same result.
"""

import tensorflow as tf

from deform_tf import checks
from deform_tf import dense_warp
from deform_tf import spline
from deform_tf import traceable


def boundary_points(height, width, num_boundary_points, dtype):
    """tfa's zero-flow boundary points: [num_points, 2] (y, x) on the image border.

    `num_boundary_points` = 1 gives the 4 corners, n > 1 the corners and n - 1 evenly spaced
    points along each edge (4 n points), in tfa's row-major order.
    """
    count = num_boundary_points + 1
    ys = tf.linspace(tf.constant(0.0, dtype), tf.cast(height - 1, dtype), count)
    xs = tf.linspace(tf.constant(0.0, dtype), tf.cast(width - 1, dtype), count)
    first, last = tf.zeros_like(xs), tf.fill(tf.shape(xs), ys[-1])
    top = tf.stack([first, xs], axis=1)
    bottom = tf.stack([last, xs], axis=1)
    inner_y = ys[1:-1]
    left = tf.stack([inner_y, tf.zeros_like(inner_y)], axis=1)
    right = tf.stack([inner_y, tf.fill(tf.shape(inner_y), xs[-1])], axis=1)
    middle = tf.reshape(tf.stack([left, right], axis=1), [-1, 2])
    return tf.concat([top, middle, bottom], axis=0)


def as_image_batch(image, name="image"):
    """A [batch, height, width, channels] view of an image of rank 2, 3 or 4 (as tfa).

    Args:
      image: [height, width], [height, width, channels] or [batch, height, width, channels]
        (the first two as a batch of one); the rank may be unknown when traced (then it is
        checked at run time).
      name: the argument's name, for error messages.

    Returns:
      (images, restore): the rank-4 images and a function that gives a result of their shape
      back the input's rank.
    """
    rank = image.shape.rank
    if rank == 4:
        return image, lambda result: result
    if rank == 3:
        return image[None], lambda result: result[0]
    if rank == 2:
        return image[None, :, :, None], lambda result: result[0, :, :, 0]
    layout = ("rank 2 [height, width], 3 [height, width, channels] or 4 [batch, height, width, "
              "channels]")
    if rank is not None:
        raise ValueError(f"`{name}` must have {layout}, got shape {image.shape.as_list()}.")
    check = tf.debugging.assert_rank_in(image, [2, 3, 4], message=f"`{name}` must have {layout}.")
    with tf.control_dependencies([check]):
        shape = tf.shape(image)
    rank = tf.size(shape)
    batch_axis = tf.ones([tf.cast(rank < 4, tf.int32)], tf.int32)
    channel_axis = tf.ones([tf.cast(rank == 2, tf.int32)], tf.int32)
    images = tf.reshape(image, tf.concat([batch_axis, shape, channel_axis], axis=0))
    return tf.ensure_shape(images, [None] * 4), lambda result: tf.reshape(result, shape)


def check_control_points(points, name):
    """A float [batch, num_points, 2] (y, x) point tensor, checked (finite at run time)."""
    points = spline.check_points(points, name, "[batch, num_points, 2] (y, x)")
    return checks.ensure_last_dim(points, 2, name, "(y, x) in pixels")


@traceable.traceable
def sparse_image_warp(
    image,
    source_control_point_locations,
    dest_control_point_locations,
    interpolation_order=2,
    regularization_weight=0.0,
    num_boundary_points=0,
    name="sparse_image_warp",
):
    """Warps images so that each source control point moves to its destination (as tfa).

    Args:
      image: [batch, height, width, channels] image, or [height, width, channels] /
        [height, width] (one image; the control points then have batch size 1), float16/
        bfloat16/float32/float64 or an integer type such as uint8. Any size, and the rank, may
        be unknown when the function is traced. Heights and widths of 1 are allowed.
      source_control_point_locations: [batch, num_points, 2] float (y, x) pixel positions.
      dest_control_point_locations: [batch, num_points, 2] float (y, x) pixel positions.
      interpolation_order: polyharmonic order of the spline (2 = thin-plate spline).
      regularization_weight: >= 0; 0 interpolates the control displacements exactly.
      num_boundary_points: zero-flow points added along each edge (0 = none, 1 = 4 corners,
        n = corners and n - 1 per edge), as in tfa.
      name: name scope.

    Degenerate control points (all on one line, duplicated) give the documented answer of
    `deform_tf.spline`: e.g. points on one line all moved by the same (dy, dx), without boundary
    points, shift the whole image by exactly (dy, dx); duplicated destinations with different
    displacements get their mean.

    Returns:
      (warped_image, dense_flows): the warped image, of the input's shape (float images keep
      their dtype, integer images come back as float32 in their original range), and the
      [batch, height, width, 2] flow used, out[y, x] = image[(y, x) - flow[y, x]], in the compute
      dtype (float64 if image or points are float64, else float32).

    Raises:
      ValueError: wrong ranks, mismatched point shapes, a last axis other than 2, negative
        num_boundary_points or regularization_weight.
      InvalidArgumentError: (run time) the same for what was unknown when traced; non-finite
        points; no control points and no boundary points.
    """
    with tf.name_scope(name or "sparse_image_warp"):
        image = tf.convert_to_tensor(image, name="image")
        checks.check_image_dtype(image)
        image, restore_rank = as_image_batch(image)
        source = check_control_points(source_control_point_locations,
                                      "source_control_point_locations")
        dest = check_control_points(dest_control_point_locations, "dest_control_point_locations")
        dest = checks.ensure_same_sizes(
            source, dest, [(0, 0), (1, 1)],
            "`source_control_point_locations` and `dest_control_point_locations` must have "
            "the same shape.")
        source = checks.ensure_same_sizes(
            image, source, [(0, 0)],
            "The control points must have the batch size of `image` (1 for an image of rank 2 "
            "or 3).")
        if not isinstance(num_boundary_points, int) or num_boundary_points < 0:
            raise ValueError(
                f"`num_boundary_points` must be an int >= 0, got {num_boundary_points!r}."
            )
        spline.check_order_and_regularization(interpolation_order, regularization_weight)
        if num_boundary_points == 0:
            source = spline.assert_some_points(source, "source_control_point_locations",
                                               "(or num_boundary_points > 0)")

        out_dtype = dense_warp.output_dtype(image.dtype)
        image, dtype = dense_warp.to_compute_dtype(image, source, dest)
        shape = tf.shape(image)
        batch, height, width = shape[0], shape[1], shape[2]

        f64 = tf.float64
        dest = tf.cast(dest, f64)
        flows = dest - tf.cast(source, f64)
        if num_boundary_points > 0:
            border = boundary_points(height, width, num_boundary_points, f64)
            border = tf.broadcast_to(border[None], [batch, tf.shape(border)[0], 2])
            dest = tf.concat([dest, border], axis=1)
            flows = tf.concat([flows, tf.zeros_like(border)], axis=1)

        grid_y, grid_x = dense_warp.pixel_grid(height, width, f64)
        grid = tf.reshape(tf.stack([grid_y, grid_x], axis=-1), [1, -1, 2])
        dense_flows = spline.interpolate_float64(
            dest, flows, grid, interpolation_order, regularization_weight)
        dense_flows = tf.reshape(tf.cast(dense_flows, dtype), [batch, height, width, 2])
        warped = dense_warp.warp_with_flow(image, dense_flows)
        return restore_rank(tf.cast(warped, out_dtype)), dense_flows
