"""Tests of `dense_image_warp` against scipy's bilinear `map_coordinates` and closed forms."""

from absl.testing import parameterized
import numpy as np
from scipy import ndimage
import tensorflow as tf

from deform_tf import dense_warp
from deform_tf import dense_image_warp
from tests.oracles import scipy_dense_warp


class DenseImageWarpTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        (1, 8, 8, 1), (2, 7, 11, 3), (3, 16, 5, 5), (1, 2, 2, 3), (2, 1, 6, 1))
    def test_matches_scipy_map_coordinates(self, batch, height, width, channels):
        rng = np.random.default_rng(height * 100 + width)
        image = rng.uniform(size=(batch, height, width, channels)).astype(np.float32)
        # Flows reach past every edge, so the clamping is exercised too.
        flow = rng.uniform(-4, 4, size=(batch, height, width, 2)).astype(np.float32)
        got = dense_image_warp(image, flow).numpy()
        self.assertAllClose(got, scipy_dense_warp(image, flow), atol=1e-5, rtol=0)

    def test_zero_flow_is_exact_identity(self):
        image = np.random.default_rng(0).normal(size=(2, 9, 13, 3)).astype(np.float32)
        got = dense_image_warp(image, np.zeros([2, 9, 13, 2], np.float32)).numpy()
        np.testing.assert_array_equal(got, image)

    @parameterized.parameters((2.0, -3.0), (-1.0, 0.0), (0.0, 5.0), (12.0, 12.0))
    def test_whole_pixel_flow_is_exact_shift(self, dy, dx):
        image = np.random.default_rng(1).normal(size=(1, 10, 12, 2)).astype(np.float32)
        flow = np.broadcast_to(np.array([dy, dx], np.float32), (1, 10, 12, 2))
        got = dense_image_warp(image, flow).numpy()
        ys = np.clip(np.arange(10) - int(dy), 0, 9)
        xs = np.clip(np.arange(12) - int(dx), 0, 11)
        np.testing.assert_array_equal(got, image[:, ys][:, :, xs])

    def test_flow_sign_convention(self):
        # A bright pixel at (2, 3) and a flow of (+1, +2) moves it to (3, 5) (tfa's convention).
        image = np.zeros([1, 8, 8, 1], np.float32)
        image[0, 2, 3, 0] = 1.0
        flow = np.broadcast_to(np.array([1.0, 2.0], np.float32), (1, 8, 8, 2))
        got = dense_image_warp(image, flow).numpy()[0, ..., 0]
        self.assertEqual(got[3, 5], 1.0)
        self.assertEqual(got.sum(), 1.0)

    @parameterized.parameters(
        (np.float16, np.float16), (np.float32, np.float32), (np.float64, np.float64),
        (np.uint8, np.float32))
    def test_dtypes(self, image_dtype, expected_dtype):
        rng = np.random.default_rng(2)
        image = rng.integers(0, 255, size=(2, 6, 7, 3)).astype(image_dtype)
        flow = rng.uniform(-2, 2, size=(2, 6, 7, 2)).astype(np.float32)
        got = dense_image_warp(image, flow)
        self.assertEqual(got.dtype, expected_dtype)
        tolerance = 0.5 if image_dtype == np.float16 else 1e-3
        self.assertAllClose(
            got.numpy().astype(np.float64), scipy_dense_warp(image, flow), atol=tolerance, rtol=0)

    @parameterized.parameters(False, True)
    def test_gradients_match_finite_differences(self, jit_compile):
        rng = np.random.default_rng(3)
        image = tf.constant(rng.uniform(size=(1, 5, 6, 2)))
        # Fractional flows away from the kinks at integer positions.
        flow = tf.constant(rng.uniform(-1.4, 1.4, size=(1, 5, 6, 2)) * 0.9 + 0.05)
        warp = tf.function(dense_image_warp, jit_compile=True) if jit_compile else dense_image_warp
        for which in (0, 1):
            def f(x, which=which):
                args = [image, flow]
                args[which] = x
                return warp(*args)
            theoretical, numerical = tf.test.compute_gradient(f, [[image, flow][which]], delta=1e-4)
            self.assertAllClose(theoretical, numerical, atol=1e-6)

    def test_unknown_shapes_in_tf_function_and_tf_data(self):
        spec = tf.TensorSpec([None, None, None, 3], tf.float32)
        flow_spec = tf.TensorSpec([None, None, None, 2], tf.float32)
        warp = tf.function(dense_image_warp, input_signature=[spec, flow_spec])
        rng = np.random.default_rng(4)
        for shape in ((1, 5, 7), (3, 9, 4)):
            image = rng.uniform(size=shape + (3,)).astype(np.float32)
            flow = rng.uniform(-2, 2, size=shape + (2,)).astype(np.float32)
            self.assertAllClose(warp(image, flow), scipy_dense_warp(image, flow), atol=1e-5)
        images = [rng.uniform(size=(6 + i, 4 + 2 * i, 3)).astype(np.float32) for i in range(3)]
        dataset = tf.data.Dataset.from_generator(
            lambda: iter(images), output_signature=tf.TensorSpec([None, None, 3], tf.float32))
        dataset = dataset.map(
            lambda x: dense_image_warp(x[None], tf.ones_like(x[None, ..., :2]) * 0.5)[0])
        for got, image in zip(dataset, images):
            flow = np.full(image.shape[:2] + (2,), 0.5, np.float32)
            self.assertAllClose(got, scipy_dense_warp(image[None], flow[None])[0], atol=1e-5)

    def test_xla_matches_eager_to_float_rounding(self):
        rng = np.random.default_rng(5)
        image = rng.uniform(size=(2, 12, 10, 3)).astype(np.float32)
        flow = rng.uniform(-3, 3, size=(2, 12, 10, 2)).astype(np.float32)
        flow[0, :4] = np.round(flow[0, :4])  # whole pixels stay exact under XLA too
        compiled = tf.function(dense_image_warp, jit_compile=True)
        got, eager = compiled(image, flow).numpy(), dense_image_warp(image, flow).numpy()
        # XLA contracts a + t * (b - a) into a fused multiply-add: one rounding less.
        self.assertAllClose(got, eager, atol=2.5e-7, rtol=0)
        np.testing.assert_array_equal(got[0, :4], eager[0, :4])

    @parameterized.parameters(False, True)
    def test_constant_image_is_exact_for_any_flow(self, jit_compile):
        rng = np.random.default_rng(7)
        warp = tf.function(dense_image_warp, jit_compile=jit_compile)
        for value in (1.0, 0.1, -3.7e5):
            image = np.full((2, 9, 12, 3), value, np.float32)
            flow = rng.uniform(-15, 15, size=(2, 9, 12, 2)).astype(np.float32)
            np.testing.assert_array_equal(warp(image, flow).numpy(), image)

    @parameterized.parameters((1, 1, 1, 1), (2, 1, 5, 3), (1, 4, 1, 2), (2, 3, 2, 1))
    def test_zero_flow_is_identity_with_one_pixel_axes(self, batch, height, width, channels):
        image = np.random.default_rng(8).normal(size=(batch, height, width, channels))
        image = image.astype(np.float32)
        flow = np.zeros([batch, height, width, 2], np.float32)
        np.testing.assert_array_equal(dense_image_warp(image, flow).numpy(), image)
        moved = dense_image_warp(image, flow + [0.0, 0.5]).numpy()
        if width == 1:  # nothing to interpolate along a 1-pixel axis
            np.testing.assert_array_equal(moved, image)

    @parameterized.named_parameters(
        ("image_rank", np.zeros([4, 4, 3]), np.zeros([1, 4, 4, 2]), "image"),
        ("flow_rank", np.zeros([1, 4, 4, 3]), np.zeros([4, 4, 2]), "flow"),
        ("flow_last_axis", np.zeros([1, 4, 4, 3]), np.zeros([1, 4, 4, 3]), "flow"),
        ("size_mismatch", np.zeros([1, 4, 4, 3]), np.zeros([1, 5, 4, 2]), "height"),
        ("int_flow", np.zeros([1, 4, 4, 3]), np.zeros([1, 4, 4, 2], np.int32), "flow"),
    )
    def test_bad_input_names_the_argument(self, image, flow, word):
        with self.assertRaisesRegex(ValueError, word):
            dense_image_warp(image, flow)

    def test_run_time_size_mismatch_is_clear(self):
        spec = tf.TensorSpec([None, None, None, 1], tf.float32)
        fspec = tf.TensorSpec([None, None, None, 2], tf.float32)
        warp = tf.function(dense_image_warp, input_signature=[spec, fspec])
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "same batch, height"):
            warp(np.zeros([1, 4, 4, 1], np.float32), np.zeros([1, 5, 4, 2], np.float32))

    def test_resample_bilinear_takes_queries_of_any_rank(self):
        rng = np.random.default_rng(6)
        image = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
        query_y = rng.uniform(-2, 7, size=(2, 30)).astype(np.float32)
        query_x = rng.uniform(-2, 7, size=(2, 30)).astype(np.float32)
        got = dense_warp.resample_bilinear(image, query_y, query_x)
        expected = dense_warp.resample_bilinear(image, query_y.reshape(2, 5, 6),
                                                query_x.reshape(2, 5, 6))
        np.testing.assert_array_equal(got.numpy(), tf.reshape(expected, [2, 30, 3]).numpy())

    def test_non_finite_flow_keeps_the_input_pixel_in_eager_graph_and_xla(self):
        rng = np.random.default_rng(7)
        image = rng.uniform(size=(2, 5, 6, 3)).astype(np.float32)
        flow = rng.uniform(-2, 2, size=(2, 5, 6, 2)).astype(np.float32)
        flow[0, 1, 2, 0] = np.nan
        flow[1, 3, 4, 1] = np.inf
        flow[1, 0, 0] = -np.inf
        bad = ~np.all(np.isfinite(flow), axis=-1)
        expected = scipy_dense_warp(image, np.where(bad[..., None], 0.0, flow))
        eager = dense_image_warp(image, flow)
        graph = tf.function(dense_image_warp.python_function)(image, flow)
        xla = tf.function(dense_image_warp.python_function, jit_compile=True)(image, flow)
        self.assertAllClose(eager, expected, atol=1e-5, rtol=0)
        np.testing.assert_array_equal(eager.numpy()[bad], image[bad])
        np.testing.assert_array_equal(graph.numpy(), eager.numpy())
        self.assertAllClose(xla, eager, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(xla.numpy()[bad], image[bad])

    def test_known_shapes_build_no_assert(self):
        # XLA drops asserts (and logs "Ignoring Assert operator"); the warp has none to drop.
        spec = [tf.TensorSpec([2, 5, 6, 3]), tf.TensorSpec([2, 5, 6, 2])]
        graph = tf.function(dense_image_warp.python_function).get_concrete_function(*spec).graph
        self.assertEmpty([op.type for op in graph.get_operations()
                          if op.type in ("Assert", "CheckNumerics")])

    @parameterized.named_parameters(
        ("constant", "constant", "grid-constant"), ("reflect", "reflect", "reflect"),
        ("nearest", "nearest", "nearest"))
    def test_fill_modes_match_scipy(self, fill_mode, scipy_mode):
        rng = np.random.default_rng(8)
        image = rng.uniform(size=(2, 6, 7, 2)).astype(np.float32)
        flow = rng.uniform(-9, 9, size=(2, 6, 7, 2)).astype(np.float32)
        got = dense_image_warp(image, flow, fill_mode=fill_mode, fill_value=0.25).numpy()
        self.assertAllClose(got, _map_coordinates(image, flow, 1, scipy_mode, 0.25),
                            atol=1e-5, rtol=0)

    @parameterized.parameters("constant", "reflect")
    def test_fill_modes_keep_zero_flow_exact(self, fill_mode):
        image = np.random.default_rng(9).normal(size=(1, 4, 5, 3)).astype(np.float32)
        got = dense_image_warp(image, np.zeros([1, 4, 5, 2], np.float32), fill_mode=fill_mode,
                               fill_value=7.0)
        np.testing.assert_array_equal(got.numpy(), image)

    @parameterized.named_parameters(
        ("constant", "constant", "grid-constant"), ("reflect", "reflect", "reflect"),
        ("nearest", "nearest", "nearest"))
    def test_nearest_resampling_matches_scipy_order_0(self, fill_mode, scipy_mode):
        rng = np.random.default_rng(10)
        labels = rng.integers(0, 5, size=(2, 6, 7, 1)).astype(np.int32)
        # Away from half-pixel ties, where rounding conventions may differ.
        flow = (rng.integers(-9, 9, size=(2, 6, 7, 2)) + rng.uniform(-0.4, 0.4, size=(2, 6, 7, 2))
                ).astype(np.float32)
        grid_y, grid_x = dense_warp.pixel_grid(6, 7, tf.float32)
        got = dense_warp.resample_nearest(labels, grid_y - flow[..., 0], grid_x - flow[..., 1],
                                          fill_mode, 3)
        self.assertEqual(got.dtype, tf.int32)
        np.testing.assert_array_equal(got.numpy(), _map_coordinates(labels, flow, 0, scipy_mode, 3))

    @parameterized.parameters(("wrap", 0.0), ("constant", float("nan")))
    def test_bad_fill_arguments(self, fill_mode, fill_value):
        with self.assertRaisesRegex(ValueError, "fill_"):
            dense_image_warp(np.zeros([1, 3, 3, 1]), np.zeros([1, 3, 3, 2]), fill_mode=fill_mode,
                             fill_value=fill_value)


def _map_coordinates(image, flow, order, mode, cval):
    """Oracle: scipy's `map_coordinates` at (y, x) - flow, one channel at a time."""
    grid = np.stack(np.meshgrid(np.arange(image.shape[1]), np.arange(image.shape[2]),
                                indexing="ij"))
    return np.stack([
        np.stack([ndimage.map_coordinates(example[..., c].astype(np.float64),
                                          grid - np.moveaxis(example_flow, -1, 0), order=order,
                                          mode=mode, cval=cval)
                  for c in range(image.shape[3])], axis=-1)
        for example, example_flow in zip(image, flow)])


if __name__ == "__main__":
    tf.test.main()
