"""Tests of `interpolate_bilinear` (tfa's semantics) against scipy and hand-computed values."""

from absl.testing import parameterized
import numpy as np
from scipy import ndimage
import tensorflow as tf

from deform_tf import interpolate_bilinear


def scipy_bilinear(grid, points_yx):
    """Oracle: [batch, n, channels] values at (y, x) points, edges replicated (float64)."""
    batch, _, _, channels = grid.shape
    out = np.empty((batch, points_yx.shape[1], channels))
    for b in range(batch):
        for c in range(channels):
            out[b, :, c] = ndimage.map_coordinates(
                grid[b, ..., c].astype(np.float64), points_yx[b].T.astype(np.float64),
                order=1, mode="nearest")
    return out


def tfa_formula(grid, points_yx):
    """Oracle: tfa 0.23's published algorithm in numpy float32 (lower neighbour clamped to
    [0, size - 2], weight clamped to [0, 1], `alpha * (b - a) + a` along x, then along y)."""
    batch, height, width, _ = grid.shape
    corners = []
    for axis, size in ((0, height), (1, width)):
        q = points_yx[..., axis]
        lower = np.minimum(np.maximum(np.floor(q), 0), size - 2).astype(np.float32)
        alpha = np.clip(q - lower, 0, 1).astype(np.float32)[..., None]
        corners.append((lower.astype(int), alpha))
    (y0, ay), (x0, ax) = corners
    b = np.arange(batch)[:, None]
    top = ax * (grid[b, y0, x0 + 1] - grid[b, y0, x0]) + grid[b, y0, x0]
    bottom = ax * (grid[b, y0 + 1, x0 + 1] - grid[b, y0 + 1, x0]) + grid[b, y0 + 1, x0]
    return ay * (bottom - top) + top


# A 2 x 3 grid with one channel: rows [0, 1, 4] and [10, 20, 40].
SMALL = np.array([[0.0, 1.0, 4.0], [10.0, 20.0, 40.0]], np.float32).reshape(1, 2, 3, 1)


class InterpolateBilinearTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        (1, 5, 7, 1, 30), (2, 9, 4, 3, 17), (3, 2, 2, 2, 10), (2, 1, 6, 1, 9), (1, 6, 1, 2, 8))
    def test_matches_scipy_in_range_and_beyond_edges(self, batch, height, width, channels, n):
        rng = np.random.default_rng(height * 10 + width)
        grid = rng.normal(size=(batch, height, width, channels)).astype(np.float32)
        # Points reach 3 px past every edge; tfa clamps the lower neighbour to [0, size - 2] and
        # the weight to [0, 1], i.e. the edge value, as scipy's mode="nearest".
        points = np.stack([rng.uniform(-3, height + 2, size=(batch, n)),
                           rng.uniform(-3, width + 2, size=(batch, n))], -1).astype(np.float32)
        expected = scipy_bilinear(grid, points)
        self.assertAllClose(interpolate_bilinear(grid, points), expected, atol=1e-5, rtol=0)
        self.assertAllClose(interpolate_bilinear(grid, points[..., ::-1], indexing="xy"),
                            expected, atol=1e-5, rtol=0)

    def test_float32_arithmetic_is_tfas_bit_for_bit_before_the_last_row_and_column(self):
        rng = np.random.default_rng(9)
        grid = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
        points = np.stack([rng.uniform(-2, 6, size=(2, 200)), rng.uniform(-2, 8, size=(2, 200))],
                          axis=-1).astype(np.float32)
        np.testing.assert_array_equal(interpolate_bilinear(grid, points).numpy(),
                                      tfa_formula(grid, points))
        # On and past the last row or column tfa's weight is 1 and a + (b - a) may round;
        # here the edge value is exact.
        edge = np.array([[[6.0, 2.5], [3.5, 8.0], [9.0, 11.0]]] * 2, np.float32)
        self.assertAllClose(interpolate_bilinear(grid, edge), tfa_formula(grid, edge),
                            atol=1e-6, rtol=0)

    @parameterized.named_parameters(
        # (y, x) -> value, computed by hand on SMALL.
        ("pixel", (1.0, 2.0), 40.0),
        ("between_columns", (0.0, 1.25), 1.0 + 0.25 * 3.0),
        ("between_rows", (0.5, 1.0), (1.0 + 20.0) / 2),
        ("centre_of_four", (0.5, 0.5), (0.0 + 1.0 + 10.0 + 20.0) / 4),
        ("left_of_the_grid", (1.0, -2.0), 10.0),
        ("below_the_grid", (7.0, 1.5), 30.0),
        ("beyond_a_corner", (-1.0, 9.0), 4.0),
    )
    def test_hand_computed_values_in_both_indexings(self, point_yx, expected):
        ij = np.array([[point_yx]], np.float32)
        self.assertAllClose(interpolate_bilinear(SMALL, ij)[0, 0, 0], expected, atol=1e-6)
        xy = ij[..., ::-1]
        self.assertAllClose(interpolate_bilinear(SMALL, xy, indexing="xy")[0, 0, 0], expected,
                            atol=1e-6)

    def test_whole_pixels_and_constant_grids_are_exact(self):
        rng = np.random.default_rng(1)
        grid = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
        ys, xs = np.meshgrid(np.arange(5.0), np.arange(6.0), indexing="ij")
        pixels = np.broadcast_to(np.stack([ys.ravel(), xs.ravel()], -1), (2, 30, 2))
        np.testing.assert_array_equal(
            interpolate_bilinear(grid, pixels.astype(np.float32)).numpy(), grid.reshape(2, 30, 3))
        constant = np.full((2, 5, 6, 3), 0.7, np.float32)
        points = rng.uniform(-2, 8, size=(2, 100, 2)).astype(np.float32)
        np.testing.assert_array_equal(interpolate_bilinear(constant, points).numpy(),
                                      np.full((2, 100, 3), 0.7, np.float32))

    @parameterized.parameters("ij", "xy")
    def test_gradients_match_finite_differences(self, indexing):
        rng = np.random.default_rng(2)
        grid = tf.constant(rng.normal(size=(2, 4, 5, 2)))
        # Fractional positions inside the grid, away from the kinks at whole pixels.
        points = tf.constant(rng.integers(0, 3, size=(2, 6, 2)) + rng.uniform(0.1, 0.9, (2, 6, 2)))
        for which in (0, 1):
            def f(x, which=which):
                args = [grid, points]
                args[which] = x
                return interpolate_bilinear(*args, indexing=indexing)
            theoretical, numerical = tf.test.compute_gradient(
                f, [[grid, points][which]], delta=1e-6)
            self.assertAllClose(theoretical, numerical, atol=1e-6)

    def test_gradient_at_whole_pixels_is_the_difference_to_the_neighbour(self):
        # The next pixel's value minus this one's (0 on the last row or column, where the value
        # stays at the edge's beyond). tfa's clamp gave 0 inside the grid, so a flow learned from
        # zero could not start moving.
        points = tf.constant([[[0.0, 1.0], [1.0, 0.0]]])
        with tf.GradientTape() as tape:
            tape.watch(points)
            values = interpolate_bilinear(SMALL, points)
        self.assertAllClose(tape.gradient(values, points), [[[19.0, 3.0], [0.0, 10.0]]])

    def test_dtypes(self):
        rng = np.random.default_rng(3)
        grid = rng.integers(0, 255, size=(1, 4, 4, 3))
        points = rng.uniform(0, 3, size=(1, 5, 2))
        expected = scipy_bilinear(grid, points)
        for grid_dtype, points_dtype, out_dtype, atol in (
                (np.uint8, np.float32, tf.float32, 1e-4), (np.float16, np.float32, tf.float16, 0.2),
                (np.float32, np.float64, tf.float32, 1e-4), (np.float64, np.float32, tf.float64,
                                                            1e-4)):
            got = interpolate_bilinear(grid.astype(grid_dtype), points.astype(points_dtype))
            self.assertEqual(got.dtype, out_dtype)
            self.assertAllClose(tf.cast(got, tf.float64), expected, atol=atol, rtol=0)

    @parameterized.named_parameters(
        ("indexing", np.zeros([1, 3, 3, 1]), np.zeros([1, 2, 2]), {"indexing": "yx"}, "indexing"),
        ("grid_rank", np.zeros([3, 3, 1]), np.zeros([1, 2, 2]), {}, "grid"),
        ("points_rank", np.zeros([1, 3, 3, 1]), np.zeros([2, 2]), {}, "query_points"),
        ("points_last_axis", np.zeros([1, 3, 3, 1]), np.zeros([1, 2, 3]), {}, "query_points"),
        ("batch", np.zeros([2, 3, 3, 1]), np.zeros([3, 2, 2]), {}, "same batch size"),
        ("int_points", np.zeros([1, 3, 3, 1]), np.zeros([1, 2, 2], np.int32), {}, "query_points"),
    )
    def test_bad_input_names_the_argument(self, grid, points, kwargs, word):
        with self.assertRaisesRegex(ValueError, word):
            interpolate_bilinear(grid, points, **kwargs)

    def test_nan_points_give_nan_values_in_eager_graph_and_xla(self):
        points = np.array([[[0.5, np.nan], [1.0, 1.5], [np.nan, np.nan]]], np.float32)
        expected = interpolate_bilinear(SMALL, points[:, 1:2])[0, 0].numpy()
        for op in (interpolate_bilinear, tf.function(interpolate_bilinear.python_function),
                   tf.function(interpolate_bilinear.python_function, jit_compile=True)):
            got = op(SMALL, points).numpy()
            self.assertTrue(np.all(np.isnan(got[0, [0, 2]])))
            np.testing.assert_array_equal(got[0, 1], expected)

    @parameterized.parameters(((2, 4, 3, 6), 1), ((1, 5, 4, 2), 3))
    def test_batch_of_one_broadcasts_as_tfa(self, grid_shape, query_batch):
        rng = np.random.default_rng(11)
        grid = rng.normal(size=grid_shape).astype(np.float32)
        points = rng.uniform(-1, 5, size=(query_batch, 4, 2)).astype(np.float32)
        got = interpolate_bilinear(grid, points).numpy()
        batch = max(grid_shape[0], query_batch)
        self.assertEqual(got.shape, (batch, 4, grid_shape[3]))
        for b in range(batch):
            g, p = grid[min(b, grid_shape[0] - 1)], points[min(b, query_batch - 1)]
            for c in range(grid_shape[3]):
                self.assertAllClose(got[b, :, c], ndimage.map_coordinates(
                    g[..., c].astype(np.float64), p.T, order=1, mode="nearest"), atol=1e-5)


if __name__ == "__main__":
    tf.test.main()
