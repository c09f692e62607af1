"""Tests of the fan-in truncated normal and Gaussian smooth init: scipy oracle, norms, configs."""

import json
import os

from absl.testing import parameterized
import keras
import numpy as np
from scipy import ndimage
import tensorflow as tf

from deform_tf import initializers
from deform_tf import smoothness


def _scipy_smooth_filter(filter_2d, sigma):
    """Zero-padded 2-D convolution with a truncated Gaussian that covers every filter offset."""
    kh, kw = filter_2d.shape
    radius = max(int(np.ceil(4 * sigma)), kh - 1, kw - 1)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    gaussian = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma ** 2))
    return ndimage.convolve(filter_2d, gaussian, mode="constant", cval=0.0)


def _filter_norms(kernel):
    kernel = np.asarray(kernel, np.float64)
    return np.sqrt(np.sum(np.square(kernel), axis=(0, 1)))


class FanInTruncatedNormalTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(((3, 3, 64, 256), 576), ((5, 5, 8, 512), 200), ((300, 400), 300))
    def test_std_and_bounds(self, shape, fan_in):
        values = initializers.FanInTruncatedNormal(seed=1)(shape).numpy().astype(np.float64)
        self.assertEqual(values.shape, shape)
        self.assertLess(np.max(np.abs(values)), 2.0 / np.sqrt(fan_in))
        self.assertGreater(np.max(np.abs(values)), 1.95 / np.sqrt(fan_in))
        # >= 100k values: the std's relative standard error is ~0.2%.
        self.assertAllClose(values.std() * np.sqrt(fan_in),
                            initializers.TRUNCATED_NORMAL_STD_FACTOR, rtol=0.01)
        self.assertAllClose(initializers.TRUNCATED_NORMAL_STD_FACTOR, 0.88, atol=0.001)
        self.assertLess(abs(values.mean()) * np.sqrt(fan_in), 0.01)

    def test_init_smoothness_is_that_of_a_truncated_normal(self):
        # 3 x 3 x 128 x 256 filters; E TV / E sum|W| = 1.8566 (see smoothness_test), standard
        # error ~0.003.
        kernel = initializers.FanInTruncatedNormal(seed=2)((3, 3, 128, 256))
        self.assertAllClose(smoothness.filter_smoothness(kernel), 1.8566, atol=0.012)

    def test_seeds_and_dtypes(self):
        seeded = initializers.FanInTruncatedNormal(seed=3)
        self.assertAllEqual(seeded((3, 3, 2, 4)), seeded((3, 3, 2, 4)))
        self.assertAllEqual(seeded((3, 3, 2, 4)),
                            initializers.FanInTruncatedNormal(seed=3)((3, 3, 2, 4)))
        self.assertNotAllClose(seeded((3, 3, 2, 4)),
                               initializers.FanInTruncatedNormal(seed=4)((3, 3, 2, 4)))
        unseeded = initializers.FanInTruncatedNormal()
        self.assertNotAllClose(unseeded((3, 3, 2, 4)), unseeded((3, 3, 2, 4)))
        self.assertEqual(seeded((3, 3, 2, 4)).dtype, tf.float32)
        self.assertEqual(seeded((3, 3, 2, 4), dtype="float64").dtype, tf.float64)

    @parameterized.parameters(1.5, "a", True)
    def test_bad_seed(self, seed):
        with self.assertRaisesRegex(ValueError, "`seed`"):
            initializers.FanInTruncatedNormal(seed=seed)

    def test_config_round_trip(self):
        init = initializers.FanInTruncatedNormal(seed=5)
        config = json.loads(json.dumps(keras.initializers.serialize(init)))
        restored = keras.initializers.deserialize(config)
        self.assertIsInstance(restored, initializers.FanInTruncatedNormal)
        self.assertAllEqual(restored((3, 3, 1, 2)), init((3, 3, 1, 2)))


class GaussianSmoothKernelTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        (3, 3, 0.5), (3, 3, 1.0), (3, 3, 2.0), (5, 5, 0.7), (2, 4, 1.0), (1, 3, 0.6), (7, 6, 1.5))
    def test_matrix_matches_scipy_convolution(self, kh, kw, sigma):
        rng = np.random.default_rng(kh * 10 + kw)
        kernel = rng.normal(size=[kh, kw, 2, 3])
        matrix = initializers.gaussian_smoothing_matrix(kh, kw, sigma)
        self.assertEqual(matrix.shape, (kh * kw, kh * kw))
        self.assertAllClose(matrix, matrix.T)
        got = initializers.gaussian_smooth_kernel(kernel, sigma)
        for i in range(2):
            for o in range(3):
                expected = _scipy_smooth_filter(kernel[:, :, i, o], sigma)
                self.assertAllClose((matrix @ kernel[:, :, i, o].ravel()).reshape(kh, kw),
                                    expected, atol=1e-12)
                expected *= np.linalg.norm(kernel[:, :, i, o]) / np.linalg.norm(expected)
                self.assertAllClose(got[:, :, i, o], expected, atol=1e-12)

    @parameterized.parameters(((3, 3, 16, 16), 0), ((5, 5, 8, 8), 1), ((3, 3, 64, 32), 2))
    def test_smoothness_falls_with_sigma_and_norms_are_kept(self, shape, seed):
        kernel = initializers.FanInTruncatedNormal(seed=seed)(shape).numpy()
        values = []
        for sigma in (0.0, 0.5, 1.0, 2.0):
            smoothed = initializers.gaussian_smooth_kernel(kernel, sigma)
            self.assertAllClose(_filter_norms(smoothed), _filter_norms(kernel), rtol=1e-5)
            values.append(smoothness.filter_smoothness(smoothed))
        self.assertAllClose(values[0], smoothness.filter_smoothness(kernel))
        self.assertTrue(all(a > b for a, b in zip(values, values[1:])), values)

    def test_sigma_zero_is_exact_identity(self):
        kernel = np.random.default_rng(3).normal(size=[3, 3, 4, 5]).astype(np.float32)
        got = initializers.gaussian_smooth_kernel(kernel, 0.0)
        self.assertIsInstance(got, np.ndarray)
        self.assertIsNot(got, kernel)
        self.assertEqual(got.dtype, np.float32)
        self.assertAllEqual(got, kernel)
        tensor = tf.constant(kernel)
        self.assertAllEqual(initializers.gaussian_smooth_kernel(tensor, 0), kernel)

    @parameterized.parameters(np.float32, np.float64)
    def test_numpy_and_tensor_agree_and_keep_dtype(self, dtype):
        kernel = np.random.default_rng(4).normal(size=[3, 5, 3, 2]).astype(dtype)
        from_numpy = initializers.gaussian_smooth_kernel(kernel, 1.0)
        self.assertIsInstance(from_numpy, np.ndarray)
        self.assertEqual(from_numpy.dtype, dtype)
        for value in (tf.constant(kernel), tf.Variable(kernel), keras.Variable(kernel)):
            from_tf = initializers.gaussian_smooth_kernel(value, 1.0)
            self.assertIsInstance(from_tf, tf.Tensor)
            self.assertEqual(from_tf.dtype, tf.as_dtype(dtype))
            self.assertAllClose(from_tf, from_numpy, rtol=1e-6, atol=1e-7)

    def test_works_in_tf_function(self):
        kernel = np.random.default_rng(5).normal(size=[3, 3, 2, 2]).astype(np.float32)
        smooth = tf.function(lambda k: initializers.gaussian_smooth_kernel(k, 1.0))
        self.assertAllClose(smooth(kernel), initializers.gaussian_smooth_kernel(kernel, 1.0))

    def test_zero_filters_stay_zero_and_1x1_is_unchanged(self):
        kernel = np.zeros([3, 3, 1, 2])
        kernel[:, :, 0, 1] = 1.0
        got = initializers.gaussian_smooth_kernel(kernel, 1.0)
        self.assertAllEqual(got[:, :, 0, 0], np.zeros([3, 3]))
        self.assertAllClose(np.linalg.norm(got[:, :, 0, 1]), 3.0)
        one_by_one = np.random.default_rng(6).normal(size=[1, 1, 3, 3])
        self.assertAllClose(initializers.gaussian_smooth_kernel(one_by_one, 2.0), one_by_one)

    @parameterized.named_parameters(
        ("negative_sigma", np.ones([3, 3, 1, 1]), -0.5, "`sigma`"),
        ("nan_sigma", np.ones([3, 3, 1, 1]), float("nan"), "`sigma`"),
        ("text_sigma", np.ones([3, 3, 1, 1]), "wide", "`sigma`"),
        ("rank3", np.ones([3, 3, 2]), 1.0, "`kernel` must have rank 4"),
        ("int", np.ones([3, 3, 1, 1], np.int32), 1.0, "`kernel` must be a float"),
        ("rank3_tensor", tf.ones([3, 3, 2]), 1.0, "`kernel` must have rank 4"),
        ("int_tensor", tf.ones([3, 3, 1, 1], tf.int32), 1.0, "`kernel` must be a float"),
    )
    def test_bad_arguments(self, kernel, sigma, message):
        with self.assertRaisesRegex(ValueError, message):
            initializers.gaussian_smooth_kernel(kernel, sigma)


