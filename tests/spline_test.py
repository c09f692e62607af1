"""Tests of `interpolate_spline` against scipy's thin-plate-spline `RBFInterpolator`."""

from absl.testing import parameterized
import numpy as np
from scipy import interpolate
import tensorflow as tf

from deform_tf import interpolate_spline
from tests.oracles import scipy_tps


class InterpolateSplineTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        (1, 4, 1, 1.0), (2, 9, 2, 30.0), (3, 25, 2, 224.0), (1, 7, 3, 5.0), (2, 16, 5, 60.0))
    def test_matches_scipy_thin_plate_spline(self, batch, n, k, scale):
        rng = np.random.default_rng(n * 10 + k)
        points = rng.uniform(0, scale, size=(batch, n, 2))
        values = rng.uniform(-scale / 10, scale / 10, size=(batch, n, k))
        queries = rng.uniform(-5, scale + 5, size=(batch, 50, 2))
        got = interpolate_spline(
            points.astype(np.float32), values.astype(np.float32), queries.astype(np.float32),
            order=2).numpy()
        for b in range(batch):
            # The oracle sees the same float32-rounded inputs.
            expected = scipy_tps(*(a[b].astype(np.float32).astype(np.float64)
                                   for a in (points, values, queries)))
            self.assertAllClose(got[b], expected, atol=1e-4 * max(1.0, scale / 10), rtol=1e-5)

    def test_interpolates_exactly_at_control_points(self):
        rng = np.random.default_rng(0)
        points = rng.uniform(0, 20, size=(2, 6, 2))
        values = rng.normal(size=(2, 6, 2))
        got = interpolate_spline(points, values, points, order=2)
        self.assertAllClose(got, values, atol=1e-9)

    def test_reproduces_affine_functions(self):
        rng = np.random.default_rng(1)
        points = rng.uniform(0, 10, size=(1, 8, 2))
        queries = rng.uniform(0, 10, size=(1, 20, 2))
        affine = lambda p: p @ np.array([[0.5, -1.0], [2.0, 0.25]]) + np.array([3.0, -2.0])
        got = interpolate_spline(points, affine(points), queries, order=2)
        self.assertAllClose(got, affine(queries), atol=1e-9)

    @parameterized.parameters(1, 3)
    def test_other_orders_match_scipy(self, order):
        kernel = {1: "linear", 3: "cubic"}[order]
        rng = np.random.default_rng(order)
        points = rng.uniform(0, 10, size=(1, 10, 2))
        values = rng.normal(size=(1, 10, 1))
        queries = rng.uniform(0, 10, size=(1, 15, 2))
        got = interpolate_spline(points, values, queries, order=order)
        # scipy's "linear" kernel is -r (sign absorbed by the weights), "cubic" r^3. tfa's order-1
        # kernel is sqrt(max(r^2, 1e-10)), i.e. 1e-5 rather than 0 at r = 0; we keep it.
        expected = interpolate.RBFInterpolator(
            points[0], values[0], kernel=kernel, degree=1)(queries[0])
        self.assertAllClose(got[0], expected, atol={1: 1e-4, 3: 1e-8}[order])

    def test_regularization_smooths(self):
        rng = np.random.default_rng(2)
        points = rng.uniform(0, 10, size=(1, 12, 2))
        values = rng.normal(size=(1, 12, 1))
        exact = interpolate_spline(points, values, points, order=2)
        smooth = interpolate_spline(points, values, points, order=2, regularization_weight=10.0)
        self.assertAllClose(exact, values, atol=1e-8)
        self.assertLess(np.abs(smooth).mean(), np.abs(values).mean())

    def test_gradient_finite_when_query_on_control_point(self):
        points = tf.constant([[[0.0, 0.0], [0.0, 4.0], [4.0, 0.0], [4.0, 4.0]]], tf.float32)
        values = tf.constant([[[1.0], [2.0], [3.0], [5.0]]], tf.float32)
        queries = tf.constant([[[0.0, 0.0], [2.0, 2.0]]], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch([points, values])
            out = interpolate_spline(points, values, queries, order=2)
        grads = tape.gradient(out, [points, values])
        for grad in grads:
            self.assertTrue(np.all(np.isfinite(grad.numpy())))

    def test_gradients_match_finite_differences(self):
        rng = np.random.default_rng(3)
        points = tf.constant(rng.uniform(0, 5, size=(1, 5, 2)))
        values = tf.constant(rng.normal(size=(1, 5, 2)))
        queries = tf.constant(rng.uniform(0, 5, size=(1, 7, 2)))
        for which in range(3):
            def f(x, which=which):
                args = [points, values, queries]
                args[which] = x
                return interpolate_spline(*args, order=2)
            theoretical, numerical = tf.test.compute_gradient(
                f, [[points, values, queries][which]], delta=1e-6)
            self.assertAllClose(theoretical, numerical, atol=1e-5, rtol=1e-4)

    @parameterized.named_parameters(
        ("points_rank", np.zeros([4, 2]), np.zeros([1, 4, 1]), np.zeros([1, 3, 2]), "train_points"),
        ("values_rank", np.zeros([1, 4, 2]), np.zeros([4, 1]), np.zeros([1, 3, 2]), "train_values"),
        ("count_mismatch", np.zeros([1, 4, 2]), np.zeros([1, 5, 1]), np.zeros([1, 3, 2]),
         "train_values"),
        ("dims_mismatch", np.zeros([1, 4, 2]), np.zeros([1, 4, 1]), np.zeros([1, 3, 3]),
         "query_points"),
        ("no_points", np.zeros([1, 0, 2]), np.zeros([1, 0, 1]), np.zeros([1, 3, 2]),
         "at least one point"),
    )
    def test_bad_shapes(self, points, values, queries, word):
        with self.assertRaisesRegex(ValueError, word):
            interpolate_spline(points, values, queries, order=2)

    def test_bad_order(self):
        with self.assertRaisesRegex(ValueError, "order"):
            interpolate_spline(np.zeros([1, 4, 2]), np.zeros([1, 4, 1]), np.zeros([1, 1, 2]), 0)

    def test_non_finite_points(self):
        points = np.array([[[0.0, 0.0], [0.0, 1.0], [1.0, np.nan], [1.0, 1.0]]])
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "train_points"):
            interpolate_spline(points, np.zeros([1, 4, 1]), np.zeros([1, 1, 2]), order=2)

    def test_non_finite_values(self):
        values = np.array([[[0.0], [np.inf], [1.0], [2.0]]])
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "train_values"):
            interpolate_spline(np.eye(4, 2)[None], values, np.zeros([1, 1, 2]), order=2)

    def test_no_points_at_run_time(self):
        spec = tf.TensorSpec([1, None, 2], tf.float64)
        fn = tf.function(lambda p, v, q: interpolate_spline(p, v, q, order=2),
                         input_signature=[spec, spec, spec])
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "train_points"):
            fn(np.zeros([1, 0, 2]), np.zeros([1, 0, 2]), np.zeros([1, 3, 2]))


