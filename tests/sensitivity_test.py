"""Tests of deformation sensitivity and relative stability against numpy brute force."""

import gc
import itertools
import json
import os
import warnings
import weakref

from absl.testing import parameterized
import keras
import numpy as np
import scipy.stats
import tensorflow as tf

import deform_tf
from deform_tf import models
from deform_tf import pairwise
from deform_tf import sensitivity


def _brute_distance(a, b, distance):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if distance == "cosine":
        return 1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return np.linalg.norm(a - b)


def _tiny_model(downsampling="max_pool", seed=0):
    return models.vgg("cifar10", downsampling, width=0.0625, input_shape=(16, 16, 3), seed=seed)


def _images(n=10, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, 16, 16, 3)).astype(np.float32)


def _deform(images):
    return deform_tf.random_tps_deformation(images, 3, 1.5, [1, 2])


class DeformationSensitivityTest(parameterized.TestCase, tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = _tiny_model()
        cls.runner = sensitivity.RepresentationRunner(cls.model)

    @parameterized.parameters("cosine", "euclidean")
    def test_matches_numpy_brute_force(self, distance):
        images = _images()
        result = sensitivity.deformation_sensitivity(
            self.model, images, _deform, distance=distance, runner=self.runner)
        rep_model, names = models.representation_model(self.model)
        clean = [r.numpy() for r in rep_model(images, training=False)]
        moved = [r.numpy() for r in rep_model(_deform(images), training=False)]
        self.assertEqual(result["layers"], names)
        self.assertLen(result["sensitivity"], 13)
        for layer in range(13):
            numerator = np.mean([_brute_distance(clean[layer][i], moved[layer][i], distance)
                                 for i in range(len(images))])
            denominator = np.median([
                _brute_distance(clean[layer][i], clean[layer][j], distance)
                for i, j in itertools.combinations(range(len(images)), 2)])
            self.assertAllClose(result["numerator"][layer], numerator, rtol=1e-4, atol=1e-7)
            self.assertAllClose(result["denominator"][layer], denominator, rtol=1e-4)
            self.assertAllClose(result["sensitivity"][layer], numerator / denominator,
                                rtol=1e-3)

    @parameterized.parameters("cosine", "euclidean")
    def test_identity_deformation_gives_zero(self, distance):
        result = sensitivity.deformation_sensitivity(
            self.model, _images(), lambda x: x, distance=distance, runner=self.runner)
        # The input is exactly 0. Deeper layers are 0 up to float32 rounding: a convolution
        # over a batch need not round identical images in different batch slots identically.
        self.assertEqual(result["sensitivity"][0], 0.0)
        self.assertAllClose(result["sensitivity"], np.zeros(13), atol=1e-6)

    def test_strength_zero_tps_gives_zero(self):
        result = sensitivity.deformation_sensitivity(
            self.model, _images(), lambda x: deform_tf.random_tps_deformation(x, 3, 0.0, [0, 1]),
            runner=self.runner)
        self.assertEqual(result["sensitivity"][0], 0.0)
        self.assertAllClose(result["sensitivity"], np.zeros(13), atol=1e-6)

    @parameterized.parameters("cosine", "euclidean")
    def test_chunked_equals_unchunked(self, distance):
        images = _images(11)
        whole = sensitivity.deformation_sensitivity(
            self.model, images, _deform, distance=distance, runner=self.runner)
        for batch_size in (1, 4):
            chunked = sensitivity.deformation_sensitivity(
                self.model, images, _deform, distance=distance, batch_size=batch_size,
                runner=self.runner)
            self.assertAllClose(chunked["sensitivity"], whole["sensitivity"], rtol=1e-5)

    def test_cosine_is_invariant_to_scaling_each_representation(self):
        inputs = keras.Input([4, 4, 2])
        flat = keras.layers.Flatten()(inputs)
        # Each image's representation scaled by its own positive factor.
        scaled = keras.layers.Lambda(
            lambda v: v * (1.0 + 10.0 * tf.reduce_mean(v, axis=1, keepdims=True)))(flat)
        pair = (keras.Model(inputs, [flat, scaled]), ["flat", "scaled"])
        images = np.random.default_rng(1).uniform(size=(8, 4, 4, 2)).astype(np.float32)
        noise = lambda x: x + 0.05 * tf.sin(10.0 * x)
        cosine = sensitivity.deformation_sensitivity(pair, images, noise, "cosine")
        euclid = sensitivity.deformation_sensitivity(pair, images, noise, "euclidean")
        self.assertAllClose(cosine["sensitivity"][0], cosine["sensitivity"][1], rtol=1e-5)
        self.assertNotAllClose(euclid["sensitivity"][0], euclid["sensitivity"][1], rtol=1e-2)

    def test_accepts_a_saved_model_file_and_serializes_to_json(self):
        path = os.path.join(self.get_temp_dir(), "model.keras")
        self.model.save(path)
        images = _images(6)
        from_file = sensitivity.deformation_sensitivity(path, images, _deform)
        direct = sensitivity.deformation_sensitivity(self.model, images, _deform,
                                                     runner=self.runner)
        self.assertAllClose(from_file["sensitivity"], direct["sensitivity"], rtol=1e-5)
        self.assertEqual(json.loads(json.dumps(from_file))["layers"], from_file["layers"])

    @parameterized.named_parameters(
        ("one_image", _images(1), _deform, "cosine", "At least 2"),
        ("wrong_size", np.zeros([4, 8, 8, 3], np.float32), _deform, "cosine", "shape"),
        ("wrong_rank", np.zeros([4, 16, 16], np.float32), _deform, "cosine", "shape"),
        ("distance", _images(4), _deform, "manhattan", "distance"),
        ("deform_shape", _images(4), lambda x: x[:, :8], "cosine", "deform_fn"),
    )
    def test_bad_input(self, images, deform_fn, distance, word):
        with self.assertRaisesRegex(ValueError, word):
            sensitivity.deformation_sensitivity(self.model, images, deform_fn, distance,
                                                runner=self.runner)

    def test_model_without_declared_points_is_measured_at_its_default_points(self):
        inputs = keras.Input([16, 16, 3])
        model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="c")(inputs))
        result = sensitivity.deformation_sensitivity(model, _images(4), _deform)
        # A linear "valid" conv is neither a nonlinearity nor a downsampling: only the input
        # and the final output.
        self.assertEqual(result["layers"], ["input", "c"])