def _small_model(kernel_initializer="glorot_uniform"):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, kernel_initializer=kernel_initializer, name="conv_a")(inputs)
    x = keras.layers.Conv2D(8, 1, name="conv_1x1")(x)
    x = keras.layers.Conv2D(8, 3, kernel_initializer=kernel_initializer, name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))


class SmoothedInitializerTest(parameterized.TestCase, tf.test.TestCase):

    def test_equals_smoothed_base_draw(self):
        init = initializers.SmoothedInitializer(1.0, seed=7)
        base = initializers.FanInTruncatedNormal(seed=7)
        self.assertAllClose(init((3, 3, 4, 6)),
                            initializers.gaussian_smooth_kernel(base((3, 3, 4, 6)), 1.0))
        self.assertAllEqual(init((20, 6)), base((20, 6)))  # dense kernels: unchanged
        self.assertAllEqual(initializers.SmoothedInitializer(0.0, seed=7)((3, 3, 4, 6)),
                            base((3, 3, 4, 6)))

    @parameterized.parameters(
        (None, 8), (keras.initializers.RandomNormal(stddev=0.2, seed=9), None),
        ("he_normal", None))
    def test_config_round_trip(self, base, seed):
        init = initializers.SmoothedInitializer(0.5, base=base, seed=seed)
        config = json.loads(json.dumps(keras.initializers.serialize(init)))
        restored = keras.initializers.deserialize(config)
        self.assertIsInstance(restored, initializers.SmoothedInitializer)
        self.assertEqual(restored.sigma, 0.5)
        self.assertEqual(type(restored.base), type(init.base))
        self.assertEqual(restored.get_config(), init.get_config())
        if base != "he_normal":  # unseeded bases draw anew
            self.assertAllEqual(restored((3, 3, 2, 2)), init((3, 3, 2, 2)))

    def test_base_and_seed_together(self):
        with self.assertRaisesRegex(ValueError, "either `base` or `seed`"):
            initializers.SmoothedInitializer(1.0, base="he_normal", seed=1)

    def test_bad_sigma(self):
        with self.assertRaisesRegex(ValueError, "`sigma`"):
            initializers.SmoothedInitializer(-1.0)

    def test_inside_conv2d_and_saved_model(self):
        model = _small_model(initializers.SmoothedInitializer(2.0, seed=10))
        rows = smoothness.model_smoothness(model)
        self.assertEqual([row["layer"] for row in rows], ["conv_a", "conv_b"])
        for row in rows:
            self.assertLess(row["smoothness"], 1.0)
        layer = model.get_layer("conv_a")
        restored = keras.layers.Conv2D.from_config(layer.get_config())
        self.assertIsInstance(restored.kernel_initializer, initializers.SmoothedInitializer)
        self.assertEqual(restored.kernel_initializer.sigma, 2.0)
        path = os.path.join(self.get_temp_dir(), "smooth.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        self.assertAllEqual(loaded.get_layer("conv_b").kernel, model.get_layer("conv_b").kernel)
        self.assertIsInstance(loaded.get_layer("conv_b").kernel_initializer,
                              initializers.SmoothedInitializer)


class SmoothModelKernelsTest(tf.test.TestCase):

    def test_smooths_spatial_convs_in_place(self):
        keras.utils.set_random_seed(11)
        model = _small_model()
        before = {w.path: w.numpy() for w in model.weights}
        names = initializers.smooth_model_kernels(model, 1.0)
        self.assertEqual(names, ["conv_a", "conv_b"])
        for weight in model.weights:
            if weight.path in ("conv_a/kernel", "conv_b/kernel"):
                self.assertAllClose(
                    weight, initializers.gaussian_smooth_kernel(before[weight.path], 1.0))
                self.assertLess(smoothness.filter_smoothness(weight),
                                smoothness.filter_smoothness(before[weight.path]))
            else:  # 1x1 conv, dense layer, biases
                self.assertAllEqual(weight, before[weight.path])

    def test_sigma_zero_is_a_no_op(self):
        model = _small_model()
        before = [w.numpy() for w in model.weights]
        self.assertEqual(initializers.smooth_model_kernels(model, 0.0), [])
        for weight, value in zip(model.weights, before):
            self.assertAllEqual(weight, value)

    def test_bad_sigma(self):
        with self.assertRaisesRegex(ValueError, "`sigma`"):
            initializers.smooth_model_kernels(_small_model(), -2.0)


if __name__ == "__main__":
    tf.test.main()