def _phi(squared_distance):
    return 0.5 * squared_distance * np.log(np.maximum(squared_distance, 1e-10))


def min_norm_spline(points, values, queries, regularization_weight=0.0):
    """Oracle: the thin-plate spline system's minimum-norm least-squares solution (numpy SVD).

    In coordinates centred on the points' mean (the convention documented in deform_tf.spline),
    for one example: points [n, d], values [n, k], queries [m, d], all float64.
    """
    centre = points.mean(axis=0)
    c, q = points - centre, queries - centre
    n, d = c.shape
    kernel = _phi(np.sum((c[:, None] - c[None]) ** 2, -1)) + regularization_weight * np.eye(n)
    affine = np.concatenate([c, np.ones([n, 1])], axis=1)
    system = np.block([[kernel, affine], [affine.T, np.zeros([d + 1, d + 1])]])
    rhs = np.concatenate([values, np.zeros([d + 1, values.shape[1]])])
    solution = np.linalg.lstsq(system, rhs, rcond=None)[0]
    basis = np.concatenate([_phi(np.sum((q[:, None] - c[None]) ** 2, -1)), q,
                            np.ones([len(q), 1])], axis=1)
    return basis @ solution


def _degenerate_points(kind, rng):
    """Control points of one degenerate kind: [n, 2] float64 (exact in float32)."""
    line = np.arange(7.0)
    if kind == "on_a_row":  # SpecAugment's control points: one time, several frequencies
        return np.stack([np.full(7, 12.0), line * 3], axis=1)
    if kind == "on_a_diagonal":
        return np.stack([line * 2 + 1, 30 - line * 3], axis=1)
    if kind in ("duplicated", "duplicated_conflicting"):
        points = rng.integers(0, 20, size=(6, 2)).astype(np.float64)
        return np.concatenate([points, points[[1, 4, 1]]])
    if kind == "on_a_row_duplicated":
        return np.stack([np.full(9, 4.0), np.concatenate([line, line[:2]])], axis=1)
    if kind == "one_point":
        return np.array([[3.0, 5.0]])
    if kind == "two_points":
        return np.array([[3.0, 5.0], [9.0, 1.0]])
    if kind == "all_equal":
        return np.full([4, 2], 6.5)
    raise ValueError(kind)


DEGENERATE_KINDS = ("on_a_row", "on_a_diagonal", "duplicated", "duplicated_conflicting",
                    "on_a_row_duplicated", "one_point", "two_points", "all_equal")


