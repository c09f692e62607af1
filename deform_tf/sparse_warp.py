"""Warping images by moving sparse control points (tensorflow-addons' `sparse_image_warp`).

Conventions (tfa's): points are [batch, num_points, 2] in pixels, (y, x). The displacements
`dest - source` are interpolated with a polyharmonic spline fitted at the *destination* points,
and the image is resampled with `dense_image_warp`, so the pixel at each source point lands on its
destination. The paper's deformation is `sparse_image_warp(image, grid + offsets, grid)`; for
that special case `deform_tf.tps` has a much faster path giving the same result.
"""

import tensorflow as tf

from deform_tf import checks
from deform_tf import dense_warp
from deform_tf import spline


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
      image: [batch, height, width, channels] image (float16/bfloat16/float32/float64 or an
        integer type such as uint8); height and width may be unknown at graph-build time.
      source_control_point_locations: [batch, num_points, 2] float (y, x) pixel positions.
      dest_control_point_locations: [batch, num_points, 2] float (y, x) pixel positions.
      interpolation_order: polyharmonic order of the spline (2 = thin-plate spline).
      regularization_weight: >= 0; 0 interpolates the control displacements exactly.
      num_boundary_points: zero-flow points added along each edge (0 = none, 1 = 4 corners,
        n = corners and n - 1 per edge), as in tfa.
      name: name scope.

    Returns:
      (warped_image, dense_flows): the [batch, height, width, channels] warped image (float
      images keep their dtype, integer images come back as float32 in their original range) and
      the [batch, height, width, 2] flow used, out[y, x] = image[(y, x) - flow[y, x]], in the
      compute dtype (float64 if image or points are float64, else float32).

    Raises:
      ValueError: wrong ranks, mismatched point shapes, a last axis other than 2, fewer than 3
        control points, negative num_boundary_points or regularization_weight.
      InvalidArgumentError: (run time) non-finite points, or a singular spline system.
    """
    with tf.name_scope(name or "sparse_image_warp"):
        image = tf.convert_to_tensor(image, name="image")
        checks.check_rank(image, 4, "image", "[batch, height, width, channels]")
        checks.check_image_dtype(image)
        points = []
        for arg_name, value in (
            ("source_control_point_locations", source_control_point_locations),
            ("dest_control_point_locations", dest_control_point_locations),
        ):
            value = spline.check_points(value, arg_name, "[batch, num_points, 2] (y, x)")
            checks.check_last_dim(value, 2, arg_name, "(y, x) in pixels")
            points.append(value)
        source, dest = points
        if not source.shape.is_compatible_with(dest.shape):
            raise ValueError(
                "`source_control_point_locations` and `dest_control_point_locations` must have "
                f"the same shape, got {source.shape.as_list()} and {dest.shape.as_list()}."
            )
        if image.shape[0] is not None and source.shape[0] not in (None, image.shape[0]):
            raise ValueError(
                f"The control points have batch size {source.shape[0]} but `image` has "
                f"{image.shape[0]}."
            )
        if not isinstance(num_boundary_points, int) or num_boundary_points < 0:
            raise ValueError(
                f"`num_boundary_points` must be an int >= 0, got {num_boundary_points!r}."
            )

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
        grid = tf.broadcast_to(grid, [batch, height * width, 2])
        dense_flows = spline.interpolate_spline(
            dest, flows, grid, interpolation_order, regularization_weight
        )
        dense_flows = tf.reshape(tf.cast(dense_flows, dtype), [batch, height, width, 2])
        warped = dense_warp.warp_with_flow(image, dense_flows)
        return tf.cast(warped, out_dtype), dense_flows
