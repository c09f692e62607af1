"""Polyharmonic spline interpolation (tensorflow-addons' `interpolate_spline`).

The interpolant through n points c_i with values f_i is

    s(x) = sum_i w_i phi(|x - c_i|) + v^T [x, 1],   sum_i w_i = 0,  sum_i w_i c_i = 0,

with phi(r) = r^k for odd orders k and r^k log r for even k; order 2 is the thin-plate spline
(phi(r) = r^2 log r). `regularization_weight` adds lambda * I to the kernel matrix (smoothing
instead of exact interpolation), in the units of the points, as tfa does.

Numerics: tfa solved the (n + d + 1)-square system in the input dtype; with pixel coordinates
(phi ~ 1e5 at 224 px) float32 loses about three digits there. This module solves and evaluates
in float64 and casts the result back, which costs little because n is small. The kernel keeps
tfa's guard phi(r) = 0.5 r^2 log(max(r^2, 1e-10)): it is 0 at r = 0 and its gradient stays finite
when a query point sits exactly on a control point.
"""

import tensorflow as tf

from deform_tf import checks

_EPSILON = 1e-10


def phi(squared_distance, order):
    """The polyharmonic kernel of `order` as a function of the squared distance r^2."""
    r2 = squared_distance
    if order == 1:
        return tf.sqrt(tf.maximum(r2, _EPSILON))
    if order == 2:
        return 0.5 * r2 * tf.math.log(tf.maximum(r2, _EPSILON))
    if order == 4:
        return 0.5 * tf.square(r2) * tf.math.log(tf.maximum(r2, _EPSILON))
    if order % 2 == 0:
        r2 = tf.maximum(r2, _EPSILON)
        return 0.5 * tf.pow(r2, 0.5 * order) * tf.math.log(r2)
    r2 = tf.maximum(r2, _EPSILON)
    return tf.pow(r2, 0.5 * order)


def cross_squared_distance(x, y):
    """Squared Euclidean distances |x_i - y_j|^2: [b, m, d] x [b, n, d] -> [b, m, n].

    Uses |x|^2 + |y|^2 - 2 x.y, which is accurate to ~1e-11 px^2 in float64 at image scales.
    """
    x_norm = tf.reduce_sum(tf.square(x), axis=-1, keepdims=True)
    y_norm = tf.reduce_sum(tf.square(y), axis=-1, keepdims=True)
    cross = tf.matmul(x, y, transpose_b=True)
    return tf.maximum(x_norm - 2.0 * cross + tf.linalg.matrix_transpose(y_norm), 0.0)


def solve_interpolation(train_points, train_values, order, regularization_weight=0.0):
    """Solves for the kernel weights w [b, n, k] and the affine part v [b, d + 1, k].

    All inputs in float64. Raises InvalidArgumentError at run time if the system is singular
    (fewer than d + 1 points in general position, or repeated points without regularization).
    """
    shape = tf.shape(train_points)
    batch, n, d = shape[0], shape[1], shape[2]
    k = tf.shape(train_values)[2]
    dtype = train_points.dtype

    matrix_a = phi(cross_squared_distance(train_points, train_points), order)
    if regularization_weight:
        matrix_a += regularization_weight * tf.eye(n, batch_shape=[batch], dtype=dtype)
    ones = tf.ones_like(train_points[..., :1])
    matrix_b = tf.concat([train_points, ones], axis=2)  # [b, n, d + 1]
    left_block = tf.concat([matrix_a, tf.linalg.matrix_transpose(matrix_b)], axis=1)
    right_block = tf.concat([matrix_b, tf.zeros([batch, d + 1, d + 1], dtype)], axis=1)
    lhs = tf.concat([left_block, right_block], axis=2)  # [b, n + d + 1, n + d + 1]
    rhs = tf.concat([train_values, tf.zeros([batch, d + 1, k], dtype)], axis=1)
    solution = tf.linalg.solve(lhs, rhs)
    solution = tf.debugging.assert_all_finite(
        solution,
        "The spline system is singular: the control points must include at least d + 1 = 3 "
        "distinct points not on one line (or use regularization_weight > 0).",
    )
    return solution[:, :n, :], solution[:, n:, :]


def apply_interpolation(query_points, train_points, w, v, order):
    """Evaluates the spline at `query_points` [b, m, d] (all float64) -> [b, m, k]."""
    rbf_term = tf.matmul(phi(cross_squared_distance(query_points, train_points), order), w)
    ones = tf.ones_like(query_points[..., :1])
    linear_term = tf.matmul(tf.concat([query_points, ones], axis=2), v)
    return rbf_term + linear_term


def check_points(points, name, layout="[batch, num_points, dims]"):
    """Validates a float rank-3 point tensor, with a run-time finiteness check."""
    points = tf.convert_to_tensor(points, name=name)
    checks.check_rank(points, 3, name, layout)
    checks.check_float(points, name)
    return checks.assert_finite(points, name)


def interpolate_spline(
    train_points, train_values, query_points, order, regularization_weight=0.0, name=None
):
    """Interpolates `train_values` at `train_points` with a polyharmonic spline (as tfa).

    Args:
      train_points: [batch, n, d] float control point locations.
      train_values: [batch, n, k] float values at the control points.
      query_points: [batch, m, d] float locations to evaluate the interpolant at.
      order: int >= 1, the polyharmonic order (2 = thin-plate spline).
      regularization_weight: float >= 0; 0 interpolates exactly.
      name: optional name scope.

    Returns:
      [batch, m, k] interpolated values in the dtype of `train_values`.

    Raises:
      ValueError: wrong ranks or mismatched sizes, order < 1, negative regularization.
      InvalidArgumentError: (run time) non-finite points or a singular system.
    """
    with tf.name_scope(name or "interpolate_spline"):
        if not isinstance(order, int) or order < 1:
            raise ValueError(f"`order` must be an int >= 1 (2 = thin-plate spline), got {order!r}.")
        if regularization_weight < 0:
            raise ValueError(f"`regularization_weight` must be >= 0, got {regularization_weight}.")
        train_points = check_points(train_points, "train_points")
        query_points = check_points(query_points, "query_points")
        train_values = tf.convert_to_tensor(train_values, name="train_values")
        checks.check_rank(train_values, 3, "train_values", "[batch, n, k]")
        checks.check_float(train_values, "train_values")
        for a_name, a, b_name, b, axis in (
            ("train_points", train_points, "train_values", train_values, 0),
            ("train_points", train_points, "train_values", train_values, 1),
            ("train_points", train_points, "query_points", query_points, 0),
            ("train_points", train_points, "query_points", query_points, 2),
        ):
            known = a.shape[axis] is not None and b.shape[axis] is not None
            if known and a.shape[axis] != b.shape[axis]:
                raise ValueError(
                    f"`{a_name}` {a.shape.as_list()} and `{b_name}` {b.shape.as_list()} must "
                    f"agree on axis {axis}."
                )
        n, d = train_points.shape[1], train_points.shape[2]
        if n is not None and d is not None and n < d + 1:
            raise ValueError(
                f"`train_points` has {n} points in {d} dimensions; the affine part of the spline "
                f"needs at least {d + 1} points in general position."
            )
        f64 = tf.float64
        c = tf.cast(train_points, f64)
        w, v = solve_interpolation(c, tf.cast(train_values, f64), order, regularization_weight)
        values = apply_interpolation(tf.cast(query_points, f64), c, w, v, order)
        return tf.cast(values, train_values.dtype)
