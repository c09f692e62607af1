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

Degenerate control points (where tfa's solve fails or returns an arbitrary answer): the system
is solved in coordinates centred on the points' mean (and values centred on their mean), and a
rank-deficient system gets its minimum-norm least-squares solution. Its null space is known in
closed form, so that solution comes from one ordinary (LU) solve of the system plus the
projector onto the null space, which is exact and equal to the plain solve when the system is
regular:
- directions the points do not span (all points on a line, or all equal; a spread below
  `SPAN_TOLERANCE` of the largest coordinate) get zero slope: points on one line with one
  common value give that constant everywhere;
- without regularization, points that are equal (bit for bit) act as one point whose value is
  the mean of their values: with equal values the same spline as the point once, with
  conflicting values their least-squares compromise (the spline passes through the mean).
Only what truly has no answer raises: non-finite points or values, or no points at all.
"""

import tensorflow as tf

from deform_tf import checks
from deform_tf import traceable

_EPSILON = 1e-10

# Directions along which the control points' RMS spread is at most this fraction of their largest
# coordinate are treated as not spanned: below what float32 coordinates resolve (2^-23 ~ 1.2e-7).
SPAN_TOLERANCE = 1e-6


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


def spanned_projector(centred, scale):
    """The projector [b, d, d] onto the directions the centred points span.

    Args:
      centred: [b, n, d] float64 points minus their mean.
      scale: [b] the largest absolute coordinate of the (uncentred) points.

    A principal direction counts as spanned when the points' RMS distance from their mean along
    it exceeds `SPAN_TOLERANCE * scale`. With every direction spanned the result is exactly the
    identity. Computed without gradient: the spline does not depend on the choice of axes.
    """
    centred = tf.stop_gradient(centred)
    d = tf.shape(centred)[2]
    count = tf.cast(tf.shape(centred)[1], centred.dtype)
    spread, directions = tf.linalg.eigh(tf.matmul(centred, centred, transpose_a=True))
    unspanned = spread / count <= tf.square(SPAN_TOLERANCE * tf.stop_gradient(scale))[:, None]
    null = directions * tf.cast(unspanned, centred.dtype)[:, None, :]
    return tf.eye(d, dtype=centred.dtype) - tf.matmul(null, directions, transpose_b=True)


def duplicate_means(points):
    """[b, n, n] averaging matrix: row i averages over the points equal (bit for bit) to point i.

    It is the identity when the points are distinct.
    """
    same = tf.cast(tf.reduce_all(points[:, :, None, :] == points[:, None, :, :], axis=-1),
                   points.dtype)
    return same / tf.reduce_sum(same, axis=-1, keepdims=True)


def fit_spline(train_points, train_values, order, regularization_weight=0.0):
    """Solves for the spline through `train_values` at `train_points` (all float64).

    Args:
      train_points: [b, n, d] control points (n >= 1).
      train_values: [b, n, k] values at the control points.
      order: polyharmonic order.
      regularization_weight: Python float >= 0.

    Returns:
      (centre, projector, w, v, value_mean): the [b, 1, d] mean of the points, the [b, d, d]
      `spanned_projector`, the kernel weights [b, n, k], the affine part [b, d + 1, k] in
      centred and projected coordinates, and the [b, 1, k] mean of the values. `apply_spline`
      evaluates it. See the module docstring for the minimum-norm convention.
    """
    n = tf.shape(train_points)[1]
    batch, d = tf.shape(train_points)[0], tf.shape(train_points)[2]
    k = tf.shape(train_values)[2]
    dtype = train_points.dtype

    centre = tf.stop_gradient(tf.reduce_mean(train_points, axis=1, keepdims=True))
    centred = train_points - centre
    projector = spanned_projector(centred, tf.reduce_max(tf.abs(train_points), axis=[1, 2]))
    value_mean = tf.reduce_mean(train_values, axis=1, keepdims=True)
    values = train_values - value_mean

    matrix_a = phi(cross_squared_distance(centred, centred), order)
    ones = tf.ones_like(centred[..., :1])
    matrix_b = tf.concat([tf.matmul(centred, projector), ones], axis=2)  # [b, n, d + 1]
    # The projector onto the null space of the system (zero when it is regular): within-group
    # differences of duplicated points' weights, and slopes along unspanned directions. Adding
    # it makes the system regular; with the values projected onto the system's range (group
    # means), the solution is the minimum-norm least-squares one.
    if regularization_weight:
        matrix_a += regularization_weight * tf.eye(n, batch_shape=[batch], dtype=dtype)
        weight_null = tf.zeros_like(matrix_a)
    else:
        means = duplicate_means(train_points)
        weight_null = tf.eye(n, batch_shape=[batch], dtype=dtype) - means
        values = tf.matmul(means, values)
    affine_null = tf.pad(tf.eye(d, dtype=dtype) - projector, [[0, 0], [0, 1], [0, 1]])
    left_block = tf.concat([matrix_a + weight_null, tf.linalg.matrix_transpose(matrix_b)],
                           axis=1)
    right_block = tf.concat([matrix_b, affine_null], axis=1)
    lhs = tf.concat([left_block, right_block], axis=2)  # [b, n + d + 1, n + d + 1]
    rhs = tf.concat([values, tf.zeros([batch, d + 1, k], dtype)], axis=1)
    solution = tf.debugging.assert_all_finite(
        tf.linalg.solve(lhs, rhs),
        "The spline system could not be solved (non-finite solution); the control points "
        "may be too close together for the float64 solve.")
    return centre, projector, solution[:, :n, :], solution[:, n:, :], value_mean


def apply_spline(query_points, train_points, spline, order):
    """Evaluates a `fit_spline` result at `query_points` [b, m, d] (all float64) -> [b, m, k]."""
    centre, projector, w, v, value_mean = spline
    query = query_points - centre
    rbf_term = tf.matmul(phi(cross_squared_distance(query, train_points - centre), order), w)
    ones = tf.ones_like(query[..., :1])
    linear_term = tf.matmul(tf.concat([tf.matmul(query, projector), ones], axis=2), v)
    return rbf_term + linear_term + value_mean


def interpolate_float64(train_points, train_values, query_points, order,
                        regularization_weight=0.0):
    """`interpolate_spline` without argument checks: float64 in, float64 out."""
    spline = fit_spline(train_points, train_values, order, regularization_weight)
    return apply_spline(query_points, train_points, spline, order)


def check_points(points, name, layout="[batch, num_points, dims]"):
    """Validates a float rank-3 point tensor (rank checked at run time if unknown) and finiteness."""
    points = tf.convert_to_tensor(points, name=name)
    points = checks.ensure_rank(points, 3, name, layout)
    checks.check_float(points, name)
    return checks.assert_finite(points, name)


def check_order_and_regularization(order, regularization_weight):
    """Raises ValueError unless order is an int >= 1 and regularization_weight a number >= 0."""
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"`order` must be an int >= 1 (2 = thin-plate spline), got {order!r}.")
    if not isinstance(regularization_weight, (int, float)) or regularization_weight < 0:
        raise ValueError(
            f"`regularization_weight` must be a number >= 0, got {regularization_weight!r}.")


def assert_some_points(points, name, hint=""):
    """Checks (statically if known, else at run time) that `points` has at least one point."""
    message = f"`{name}` must hold at least one point {hint}".rstrip() + "."
    if points.shape[1] is not None:
        if points.shape[1] == 0:
            raise ValueError(f"{message} Got shape {points.shape.as_list()}.")
        return points
    with tf.control_dependencies([
            tf.debugging.assert_positive(tf.shape(points)[1], message=message)]):
        return tf.identity(points)


@traceable.traceable
def interpolate_spline(
    train_points, train_values, query_points, order, regularization_weight=0.0, name=None
):
    """Interpolates `train_values` at `train_points` with a polyharmonic spline (as tfa).

    Args:
      train_points: [batch, n, d] float control point locations (n >= 1; degenerate sets, e.g.
        collinear or duplicated points, get the minimum-norm answer of the module docstring).
      train_values: [batch, n, k] float values at the control points.
      query_points: [batch, m, d] float locations to evaluate the interpolant at.
      order: int >= 1, the polyharmonic order (2 = thin-plate spline).
      regularization_weight: float >= 0; 0 interpolates exactly.
      name: optional name scope.

    Any size, and the ranks, may be unknown when the function is traced.

    Returns:
      [batch, m, k] interpolated values in the dtype of `train_values` (computed in float64).

    Raises:
      ValueError: wrong ranks or mismatched sizes, no points, order < 1, negative
        regularization.
      InvalidArgumentError: (run time) the same for what was unknown when traced; non-finite
        points or values.
    """
    with tf.name_scope(name or "interpolate_spline"):
        check_order_and_regularization(order, regularization_weight)
        train_points = check_points(train_points, "train_points")
        query_points = check_points(query_points, "query_points")
        train_values = tf.convert_to_tensor(train_values, name="train_values")
        train_values = checks.ensure_rank(train_values, 3, "train_values", "[batch, n, k]")
        checks.check_float(train_values, "train_values")
        train_values = checks.assert_finite(train_values, "train_values", "values")
        train_values = checks.ensure_same_sizes(
            train_points, train_values, [(0, 0), (1, 1)],
            "`train_points` [batch, n, d] and `train_values` [batch, n, k] must agree on batch "
            "and n.")
        query_points = checks.ensure_same_sizes(
            train_points, query_points, [(0, 0), (2, 2)],
            "`train_points` [batch, n, d] and `query_points` [batch, m, d] must agree on batch "
            "and d.")
        train_points = assert_some_points(train_points, "train_points")
        f64 = tf.float64
        values = interpolate_float64(
            tf.cast(train_points, f64), tf.cast(train_values, f64), tf.cast(query_points, f64),
            order, regularization_weight)
        return tf.cast(values, train_values.dtype)