class GramTest(parameterized.TestCase, tf.test.TestCase):
    """The centred Gram matrices behind the pairwise medians."""

    @staticmethod
    def _clustered_rows(n=9, size=40, seed=0):
        # A large common component plus small differences: distances ~1e-5 of the norms, where
        # uncentred float32 products lose most digits.
        rng = np.random.default_rng(seed)
        return (5.0 + rng.uniform(size=size) + 1e-3 * rng.normal(size=(n, size))).astype(np.float32)

    @staticmethod
    def _brute_pairwise(rows, distance):
        rows = rows.reshape(len(rows), -1).astype(np.float64)
        return np.array([[_brute_distance(a, b, distance) for b in rows] for a in rows])

    @parameterized.parameters("cosine", "euclidean")
    def test_pairwise_distances_match_float64_on_clustered_rows(self, distance):
        rows = self._clustered_rows()
        expected = self._brute_pairwise(rows, distance)
        got = pairwise.pairwise_distances(rows, distance)
        upper = np.triu_indices(len(rows), k=1)
        self.assertAllClose(got[upper], expected[upper], rtol=1e-3)
        self.assertAllClose(pairwise.median_pairwise_distance(rows, distance),
                            np.median(expected[upper]), rtol=1e-3)

    @parameterized.parameters(("cosine", 10), ("euclidean", 10), ("cosine", 7))
    def test_gram_of_rows_centred_on_the_first_chunk_equals_gram_of_one_chunk(self, distance, n):
        rows = tf.constant(self._clustered_rows(n=n, size=24).reshape(n, 2, 3, 4))
        norms = tf.norm(tf.reshape(rows, [n, -1]), axis=1)
        norms64 = np.linalg.norm(rows.numpy().reshape(n, -1).astype(np.float64), axis=1)
        whole = pairwise.gram_matrix(pairwise.centred_unit_rows(rows, norms)[0])
        centre = pairwise.unit_centre(rows[:3], norms[:3])
        stored = tf.reshape(pairwise.unit_rows(rows, norms) - centre, [n, -1])
        halves = pairwise.gram_matrix_by_halves(stored).numpy()
        self.assertAllEqual(halves, halves.T)
        blas = sensitivity.RepresentationRunner.gram_of_rows(
            tf.Variable(tf.reshape(stored, [n, 2, 3, 4])))
        self.assertAllEqual(blas, blas.T)
        expected = self._brute_pairwise(rows.numpy(), distance)
        for gram in (whole.numpy(), halves, blas):
            got = pairwise.distances_from_gram(gram, distance, norms64)
            self.assertAllClose(got, expected, rtol=1e-3, atol=1e-12)

    def test_layer_measures_match_numpy(self):
        rng = np.random.default_rng(3)
        clean, moved, noisy = (rng.uniform(size=(6, 4, 4, 3)).astype(np.float32)
                               for _ in range(3))
        clean[1] = moved[1]  # a paired distance of exactly 0
        clean[2] = 0.0  # a zero row: cosine distance 0.5, as |a/|a| - b/|b||^2 / 2
        measures = tf.function(sensitivity.layer_measures)(
            clean, moved, noisy, False, pairwise.row_norms_one_pass, tf.constant(True),
            tf.zeros([4, 4, 3]))
        c, m, n = (x.reshape(6, -1).astype(np.float64) for x in (clean, moved, noisy))
        unit = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-30)
        centre = c.sum(axis=0) / np.linalg.norm(c, axis=1).sum()  # the first chunk's own
        self.assertAllClose(tf.reshape(measures.centre, [-1]), centre, rtol=1e-5)
        self.assertAllClose(tf.reshape(measures.centred_rows, [6, -1]), unit - centre,
                            atol=1e-6)
        self.assertAllClose(measures.norms, np.linalg.norm(c, axis=1), rtol=1e-6)
        self.assertAllClose(measures.moved_sq, np.sum((m - c) ** 2, axis=1), rtol=1e-5)
        self.assertAllClose(measures.noise_sq, np.sum((n - c) ** 2, axis=1), rtol=1e-5)
        rows = [0, 1, 3, 4, 5]
        self.assertAllClose(tf.gather(measures.paired_cosine, rows),
                            [_brute_distance(c[i], m[i], "cosine") for i in rows], rtol=1e-5)
        self.assertEqual(measures.paired_cosine[1], 0.0)
        self.assertEqual(measures.paired_cosine[2], 0.5)
        self.assertEqual(measures.paired_euclidean[1], 0.0)
        whole = tf.function(sensitivity.layer_measures)(moved, clean, None, True)
        self.assertAllClose(pairwise.distances_from_gram(whole.gram, "cosine"),
                            self._brute_pairwise(moved, "cosine"), atol=1e-6)


