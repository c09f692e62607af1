"""Tests of the normalized filter smoothness: hand-computed kernels, random-init values, models."""

import json
import os

from absl.testing import parameterized
import keras
import numpy as np
from scipy import integrate
from scipy import stats
import tensorflow as tf

from deform_tf import smoothness
from tests.kernels_test import tiny_model

# TV / sum|W| of i.i.d. Gaussian 3x3 filters: 12 neighbour pairs * E|X - Y| = 12 * 2 / sqrt(pi)
# over 9 * E|X| = 9 * sqrt(2 / pi).
IID_GAUSSIAN_3X3 = 24.0 / (9.0 * np.sqrt(2.0))


def _as_filter(rows):
    """A 2-D list as a [kh, kw, 1, 1] float64 kernel."""
    array = np.asarray(rows, np.float64)
    return array[:, :, None, None]


def _ratio_and_standard_error(kernel):
    """sum TV / sum|W| and its delta-method standard error over the i.i.d. filters."""
    kernel = np.asarray(kernel, np.float64)
    tv = (np.abs(np.diff(kernel, axis=0)).sum(axis=(0, 1))
          + np.abs(np.diff(kernel, axis=1)).sum(axis=(0, 1))).ravel()
    mass = np.abs(kernel).sum(axis=(0, 1)).ravel()
    ratio = tv.sum() / mass.sum()
    residual = tv - ratio * mass
    return ratio, residual.std(ddof=1) / np.sqrt(len(mass)) / mass.mean()


def _truncated_normal_3x3_expectation():
    """E TV / E sum|W| for 3x3 filters of a standard normal truncated at +-2 (by quadrature).

    For i.i.d. X, Y with CDF F: E|X - Y| = 2 * integral of F (1 - F); E|X| in closed form.
    """
    law = stats.truncnorm(-2.0, 2.0)
    mass = stats.norm.cdf(2.0) - stats.norm.cdf(-2.0)
    mean_abs = 2.0 * (stats.norm.pdf(0.0) - stats.norm.pdf(2.0)) / mass
    mean_abs_difference, _ = integrate.quad(
        lambda t: 2.0 * law.cdf(t) * law.sf(t), -2.0, 2.0, epsabs=1e-12)
    return 12.0 * mean_abs_difference / (9.0 * mean_abs)


class FilterSmoothnessTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.named_parameters(
        # TV = |3-1| + |4-2| + |2-1| + |4-3| = 6; sum|W| = 10.
        ("2x2", [[1, 2], [3, 4]], 0.6),
        # Sobel: vertical |row1-row0| + |row2-row1| = 2 + 2; horizontal 2 + 4 + 2; sum|W| = 8.
        ("sobel_3x3", [[1, 0, -1], [2, 0, -2], [1, 0, -1]], 12.0 / 8.0),
        # vertical: 6 differences of 3; horizontal: 6 differences of 1; sum|W| = 45.
        ("ramp_3x3", [[1, 2, 3], [4, 5, 6], [7, 8, 9]], 24.0 / 45.0),
        # Only horizontal neighbours: |-1-1| + |1+1| = 4; sum|W| = 3.
        ("1x3", [[1, -1, 1]], 4.0 / 3.0),
        # Only vertical neighbours: |0-2| + |-2-0| = 4; sum|W| = 4.
        ("3x1", [[2], [0], [-2]], 1.0),
        ("constant", [[0.3, 0.3, 0.3], [0.3, 0.3, 0.3], [0.3, 0.3, 0.3]], 0.0),
    )
    def test_hand_computed(self, rows, expected):
        kernel = _as_filter(rows)
        got = smoothness.filter_smoothness(kernel)
        self.assertIsInstance(got, float)
        self.assertAllClose(got, expected, rtol=1e-12)
        self.assertAllClose(smoothness.per_filter_smoothness(kernel), [[expected]], rtol=1e-12)

    def test_whole_kernel_is_ratio_of_sums(self):
        kernel = np.zeros([2, 2, 1, 2])
        kernel[:, :, 0, 0] = [[1, 2], [3, 4]]  # TV 6, sum|W| 10.
        kernel[:, :, 0, 1] = [[0, 1], [0, 0]]  # TV |0-1| + |1-0| = 2, sum|W| 1.
        self.assertAllClose(smoothness.filter_smoothness(kernel), 8.0 / 11.0, rtol=1e-12)
        self.assertAllClose(smoothness.per_filter_smoothness(kernel), [[0.6, 2.0]], rtol=1e-12)

    def test_channels_are_not_neighbours(self):
        # Spatially constant filters whose values differ across c_in and c_out.
        kernel = np.ones([3, 3, 4, 5]) * np.arange(1, 21).reshape(1, 1, 4, 5)
        self.assertEqual(smoothness.filter_smoothness(kernel), 0.0)
        self.assertAllEqual(smoothness.per_filter_smoothness(kernel), np.zeros([4, 5]))

    def test_scale_invariant(self):
        kernel = np.random.default_rng(0).normal(size=[3, 3, 4, 4])
        base = smoothness.filter_smoothness(kernel)
        for scale in (1e-6, -3.0, 1e4):
            self.assertAllClose(smoothness.filter_smoothness(scale * kernel), base, rtol=1e-12)

    def test_accepts_tensors_variables_lists_and_float32(self):
        kernel = np.random.default_rng(1).normal(size=[3, 3, 2, 3])
        expected = smoothness.filter_smoothness(kernel)
        for value in (tf.constant(kernel, tf.float32), keras.Variable(kernel.astype(np.float32)),
                      tf.Variable(kernel), kernel.astype(np.float32), kernel.tolist()):
            self.assertAllClose(smoothness.filter_smoothness(value), expected, rtol=1e-6)
        self.assertEqual(smoothness.filter_smoothness([[[[1]], [[2]]], [[[3]], [[4]]]]), 0.6)

    def test_per_filter_zero_filter_is_nan(self):
        kernel = np.zeros([2, 2, 1, 2])
        kernel[:, :, 0, 1] = [[1, 2], [3, 4]]
        got = smoothness.per_filter_smoothness(kernel)
        self.assertEqual(got.shape, (1, 2))
        self.assertTrue(np.isnan(got[0, 0]))
        self.assertAllClose(got[0, 1], 0.6)

    def test_iid_gaussian_3x3(self):
        kernel = np.random.default_rng(2).normal(size=[3, 3, 64, 64])
        _, standard_error = _ratio_and_standard_error(kernel)
        got = smoothness.filter_smoothness(kernel)
        self.assertLess(abs(got - IID_GAUSSIAN_3X3), 4 * standard_error)
        self.assertLess(standard_error, 0.01)

    def test_keras_truncated_normal_3x3(self):
        # 3 x 3 x 128 x 256: 32768 filters, a standard error of ~0.003, small enough to tell the
        # truncated normal (1.8566) from the untruncated one (1.8856).
        expected = _truncated_normal_3x3_expectation()
        self.assertAllClose(expected, 1.857, atol=5e-4)  # docs/method.md#smoothness.
        kernel = keras.initializers.TruncatedNormal(stddev=0.05, seed=3)((3, 3, 128, 256))
        self.assertAllClose(np.max(np.abs(kernel)), 0.1, atol=1e-3)  # cut at 2 std
        _, standard_error = _ratio_and_standard_error(kernel)
        got = smoothness.filter_smoothness(kernel)
        self.assertLess(abs(got - expected), 4 * standard_error)
        self.assertLess(got, IID_GAUSSIAN_3X3 - 4 * standard_error)

    @parameterized.named_parameters(
        ("1x1", np.ones([1, 1, 3, 3]), r"kh \* kw > 1"),
        ("zeros", np.zeros([3, 3, 2, 2]), "`kernel` is all zeros"),
        ("rank3", np.ones([3, 3, 2]), "`kernel` must have rank 4"),
        ("rank2", np.ones([3, 3]), "`kernel` must have rank 4"),
        ("nan", np.full([3, 3, 1, 1], np.nan), "`kernel` must be finite"),
        ("strings", np.array([[[["a"]]]]), "`kernel` must hold real numbers"),
    )
    def test_bad_kernel(self, kernel, message):
        for function in (smoothness.filter_smoothness, smoothness.per_filter_smoothness):
            with self.assertRaisesRegex(ValueError, message):
                function(kernel)


