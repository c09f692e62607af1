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
        ("too_few_points", np.zeros([1, 2, 2]), np.zeros([1, 2, 1]), np.zeros([1, 3, 2]),
         "at least 3"),
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

    def test_singular_system_is_reported(self):
        collinear = np.array([[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]])
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "singular|invertible"):
            interpolate_spline(collinear, np.ones([1, 4, 1]), np.zeros([1, 1, 2]), order=2)


if __name__ == "__main__":
    tf.test.main()