class MeasureDeformationTest(tf.test.TestCase, parameterized.TestCase):

    def test_chunked_equals_unchunked_for_every_measure(self):
        model = _tiny_model()
        runner = sensitivity.RepresentationRunner(model)
        images = _images(9)
        whole = sensitivity.measure_deformation(model, images, _deform, noise_seed=(1, 5),
                                                runner=runner)
        for batch_size in (2, 4, 9, 20):
            chunked = sensitivity.measure_deformation(model, images, _deform, noise_seed=(1, 5),
                                                      batch_size=batch_size, runner=runner)
            for key in ("sensitivity_cosine", "sensitivity_euclidean"):
                for field in ("sensitivity", "numerator", "denominator"):
                    self.assertAllClose(chunked[key][field], whole[key][field], rtol=1e-5)
            for field in ("relative_stability", "pair_mean"):
                self.assertAllClose(chunked["relative_stability"][field],
                                    whole["relative_stability"][field], rtol=1e-5)
        json.dumps(whole)

    def test_buffers_hold_every_images_unit_row_minus_the_first_chunks_centre(self):
        model = _tiny_model()
        runner = sensitivity.RepresentationRunner(model)
        images = _images(7)
        groups = [images, tf.reverse(images, [1])]
        buffers = runner.row_buffers(7)
        chunks = list(runner.measure_groups(groups, 3, False, buffers=buffers))
        self.assertLen(chunks, 3)  # 3 + 3 + 1 images
        clean = runner.rep_model(images)
        for l in (0, 1, 5, 12):
            rows = clean[l].numpy().reshape(7, -1).astype(np.float64)
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            centre = rows[:3].sum(axis=0) / norms[:3].sum()
            self.assertAllClose(buffers[l].numpy().reshape(7, -1), rows / norms - centre,
                                atol=1e-6)

    def test_chunked_measurements_keep_no_rows(self):
        model = _tiny_model()
        runner = sensitivity.RepresentationRunner(model)
        allocate, buffers = runner.row_buffers, []

        def recording_row_buffers(num_images):
            allocated = allocate(num_images)
            buffers.extend(weakref.ref(b) for b in allocated)
            return allocated

        runner.row_buffers = recording_row_buffers
        for _ in range(2):
            sensitivity.measure_deformation(model, _images(6), _deform, batch_size=4,
                                            runner=runner)
        gc.collect()
        self.assertLen(buffers, 2 * 13)
        self.assertEqual([b() for b in buffers], [None] * len(buffers))

    @parameterized.parameters(None, 4)
    def test_xla_forward_equals_graph_forward(self, batch_size):
        model = _tiny_model()
        images = _images(6)
        graph = sensitivity.measure_deformation(model, images, _deform)
        xla = sensitivity.measure_deformation(
            model, images, _deform, batch_size=batch_size,
            runner=sensitivity.RepresentationRunner(model, True))
        for key in ("sensitivity_cosine", "sensitivity_euclidean"):
            self.assertAllClose(xla[key]["sensitivity"], graph[key]["sensitivity"], rtol=1e-4)
        self.assertAllClose(xla["relative_stability"]["relative_stability"],
                            graph["relative_stability"]["relative_stability"], rtol=1e-4)

    def test_one_pass_equals_the_separate_measures(self):
        model = _tiny_model("strided")
        runner = sensitivity.RepresentationRunner(model)
        images = _images(7)
        together = sensitivity.measure_deformation(model, images, _deform, noise_seed=(2, 3),
                                                   batch_size=3, runner=runner)
        for distance in sensitivity.DISTANCES:
            alone = sensitivity.deformation_sensitivity(model, images, _deform, distance,
                                                        runner=runner)
            self.assertAllClose(together[f"sensitivity_{distance}"]["sensitivity"],
                                alone["sensitivity"], rtol=1e-5)
        alone = sensitivity.relative_stability(model, images, _deform, noise_seed=(2, 3),
                                               runner=runner)
        self.assertAllClose(together["relative_stability"]["relative_stability"],
                            alone["relative_stability"], rtol=1e-4)