class ModelSmoothnessTest(parameterized.TestCase, tf.test.TestCase):

    def test_rows_in_order_and_json_serializable(self):
        keras.utils.set_random_seed(4)
        model = tiny_model()
        rows = smoothness.model_smoothness(model)
        self.assertEqual([row["layer"] for row in rows], ["conv_a", "conv_b"])
        self.assertEqual([row["index"] for row in rows], [1, 2])
        self.assertEqual([row["shape"] for row in rows], [[3, 3, 2, 4], [3, 3, 5, 3]])
        for row in rows:
            kernel = model.get_layer(row["layer"]).kernel
            self.assertEqual(row["smoothness"], smoothness.filter_smoothness(kernel))
        self.assertEqual(json.loads(json.dumps(rows)), rows)
        self.assertAllClose(smoothness.mean_smoothness(rows),
                            (rows[0]["smoothness"] + rows[1]["smoothness"]) / 2)

    def test_accepts_keras_file_and_checkpoint_directory(self):
        from deform_tf import model_io, models  # pylint: disable=g-import-not-at-top
        kwargs = dict(config="cifar10", downsampling="max_pool", width=0.125, seed=2)
        model = models.vgg(**kwargs)
        expected = smoothness.model_smoothness(model)
        self.assertEqual([r["layer"] for r in expected],
                         [f"block{i}_conv{j}" for i in range(1, 5) for j in (1, 2)])
        path = os.path.join(self.get_temp_dir(), "vgg.keras")
        model.save(path)
        self.assertEqual(smoothness.model_smoothness(path), expected)
        directory = os.path.join(self.get_temp_dir(), "run")
        model_io.save_model_config(directory, **kwargs)
        tf.train.Checkpoint(model=model).save(os.path.join(directory, "ckpt"))
        self.assertEqual(smoothness.model_smoothness(directory), expected)

    def test_unbuilt_model(self):
        model = keras.Sequential([keras.layers.Conv2D(2, 3)])
        with self.assertRaisesRegex(ValueError, "not built"):
            smoothness.model_smoothness(model)

    def test_model_without_spatial_convs(self):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        self.assertEqual(smoothness.model_smoothness(model), [])
        with self.assertRaisesRegex(ValueError, "`rows` is empty"):
            smoothness.mean_smoothness([])

    def test_zero_kernel_in_model(self):
        model = tiny_model()
        model.get_layer("conv_b").kernel.assign(np.zeros([3, 3, 5, 3]))
        with self.assertRaisesRegex(ValueError, "all zeros"):
            smoothness.model_smoothness(model)


if __name__ == "__main__":
    tf.test.main()
