"""Tests of the XLA-only bilinear resampling against the plain-ops version and finite differences."""

from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from deform_tf import bilinear_xla
from deform_tf import dense_warp


@tf.function(jit_compile=True)
def _xla_resample(image, query_y, query_x):
    return bilinear_xla.resample_bilinear(image, query_y, query_x)


@tf.function(jit_compile=True)
def _xla_plain_resample(image, query_y, query_x):
    return dense_warp.resample_bilinear(image, query_y, query_x)


def _queries(rng, shape, height, width):
    """Positions past every edge, fractional and whole-pixel ones."""
    query_y = rng.uniform(-3, height + 2, size=shape)
    query_x = rng.uniform(-3, width + 2, size=shape)
    whole = rng.uniform(size=shape) < 0.3
    query_y[whole] = np.round(query_y[whole])
    query_x[whole] = np.round(query_x[whole])
    return query_y.astype(np.float32), query_x.astype(np.float32)


class BilinearXlaTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        (2, 7, 11, 1), (3, 16, 5, 3), (1, 2, 2, 4), (2, 9, 6, 5), (1, 32, 32, 3))
    def test_equals_plain_ops(self, batch, height, width, channels):
        rng = np.random.default_rng(height * 7 + channels)
        image = rng.normal(size=(batch, height, width, channels)).astype(np.float32)
        query_y, query_x = _queries(rng, (batch, height, width), height, width)
        got = _xla_resample(image, query_y, query_x).numpy()
        # Bit for bit the plain ops compiled by XLA; eager kernels round differently (XLA
        # contracts multiply-adds), by float32 rounding.
        np.testing.assert_array_equal(got, _xla_plain_resample(image, query_y, query_x).numpy())
        self.assertAllClose(got, dense_warp.resample_bilinear(image, query_y, query_x),
                            atol=1e-6, rtol=0)

    def test_queries_of_any_rank(self):
        rng = np.random.default_rng(1)
        image = rng.normal(size=(2, 6, 8, 3)).astype(np.float32)
        query_y, query_x = _queries(rng, (2, 17), 6, 8)
        got = _xla_resample(image, query_y, query_x)
        self.assertEqual(got.shape, (2, 17, 3))
        np.testing.assert_array_equal(
            got.numpy(), _xla_plain_resample(image, query_y, query_x).numpy())

    def test_whole_pixels_are_exact_including_the_last_ones(self):
        image = np.arange(2 * 5 * 4 * 3, dtype=np.float32).reshape(2, 5, 4, 3)
        ys, xs = np.meshgrid(np.arange(5.0), np.arange(4.0), indexing="ij")
        query_y = np.broadcast_to(ys[::-1], (2, 5, 4)).astype(np.float32)
        query_x = np.broadcast_to(xs[:, ::-1], (2, 5, 4)).astype(np.float32)
        got = _xla_resample(image, query_y, query_x).numpy()
        np.testing.assert_array_equal(got, image[:, ::-1, ::-1])

    @parameterized.parameters(tf.float32, tf.float64)
    def test_pixel_index_in_int32_beyond_the_exact_float_range(self, dtype):
        # Images larger than EXACT_INDEX_LIMIT pixels form the index in int32; the limit is
        # lowered here so that a small image takes that path. Same values either way.
        rng = np.random.default_rng(3)
        image = rng.normal(size=(2, 9, 10, 3))
        query_y, query_x = _queries(rng, (2, 9, 10), 9, 10)
        args = [tf.constant(a, dtype) for a in (image, query_y, query_x)]
        expected = _xla_plain_resample(*args).numpy()
        small = {tf.float32: 50, tf.float64: 50}
        with mock.patch.object(bilinear_xla, "EXACT_INDEX_LIMIT", small):
            got = tf.function(bilinear_xla.resample_bilinear, jit_compile=True)(*args).numpy()
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(_xla_resample(*args).numpy(), expected)

    def test_unknown_channels_fall_back_to_the_same_values(self):
        rng = np.random.default_rng(2)
        image = rng.normal(size=(2, 6, 7, 2)).astype(np.float32)
        query_y, query_x = _queries(rng, (2, 6, 7), 6, 7)
        resample = tf.function(
            bilinear_xla.resample_bilinear, jit_compile=True,
            input_signature=[tf.TensorSpec([None, 6, 7, None], tf.float32),
                             tf.TensorSpec([None, 6, 7], tf.float32),
                             tf.TensorSpec([None, 6, 7], tf.float32)])
        np.testing.assert_array_equal(
            resample(image, query_y, query_x).numpy(),
            _xla_plain_resample(image, query_y, query_x).numpy())

    def test_gradients_equal_plain_ops_and_finite_differences(self):
        rng = np.random.default_rng(3)
        image = tf.constant(rng.uniform(size=(2, 5, 6, 3)))
        # Fractional positions away from the kinks at whole pixels and at the clamped edges.
        query_y = tf.constant(rng.uniform(0.1, 3.9, size=(2, 5, 6)) // 1 + 0.3)
        query_x = tf.constant(rng.uniform(0.1, 4.9, size=(2, 5, 6)) // 1 + 0.6)
        weights = tf.constant(rng.normal(size=(2, 5, 6, 3)))

        def loss(resample, *args):
            return tf.reduce_sum(weights * resample(*args))

        args = [image, query_y, query_x]
        grads = {}
        for name, resample in (("xla", _xla_resample), ("plain", dense_warp.resample_bilinear)):
            with tf.GradientTape() as tape:
                tape.watch(args)
                value = loss(resample, *args)
            grads[name] = tape.gradient(value, args)
        for xla_grad, plain_grad in zip(grads["xla"], grads["plain"]):
            self.assertAllClose(xla_grad, plain_grad, atol=1e-12, rtol=0)
        for which in range(3):
            def f(x, which=which):
                call = list(args)
                call[which] = x
                return _xla_resample(*call)
            theoretical, numerical = tf.test.compute_gradient(f, [args[which]], delta=1e-4)
            self.assertAllClose(theoretical, numerical, atol=1e-6)


if __name__ == "__main__":
    tf.test.main()