def _degenerate_case(kind, seed=0):
    rng = np.random.default_rng(seed)
    points = _degenerate_points(kind, rng)
    values = rng.normal(size=(len(points), 2))
    if kind == "duplicated":  # duplicates carry their original's values
        values[6:] = values[[1, 4, 1]]
    queries = np.concatenate([points, rng.uniform(-5, 35, size=(20, 2))])
    return points, values, queries


class DegenerateControlPointsTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(*DEGENERATE_KINDS)
    def test_minimum_norm_least_squares_in_float64_and_float32(self, kind):
        points, values, queries = _degenerate_case(kind)
        expected = min_norm_spline(points, values, queries)
        got64 = interpolate_spline(points[None], values[None], queries[None], order=2)[0]
        self.assertAllClose(got64, expected, atol=1e-8, rtol=1e-8)
        got32 = interpolate_spline(*(a[None].astype(np.float32) for a in (points, values, queries)),
                                   order=2)[0]
        self.assertAllClose(got32, expected.astype(np.float32), atol=2e-6, rtol=2e-6)

    def test_points_on_one_line_moved_alike_give_that_shift_exactly(self):
        # SpecAugment without boundary points: the slope across the line is not determined by
        # the points; the minimum-norm answer has none, so the spline is the constant shift.
        points = np.stack([np.full(8, 20.0), np.arange(8.0)], axis=1)[None].astype(np.float32)
        shift = np.broadcast_to(np.array([3.25, 0.0], np.float32), points.shape)
        queries = np.random.default_rng(1).uniform(-10, 60, size=(1, 50, 2)).astype(np.float32)
        got = interpolate_spline(points, shift, queries, order=2).numpy()
        np.testing.assert_array_equal(got, np.broadcast_to(shift[:, :1], got.shape))

    def test_duplicates_are_the_point_once_or_the_mean_of_their_values(self):
        rng = np.random.default_rng(2)
        points = rng.uniform(0, 10, size=(1, 5, 2))
        values = rng.normal(size=(1, 5, 1))
        queries = rng.uniform(0, 10, size=(1, 9, 2))
        once = interpolate_spline(points, values, queries, order=2)
        twice = interpolate_spline(np.concatenate([points, points[:, :2]], axis=1),
                                   np.concatenate([values, values[:, :2]], axis=1), queries, 2)
        self.assertAllClose(twice, once, atol=1e-10)
        conflicting = np.concatenate([values, values[:, :1] + 1.0], axis=1)
        compromise = interpolate_spline(np.concatenate([points, points[:, :1]], axis=1),
                                        conflicting, points, order=2)
        expected = values.copy()
        expected[0, 0] += 0.5
        self.assertAllClose(compromise, expected, atol=1e-10)

    def test_regularized_duplicates_are_solved_as_they_are(self):
        points, values, queries = _degenerate_case("duplicated_conflicting", seed=3)
        # Duplicated points keep their own (regularized) equations, as in tfa; only the
        # undetermined slope directions (none here) get the minimum-norm treatment.
        expected = min_norm_spline(points, values, queries, regularization_weight=0.5)
        got = interpolate_spline(points[None], values[None], queries[None], order=2,
                                 regularization_weight=0.5)[0]
        self.assertAllClose(got, expected, atol=1e-8, rtol=1e-8)

    def test_same_answer_eager_graph_and_xla(self):
        cases = [_degenerate_case(kind) for kind in ("on_a_row", "duplicated_conflicting")]
        for points, values, queries in cases:
            args = [a[None].astype(np.float32) for a in (points, values, queries)]
            eager = interpolate_spline(*args, order=2).numpy()
            spec = tf.TensorSpec([None, None, None], tf.float32)
            for jit in (False, True):
                fn = tf.function(lambda p, v, q: interpolate_spline(p, v, q, order=2),
                                 input_signature=[spec] * 3, jit_compile=jit)
                got = fn(*args).numpy()
                if jit:
                    self.assertAllClose(got, eager, atol=1e-5, rtol=1e-6)
                else:
                    np.testing.assert_array_equal(got, eager)

    def test_gradients_are_finite_at_degenerate_points(self):
        for kind in DEGENERATE_KINDS:
            points, values, queries = (tf.constant(a[None]) for a in _degenerate_case(kind))
            with tf.GradientTape() as tape:
                tape.watch([points, values, queries])
                loss = tf.reduce_sum(interpolate_spline(points, values, queries, order=2) ** 2)
            for grad in tape.gradient(loss, [points, values, queries]):
                self.assertTrue(np.all(np.isfinite(grad.numpy())), kind)


if __name__ == "__main__":
    tf.test.main()