class RelativeStabilityTest(parameterized.TestCase, tf.test.TestCase):

    def test_identity_map_matches_closed_form(self):
        inputs = keras.Input([16, 16, 3])
        pair = (keras.Model(inputs, [inputs, keras.layers.Rescaling(3.0)(inputs)]),
                ["input", "scaled"])
        images = _images(9)
        result = sensitivity.relative_stability(pair, images, _deform, noise_seed=(4, 2))
        x = images.reshape(9, -1).astype(np.float64)
        delta = _deform(images).numpy().reshape(9, -1) - x
        pairs = np.mean([np.sum((x[i] - x[j]) ** 2)
                         for i, j in itertools.combinations(range(9), 2)])
        expected_d = np.mean(np.sum(delta ** 2, axis=1)) / pairs
        for layer in range(2):
            self.assertAllClose(result["deformation_stability"][layer], expected_d, rtol=1e-4)
            # |eta_i| = |tau x_i - x_i|, so G = D and R = 1 for any linear isotropic map.
            self.assertAllClose(result["noise_stability"][layer], expected_d, rtol=1e-4)
            self.assertAllClose(result["relative_stability"][layer], 1.0, rtol=1e-4)
        self.assertAllClose(result["pair_mean"][1], 9.0 * pairs, rtol=1e-5)

    def test_noise_has_the_deformation_norm(self):
        images = tf.constant(_images(5))
        deformed = _deform(images)
        noise = sensitivity.matched_gaussian_noise(images, deformed, (1, 1))
        self.assertAllClose(tf.norm(tf.reshape(noise, [5, -1]), axis=1),
                            tf.norm(tf.reshape(deformed - images, [5, -1]), axis=1), rtol=1e-5)

    def test_vgg_chunked_equals_unchunked_and_is_one_at_the_input(self):
        model = _tiny_model("avg_pool")
        images = _images(8)
        runner = sensitivity.RepresentationRunner(model)
        whole = sensitivity.relative_stability(model, images, _deform, runner=runner)
        chunked = sensitivity.relative_stability(model, images, _deform, batch_size=3,
                                                 runner=runner)
        self.assertAllClose(whole["relative_stability"], chunked["relative_stability"],
                            rtol=1e-4)
        self.assertLen(whole["layers"], 13)
        self.assertAllClose(whole["relative_stability"][0], 1.0, rtol=1e-4)
        json.dumps(whole)


