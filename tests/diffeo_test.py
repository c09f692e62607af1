"""Tests of the maximum-entropy diffeomorphisms: sine-series oracle, statistics, seeds, XLA."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import deform_tf
from deform_tf import diffeo


def numpy_flow(coefficients, height, width):
    """The sine-series flow with explicit loops over the modes (oracle for the einsum)."""
    coefficients = np.asarray(coefficients, np.float64)
    batch, _, cutoff, _ = coefficients.shape
    y = np.linspace(0.0, 1.0, height)[:, None]
    x = np.linspace(0.0, 1.0, width)[None, :]
    flow = np.zeros([batch, height, width, 2])
    for b in range(batch):
        for c, size in enumerate((height, width)):
            for i in range(1, cutoff + 1):
                for j in range(1, cutoff + 1):
                    flow[b, :, :, c] += (size * coefficients[b, c, i - 1, j - 1]
                                         * np.sin(i * np.pi * y) * np.sin(j * np.pi * x))
    return flow


def radii(cutoff):
    i, j = np.meshgrid(np.arange(1, cutoff + 1), np.arange(1, cutoff + 1), indexing="ij")
    return np.sqrt(i ** 2 + j ** 2)


class MaxEntropyFlowTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters((16, 16, 3, 1e-3), (12, 20, 5, 2e-3), (9, 7, 1, 1e-2),
                              (33, 24, 8, 5e-4))
    def test_flow_equals_the_sine_series(self, height, width, cutoff, temperature):
        seed = [height, width]
        coefficients = diffeo.max_entropy_coefficients(3, cutoff, temperature, seed, tf.float64)
        self.assertEqual(coefficients.shape, (3, 2, cutoff, cutoff))
        expected = numpy_flow(coefficients, height, width)
        for dtype, atol in ((tf.float64, 1e-12), (tf.float32, 1e-5)):
            flow = deform_tf.max_entropy_flow(3, height, width, temperature, cutoff, seed, dtype)
            self.assertEqual(flow.dtype, dtype)
            self.assertAllClose(flow, expected, atol=atol, rtol=0)
        self.assertGreater(np.abs(expected).max(), 0.05)

    def test_flow_is_exactly_zero_on_the_border_and_borders_are_kept(self):
        rng = np.random.default_rng(0)
        images = rng.uniform(size=(4, 15, 22, 3)).astype(np.float32)
        warped, flow = deform_tf.random_diffeo(images, 5e-3, 6, [1, 2], return_flow=True)
        flow, warped = flow.numpy(), warped.numpy()
        for border in (np.s_[:, 0], np.s_[:, -1], np.s_[:, :, 0], np.s_[:, :, -1]):
            np.testing.assert_array_equal(flow[border], 0.0)
            np.testing.assert_array_equal(warped[border], images[border])
        self.assertGreater(np.abs(flow).max(), 0.5)

    @parameterized.parameters(1, 2, 3, 7)
    def test_mode_mask(self, cutoff):
        coefficients = diffeo.max_entropy_coefficients(5, cutoff, 1.0, [3, 3]).numpy()
        inside = radii(cutoff) < cutoff + 0.5
        self.assertTrue(np.all(coefficients[..., ~inside] == 0.0))
        self.assertTrue(np.all(coefficients[..., inside] != 0.0))

    def test_coefficient_statistics(self):
        cutoff, temperature, n = 4, 0.3, 40000
        coefficients = diffeo.max_entropy_coefficients(
            n, cutoff, temperature, [5, 6], tf.float64).numpy()
        pooled = coefficients.transpose(1, 0, 2, 3).reshape(2 * n, cutoff, cutoff)
        inside = radii(cutoff) < cutoff + 0.5
        expected = np.where(inside, temperature / radii(cutoff) ** 2, 0.0)
        # Relative standard error of a variance from 2n normal samples: sqrt(2 / 2n) = 0.5%.
        self.assertAllClose(pooled.var(axis=0), expected, rtol=0.025, atol=0)
        self.assertAllClose(pooled.mean(axis=0), np.zeros_like(expected),
                            atol=4 * np.sqrt(expected.max() / (2 * n)))
        # Modes and components are uncorrelated.
        flat = coefficients.reshape(n, -1)[:, np.tile(inside.ravel(), 2)]
        correlation = np.corrcoef(flat, rowvar=False) - np.eye(flat.shape[1])
        self.assertLess(np.abs(correlation).max(), 4.5 / np.sqrt(n))

    def test_low_modes_do_not_depend_on_the_cutoff(self):
        seeds = [[7, 7], [7, 8], [1, 0]]
        small = diffeo.max_entropy_coefficients(3, 3, 1.0, seeds).numpy()
        large = diffeo.max_entropy_coefficients(3, 6, 1.0, seeds).numpy()
        inside = radii(3) < 3.5
        np.testing.assert_array_equal(small[..., inside], large[..., :3, :3][..., inside])
        # A shared seed is one stream over the batch: only its first example is nested.
        small = diffeo.max_entropy_coefficients(3, 3, 1.0, [7, 7]).numpy()
        large = diffeo.max_entropy_coefficients(3, 6, 1.0, [7, 7]).numpy()
        np.testing.assert_array_equal(small[0][..., inside], large[0, :, :3, :3][..., inside])

    @parameterized.parameters((16, 20, 4, 2e-3), (32, 32, 3, 1e-3))
    def test_exact_rms_matches_sampled_flows(self, height, width, cutoff, temperature):
        n = 3000
        flow = deform_tf.max_entropy_flow(
            n, height, width, temperature, cutoff, [9, height], tf.float64).numpy()
        per_draw = np.mean(np.sum(flow ** 2, axis=-1), axis=(1, 2))
        expected = deform_tf.exact_rms_displacement(height, width, temperature, cutoff) ** 2
        error = per_draw.std() / np.sqrt(n)
        self.assertLess(error, 0.03 * expected)
        self.assertLess(abs(per_draw.mean() - expected), 4 * error)

    def test_exact_rms_closed_form_for_one_mode(self):
        # Cutoff 1: only mode (1, 1), variance T / 2; the mean of sin^2(pi k / (n - 1)) over
        # k = 0..n-1 is (n - 1) / (2n).
        height, width, temperature = 17, 10, 0.02
        expected = ((height ** 2 + width ** 2) * temperature / 2
                    * (height - 1) / (2 * height) * (width - 1) / (2 * width))
        self.assertAllClose(deform_tf.exact_rms_displacement(height, width, temperature, 1) ** 2,
                            expected, rtol=1e-12)
        temperatures = np.array([0.0, 1e-3, 4e-3])
        rms = deform_tf.exact_rms_displacement(height, width, temperatures, 3)
        self.assertAllClose(rms[2], 2 * rms[1], rtol=1e-12)
        self.assertEqual(rms[0], 0.0)

    def test_temperature_zero_is_exact_identity(self):
        images = np.random.default_rng(1).normal(size=(3, 16, 16, 2)).astype(np.float32)
        for seed in ([0, 0], [5, 9]):
            got, flow = deform_tf.random_diffeo(images, 0.0, 5, seed, return_flow=True)
            np.testing.assert_array_equal(got.numpy(), images)
            np.testing.assert_array_equal(np.abs(flow.numpy()), 0.0)

    def test_same_seed_same_output_different_seed_differs(self):
        images = np.random.default_rng(2).uniform(size=(3, 32, 32, 3)).astype(np.float32)
        a = deform_tf.random_diffeo(images, 1e-3, 3, [1, 2])
        b = deform_tf.random_diffeo(images, 1e-3, 3, [1, 2])
        c = deform_tf.random_diffeo(images, 1e-3, 3, [1, 3])
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        self.assertGreater(np.abs(a.numpy() - c.numpy()).mean(), 1e-3)
        same = np.repeat(images[:1], 2, axis=0)
        d = deform_tf.random_diffeo(same, 1e-3, 3, [1, 2]).numpy()
        self.assertGreater(np.abs(d[0] - d[1]).mean(), 1e-3)

    def test_per_example_seeds_do_not_depend_on_the_batch(self):
        images = np.random.default_rng(3).uniform(size=(4, 16, 16, 1)).astype(np.float32)
        seeds = np.array([[1, 10], [1, 11], [2, 10], [3, 3]], np.int32)
        whole = deform_tf.random_diffeo(images, 2e-3, 4, seeds).numpy()
        whole_c = diffeo.max_entropy_coefficients(4, 4, 2e-3, seeds).numpy()
        for i in range(4):
            alone = deform_tf.random_diffeo(images[i:i + 1], 2e-3, 4, seeds[i:i + 1])
            alone_c = diffeo.max_entropy_coefficients(1, 4, 2e-3, seeds[i:i + 1])
            np.testing.assert_array_equal(alone_c.numpy()[0], whole_c[i])
            # The einsum may sum in another order for another batch size: not bitwise.
            self.assertAllClose(alone.numpy()[0], whole[i], atol=1e-6, rtol=0)

    @parameterized.parameters(
        (np.float16, np.float16), (np.float32, np.float32), (np.float64, np.float64),
        (np.uint8, np.float32))
    def test_dtypes(self, image_dtype, expected_dtype):
        images = np.random.default_rng(4).integers(0, 255, size=(2, 16, 16, 3)).astype(image_dtype)
        got, flow = deform_tf.random_diffeo(images, 2e-3, 3, [4, 4], return_flow=True)
        self.assertEqual(got.dtype, expected_dtype)
        self.assertEqual(flow.dtype, tf.float64 if image_dtype == np.float64 else tf.float32)
        expected = deform_tf.dense_image_warp(images.astype(np.float64), tf.cast(flow, tf.float64))
        tolerance = 0.5 if image_dtype == np.float16 else 1e-3
        self.assertAllClose(got.numpy().astype(np.float64), expected, atol=tolerance)

    def test_xla_and_graph_match_eager_with_unknown_batch(self):
        images = np.random.default_rng(6).uniform(size=(4, 24, 32, 3)).astype(np.float32)
        seed = tf.constant([3, 4])
        eager, eager_flow = deform_tf.random_diffeo(images, 2e-3, 5, seed, return_flow=True)
        eager_c = diffeo.max_entropy_coefficients(4, 5, 2e-3, seed)
        for jit in (False, True):
            fn = tf.function(
                lambda x, s: deform_tf.random_diffeo(x, 2e-3, 5, s, return_flow=True),
                input_signature=[tf.TensorSpec([None, 24, 32, 3]), tf.TensorSpec([2], tf.int32)],
                jit_compile=jit)
            warped, flow = fn(images, seed)
            self.assertAllClose(flow, eager_flow, atol=1e-6, rtol=0)
            self.assertAllClose(warped, eager, atol=1e-5, rtol=0)
            coefficients = tf.function(lambda s: diffeo.max_entropy_coefficients(4, 5, 2e-3, s),
                                       jit_compile=jit)(seed)
            np.testing.assert_array_equal(coefficients.numpy(), eager_c.numpy())

    def test_in_tf_data_with_per_example_seeds(self):
        images = np.random.default_rng(7).uniform(size=(6, 16, 16, 1)).astype(np.float32)
        dataset = tf.data.Dataset.from_tensor_slices(images).enumerate()
        dataset = dataset.map(lambda i, x: deform_tf.random_diffeo(
            x[None], 2e-3, 4, tf.stack([tf.constant(9, tf.int64), i])[None])[0])
        per_example = np.stack(list(dataset.as_numpy_iterator()))
        seeds = np.stack([np.full(6, 9), np.arange(6)], axis=1)
        batched = deform_tf.random_diffeo(images, 2e-3, 4, seeds)
        self.assertAllClose(per_example, batched, atol=1e-6)

    def test_temperature_as_tensor(self):
        images = np.random.default_rng(8).uniform(size=(2, 16, 16, 1)).astype(np.float32)
        got = deform_tf.random_diffeo(images, tf.constant(2e-3), 3, [1, 1])
        self.assertAllClose(got, deform_tf.random_diffeo(images, 2e-3, 3, [1, 1]))
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "temperature"):
            deform_tf.random_diffeo(images, tf.constant(-1.0), 3, [1, 1])
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "temperature"):
            deform_tf.random_diffeo(images, tf.constant(np.inf), 3, [1, 1])

    @parameterized.named_parameters(
        ("negative_temperature", dict(temperature=-1e-3), "temperature"),
        ("nan_temperature", dict(temperature=float("nan")), "temperature"),
        ("inf_temperature", dict(temperature=float("inf")), "temperature"),
        ("cutoff_zero", dict(cutoff=0), "cutoff"),
        ("cutoff_float", dict(cutoff=2.5), "cutoff"),
        ("cutoff_string", dict(cutoff="3"), "cutoff"),
        ("seed_shape", dict(seed=[1, 2, 3]), "seed"),
        ("seed_float", dict(seed=[1.0, 2.0]), "seed"),
        ("image_rank", dict(images=np.zeros([16, 16, 1], np.float32)), "images"),
        ("image_too_small", dict(images=np.zeros([1, 1, 16, 1], np.float32)), "height"),
    )
    def test_bad_input(self, overrides, word):
        args = dict(images=np.zeros([1, 16, 16, 1], np.float32), temperature=1e-3, cutoff=3,
                    seed=[1, 2])
        args.update(overrides)
        with self.assertRaisesRegex(ValueError, word):
            deform_tf.random_diffeo(**args)

    def test_unknown_image_size(self):
        fn = tf.function(lambda x: deform_tf.random_diffeo(x, 1e-3, 3, [1, 2]),
                         input_signature=[tf.TensorSpec([None, None, None, 1])])
        with self.assertRaisesRegex(ValueError, "height and width"):
            fn.get_concrete_function()


class DisplacementScaleTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters((32, 3), (224, 10), (28, 5))
    def test_typical_displacement_round_trip_and_range(self, size, cutoff):
        for delta in (0.0, 0.5, 1.0, 3.7):
            temperature = deform_tf.temperature_for_displacement(delta, cutoff, size)
            self.assertAllClose(deform_tf.typical_displacement(temperature, cutoff, size), delta)
        t1, t2 = deform_tf.temperature_range(size, cutoff)
        self.assertAllClose(deform_tf.typical_displacement(t1, cutoff, size), 0.5)
        self.assertAllClose(deform_tf.typical_displacement(t2, cutoff, size),
                            size / (np.pi * cutoff))
        self.assertAllClose(t1, 1 / (np.pi * size ** 2 * np.log(cutoff)))
        deltas = np.array([0.5, 2.0])
        self.assertAllClose(deform_tf.typical_displacement(
            deform_tf.temperature_for_displacement(deltas, cutoff, size), cutoff, size), deltas)

    def test_typical_displacement_approximates_the_exact_rms(self):
        # Petrini's formula is the continuum, large-cutoff limit; on a pixel grid and at
        # moderate cutoffs the exact RMS displacement is 10-20% below it.
        for cutoff in (3, 10, 30):
            ratio = (deform_tf.exact_rms_displacement(64, 64, 1e-3, cutoff)
                     / deform_tf.typical_displacement(1e-3, cutoff, 64))
            self.assertBetween(ratio, 0.8, 1.0)

    def test_tps_rms_matches_sampled_tps_flows(self):
        n = 3000
        images = np.zeros([n, 32, 32, 1], np.float32)
        _, flow = deform_tf.random_tps_deformation(images, 3, 2.0, [4, 2], return_flow=True)
        per_draw = np.mean(np.sum(flow.numpy().astype(np.float64) ** 2, axis=-1), axis=(1, 2))
        expected = deform_tf.tps_rms_displacement(32, 32, 3, 2.0) ** 2
        error = per_draw.std() / np.sqrt(n)
        self.assertLess(error, 0.03 * expected)
        self.assertLess(abs(per_draw.mean() - expected), 4 * error)

    def test_tps_rms_where_every_pixel_is_a_grid_point(self):
        # 2x2 image, 2x2 grid: the flow is -offset at every pixel, E|flow|^2 = 2 C^2 / 3.
        self.assertAllClose(deform_tf.tps_rms_displacement(2, 2, 2, 3.0), 3.0 * np.sqrt(2 / 3))

    @parameterized.parameters((32, 32, 3, 2.0, 3), (24, 40, 4, 1.5, 6), (224, 224, 5, 10.0, 3))
    def test_temperature_matching_tps(self, height, width, grid_size, strength, cutoff):
        temperature = deform_tf.temperature_matching_tps(height, width, grid_size, strength,
                                                         cutoff)
        self.assertAllClose(
            deform_tf.exact_rms_displacement(height, width, temperature, cutoff),
            deform_tf.tps_rms_displacement(height, width, grid_size, strength), rtol=1e-12)

    def test_cifar_numbers(self):
        # The paper's CIFAR-10 setting (32 px, 3x3 grid, C = 2) and Petrini's cutoff 3.
        self.assertAllClose(deform_tf.tps_rms_displacement(32, 32, 3, 2.0), 1.2497, atol=1e-4)
        self.assertAllClose(deform_tf.temperature_matching_tps(32, 32, 3, 2.0, 3), 2.6532e-3,
                            rtol=1e-4)

    @parameterized.named_parameters(
        ("negative_temperature", lambda: deform_tf.typical_displacement(-1.0, 3, 32),
         "temperature"),
        ("nan_temperature", lambda: deform_tf.exact_rms_displacement(8, 8, np.nan, 3),
         "temperature"),
        ("negative_delta", lambda: deform_tf.temperature_for_displacement(-1.0, 3, 32), "delta"),
        ("cutoff_one_inverse", lambda: deform_tf.temperature_for_displacement(1.0, 1, 32),
         "cutoff"),
        ("cutoff_one_range", lambda: deform_tf.temperature_range(32, 1), "cutoff"),
        ("cutoff_float", lambda: deform_tf.exact_rms_displacement(8, 8, 1.0, 3.0), "cutoff"),
        ("size_one", lambda: deform_tf.typical_displacement(1.0, 3, 1), "size"),
        ("height_one", lambda: deform_tf.exact_rms_displacement(1, 8, 1.0, 3), "height"),
        ("width_one", lambda: deform_tf.max_entropy_flow(1, 8, 1, 1.0, 3, [1, 2]), "width"),
        ("dtype", lambda: deform_tf.max_entropy_flow(1, 8, 8, 1.0, 3, [1, 2], tf.int32),
         "dtype"),
        ("negative_strength", lambda: deform_tf.tps_rms_displacement(8, 8, 3, -1.0),
         "strength"),
        ("bad_grid", lambda: deform_tf.tps_rms_displacement(8, 8, 1, 1.0), "grid_size"),
    )
    def test_bad_arguments(self, call, word):
        with self.assertRaisesRegex(ValueError, word):
            call()


if __name__ == "__main__":
    tf.test.main()
