"""Tests of `deform_tf.profile` on non-VGG models against a float64 numpy evaluation."""

import itertools
import os

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

import deform_tf
from deform_tf import profile
from deform_tf import representations
from deform_tf import sensitivity

N = 10


def _base(name="base"):
    inputs = keras.Input([16, 16, 3])
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="down2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name=name)


def _images():
    return np.random.default_rng(0).uniform(0, 255, (N, 16, 16, 3)).astype(np.float32)


def _deform(x):
    return deform_tf.random_tps_deformation(x, 3, 2.0, [5, 6])


def _float64_profile(rep_model, images, deformed, noisy):
    """Per point: (cosine sensitivity, Euclidean sensitivity, R_f), in float64 numpy."""
    outputs = [[r.numpy().reshape(N, -1).astype(np.float64)
                for r in rep_model(x, training=False)] for x in (images, deformed, noisy)]
    pairs = list(itertools.combinations(range(N), 2))
    results = []
    for clean, moved, noise in zip(*outputs):
        unit = clean / np.linalg.norm(clean, axis=1, keepdims=True)
        unit_moved = moved / np.linalg.norm(moved, axis=1, keepdims=True)
        cosine = np.mean(1 - np.sum(unit * unit_moved, axis=1)) / np.median(
            [1 - unit[i] @ unit[j] for i, j in pairs])
        euclidean = np.mean(np.linalg.norm(moved - clean, axis=1)) / np.median(
            [np.linalg.norm(clean[i] - clean[j]) for i, j in pairs])
        pair_mean = np.mean([np.sum((clean[i] - clean[j]) ** 2) for i, j in pairs])
        d_f = np.mean(np.sum((moved - clean) ** 2, axis=1)) / pair_mean
        g_f = np.mean(np.sum((noise - clean) ** 2, axis=1)) / pair_mean
        results.append((cosine, euclidean, d_f / g_f))
    return np.array(results)


class ProfileTest(parameterized.TestCase, tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(1)
        cls.model = _base()
        cls.runner = sensitivity.RepresentationRunner(cls.model)

    @parameterized.parameters(None, 4)
    def test_matches_float64_numpy(self, batch_size):
        images = _images()
        rows = profile.profile(self.model, images, _deform, noise_seed=(3, 4),
                               batch_size=batch_size, runner=self.runner)
        self.assertEqual([r.layer for r in rows],
                         ["input", "conv1", "pool1", "down2", "relu2", "logits"])
        deformed = _deform(images)
        noisy = images + sensitivity.matched_gaussian_noise(
            tf.constant(images), deformed, (3, 4))
        expected = _float64_profile(self.runner.rep_model, images, deformed, noisy)
        got = np.array([[r.sensitivity_cosine, r.sensitivity_euclidean, r.relative_stability]
                        for r in rows])
        self.assertAllClose(got, expected, rtol=1e-4, atol=0)
        self.assertEqual({r.model for r in rows}, {"base"})
        self.assertEqual([r.relative_depth for r in rows][0], 0.0)
        self.assertEqual([r.relative_depth for r in rows][-1], 1.0)

    def test_preprocess_is_applied_after_the_deformation_to_every_group(self):
        # The same network with a nonlinear preprocessing as its first layer: measured at the
        # same layers, both must agree (deformation and noise act on the raw pixels).
        inputs = keras.Input([16, 16, 3])
        wrapped = keras.Model(inputs, self.model(keras.layers.Lambda(tf.sqrt)(inputs)))
        layers = ["conv1", "pool1", "relu2", "logits"]
        images = _images()
        hooked = profile.profile(self.model, images, _deform, layers=layers, preprocess=tf.sqrt)
        inside = profile.profile(wrapped, images, _deform, layers=layers)
        for key in ("sensitivity_cosine", "sensitivity_euclidean", "relative_stability"):
            self.assertAllClose([getattr(r, key) for r in hooked],
                                [getattr(r, key) for r in inside], rtol=1e-5, msg=key)
        plain = profile.profile(self.model, images, _deform, layers=layers)
        self.assertNotAllClose([r.sensitivity_cosine for r in plain],
                               [r.sensitivity_cosine for r in hooked], rtol=1e-3)

    def test_chunk_size_bounds_the_measured_outputs(self):
        per_image = 3 * self.runner.feature_count * 4
        self.assertEqual(profile.chunk_size(self.runner, 100, max_bytes=5 * per_image), 5)
        self.assertEqual(profile.chunk_size(self.runner, 3, max_bytes=5 * per_image), 3)
        self.assertEqual(profile.chunk_size(self.runner, 100, max_bytes=1), 1)

    def test_sequential_model_and_every_point_size(self):
        model = keras.Sequential([
            keras.Input([16, 16, 3]), keras.layers.Conv2D(2, 3, strides=2, activation="relu"),
            keras.layers.Flatten(), keras.layers.Dense(2)], name="seq")
        rows = profile.profile(model, _images(), _deform, batch_size=3)
        self.assertEqual([(r.height, r.width, r.channels) for r in rows],
                         [(16, 16, 3), (7, 7, 2), (1, 1, 2)])
        self.assertTrue(all(np.isfinite(r.sensitivity_cosine) for r in rows))

    def test_runner_with_layers_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "RepresentationRunner"):
            profile.profile(self.model, _images(), _deform, runner=self.runner,
                            layers=["conv1"])

    def test_keras_file_of_a_non_vgg_model(self):
        path = os.path.join(self.get_temp_dir(), "model.keras")
        self.model.save(path)
        images = _images()
        from_file = profile.profile(path, images, _deform, layers=["relu2"])
        direct = profile.profile(self.model, images, _deform, layers=["relu2"])
        self.assertAllClose(from_file[0].sensitivity_cosine, direct[0].sensitivity_cosine,
                            rtol=1e-5)
        self.assertEqual(from_file[0].model, path)
        self.assertIsNone(representations.declared_measured_layers(self.model))


if __name__ == "__main__":
    tf.test.main()