def _tanh_net():
    """input [8, 8, 2] -> flatten -> dense tanh (24) -> dense (6): small, non-linear, and easy
    to evaluate in float64 numpy (`_tanh_net_numpy`)."""
    keras.utils.set_random_seed(5)
    return keras.Sequential([
        keras.Input([8, 8, 2]), keras.layers.Flatten(name="flat"),
        keras.layers.Dense(24, activation="tanh", name="hidden",
                           kernel_initializer=keras.initializers.RandomNormal(stddev=0.3)),
        keras.layers.Dense(6, name="out")])


def _tanh_net_numpy(model, x):
    """[(hidden, out)] of the [n, 8, 8, 2] images, float64."""
    (w1, b1), (w2, b2) = [[np.float64(v) for v in layer.get_weights()]
                          for layer in model.layers[1:]]
    hidden = np.tanh(x.reshape(len(x), -1).astype(np.float64) @ w1 + b1)
    return hidden, hidden @ w2 + b2


class RelativeStabilityAgainstOwnNoiseTest(tf.test.TestCase):

    def test_d_f_exact_and_g_f_r_f_within_the_spread_of_independent_noise(self):
        model, n, draws = _tanh_net(), 128, 200
        rng = np.random.default_rng(7)
        images = rng.uniform(0.0, 1.0, (n, 8, 8, 2)).astype(np.float32)
        deform = lambda x: deform_tf.random_tps_deformation(x, 3, 1.0, [2, 3])
        result = sensitivity.relative_stability(model, images, deform, noise_seed=(8, 9),
                                                layers=["hidden", "out"])
        deformed = deform(images).numpy().astype(np.float64)
        x = images.astype(np.float64)
        clean, moved = _tanh_net_numpy(model, x), _tanh_net_numpy(model, deformed)
        norms = np.linalg.norm((deformed - x).reshape(n, -1), axis=1)
        # The oracle's own isotropic Gaussian noise of the same per-image norms, many draws.
        eta = rng.standard_normal((draws, n, 128))
        eta *= (norms / np.linalg.norm(eta, axis=-1))[..., None]
        noisy = _tanh_net_numpy(model, (x[None] + eta.reshape((draws,) + x.shape)).reshape(
            (draws * n,) + x.shape[1:]))
        upper = np.triu_indices(n, k=1)
        for layer in range(2):
            differences = clean[layer][:, None] - clean[layer][None]
            pair_mean = np.mean(np.sum(differences ** 2, axis=-1)[upper])
            d_f = np.mean(np.sum((moved[layer] - clean[layer]) ** 2, axis=1)) / pair_mean
            self.assertAllClose(result["deformation_stability"][layer], d_f, rtol=1e-4)
            g_draws = np.mean(np.sum((noisy[layer].reshape(draws, n, -1) - clean[layer]) ** 2,
                                     axis=-1), axis=1) / pair_mean
            mean, spread = np.mean(g_draws), np.std(g_draws)
            self.assertGreater(spread, 0)
            # One draw of the code under test lies within 4 standard deviations of one draw.
            self.assertLess(abs(result["noise_stability"][layer] - mean), 4 * spread)
            self.assertAllClose(result["relative_stability"][layer],
                                result["deformation_stability"][layer]
                                / result["noise_stability"][layer], rtol=1e-6)
            self.assertLess(abs(result["relative_stability"][layer] - d_f / mean),
                            4 * d_f * spread / ((mean - 4 * spread) * mean))


class MatchedNoiseTest(tf.test.TestCase):

    def test_zero_mean_isotropic_gaussian_of_the_stated_norm(self):
        n, d = 3000, 16
        rng = np.random.default_rng(3)
        images = tf.constant(rng.uniform(0, 1, (n, 4, 4, 1)), tf.float32)
        stated = rng.uniform(0.1, 5.0, n)
        direction = rng.standard_normal((n, d))
        moved = images + tf.constant(
            (direction * (stated / np.linalg.norm(direction, axis=1))[:, None]).reshape(
                n, 4, 4, 1), tf.float32)
        noise = sensitivity.matched_gaussian_noise(images, moved, (5, 6)).numpy().reshape(n, d)
        self.assertAllClose(np.linalg.norm(noise, axis=1), stated, rtol=1e-5)
        unit = noise.astype(np.float64) / np.linalg.norm(noise, axis=1, keepdims=True)
        # Zero mean and covariance I / d: the moments of a uniform direction (tolerances: six
        # standard errors of the sample moments).
        self.assertLess(np.max(np.abs(unit.mean(axis=0))), 6 / np.sqrt(n * d))
        covariance = unit.T @ unit / n
        self.assertLess(np.max(np.abs(covariance - np.eye(d) / d)),
                        6 * np.sqrt(3 / (d * (d + 2)) / n))
        # Each coordinate of a uniform direction: (u + 1) / 2 ~ Beta((d - 1) / 2, (d - 1) / 2).
        for k in (0, 7, 15):
            self.assertGreater(scipy.stats.kstest((unit[:, k] + 1) / 2, "beta",
                                                  args=((d - 1) / 2, (d - 1) / 2)).pvalue, 1e-3)
        # Unrelated to the images and deformations: a different seed, different noise.
        other = sensitivity.matched_gaussian_noise(images, moved, (5, 7)).numpy().reshape(n, d)
        self.assertLess(abs(np.mean(np.sum(unit * other, axis=1)
                                    / np.linalg.norm(other, axis=1))), 6 / np.sqrt(n))


class UndefinedValuesTest(tf.test.TestCase):

    def test_constant_point_is_nan_without_numpy_warnings_and_others_unchanged(self):
        inputs = keras.Input([16, 16, 3])
        x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
        const = keras.layers.Conv2D(2, 1, kernel_initializer="zeros", bias_initializer="ones",
                                    name="constant")(x)
        model = keras.Model(inputs, [x, const])
        images = _images(6)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a numpy RuntimeWarning fails the test
            both = sensitivity.measure_deformation(model, images, _deform,
                                                   layers=["conv", "constant"])
        alone = sensitivity.measure_deformation(model, images, _deform, layers=["conv"])
        for key, field in [("sensitivity_cosine", "sensitivity"),
                           ("sensitivity_euclidean", "sensitivity"),
                           ("relative_stability", "relative_stability"),
                           ("relative_stability", "deformation_stability"),
                           ("relative_stability", "noise_stability")]:
            self.assertTrue(np.isnan(both[key][field][1]), (key, field))
            self.assertEqual(both[key][field][0], alone[key][field][0])

    def test_preprocess_by_name_is_refused_with_where_names_work(self):
        with self.assertRaisesRegex(ValueError, "named_preprocess"):
            sensitivity.RepresentationRunner(_tiny_model(), preprocess="unit")

    def test_ratio(self):
        self.assertAllEqual(sensitivity.ratio([1.0, 2.0, 0.0], [4.0, 0.0, 0.0])[:1], [0.25])
        self.assertTrue(np.all(np.isnan(sensitivity.ratio([2.0, 0.0], [0.0, 0.0]))))


if __name__ == "__main__":
    tf.test.main()
