"""Tests of the `RandomTPSDeformation` Keras layer: training switch, tf.data, serialization."""

import os

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

import deform_tf
from deform_tf import RandomTPSDeformation


def _mean_abs_diff(a, b):
    return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))


def _images(batch=4, size=16, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(size=(batch, size, size, channels)).astype(
        np.float32)


class RandomTPSDeformationTest(parameterized.TestCase, tf.test.TestCase):

    def test_deforms_when_training_and_not_in_inference(self):
        layer = RandomTPSDeformation(3, 2.0, seed=1)
        images = _images()
        self.assertGreater(_mean_abs_diff(layer(images, training=True), images), 1e-3)
        np.testing.assert_array_equal(layer(images, training=False).numpy(), images)

    def test_apply_in_inference(self):
        layer = RandomTPSDeformation(3, 2.0, seed=1, apply_in_inference=True)
        images = _images()
        self.assertGreater(_mean_abs_diff(layer(images, training=False), images), 1e-3)

    def test_fresh_deformation_per_call_and_explicit_seed(self):
        layer = RandomTPSDeformation(3, 2.0, seed=1)
        images = _images()
        a, b = layer(images), layer(images)
        self.assertGreater(_mean_abs_diff(a, b), 1e-3)
        explicit = layer(images, seed=tf.constant([4, 5]))
        self.assertAllEqual(explicit, deform_tf.random_tps_deformation(images, 3, 2.0, [4, 5]))

    def test_same_layer_seed_same_sequence(self):
        images = _images()
        first = [RandomTPSDeformation(3, 2.0, seed=7)(images) for _ in range(2)]
        self.assertAllEqual(first[0], first[1])

    def test_inside_a_model_follows_training_flag(self):
        inputs = keras.Input([16, 16, 3])
        outputs = RandomTPSDeformation(3, 2.0, seed=3)(inputs)
        model = keras.Model(inputs, outputs)
        images = _images()
        np.testing.assert_array_equal(model.predict(images, verbose=0), images)
        np.testing.assert_array_equal(model(images, training=False).numpy(), images)
        self.assertGreater(_mean_abs_diff(model(images, training=True), images), 1e-3)

    def test_as_tf_data_map_function(self):
        layer = RandomTPSDeformation(3, 2.0, seed=2)
        images = _images(batch=6)
        dataset = tf.data.Dataset.from_tensor_slices(images).batch(3).map(layer)
        batches = list(dataset.as_numpy_iterator())
        self.assertLen(batches, 2)
        self.assertEqual(batches[0].shape, (3, 16, 16, 3))
        self.assertGreater(np.abs(np.concatenate(batches) - images).mean(), 1e-3)
        # Reproducible per example through explicit seeds.
        seeded = tf.data.Dataset.from_tensor_slices(images).enumerate().map(
            lambda i, x: layer(x[None], seed=tf.stack([tf.constant(0, tf.int64), i]))[0])
        again = list(seeded.as_numpy_iterator())
        self.assertAllEqual(again, list(seeded.as_numpy_iterator()))

    def test_uint8_input_returns_float32(self):
        images = (_images() * 255).astype(np.uint8)
        layer = RandomTPSDeformation(3, 0.0, seed=2)
        for training in (True, False):
            got = layer(images, training=training)
            self.assertEqual(got.dtype, tf.float32)
            np.testing.assert_array_equal(got.numpy(), images.astype(np.float32))

    def test_config_round_trip(self):
        layer = RandomTPSDeformation((3, 4), 1.5, seed=9, apply_in_inference=True, name="tps")
        clone = RandomTPSDeformation.from_config(layer.get_config())
        self.assertEqual(clone.grid_size, (3, 4))
        self.assertEqual(clone.strength, 1.5)
        self.assertEqual(clone.seed, 9)
        self.assertTrue(clone.apply_in_inference)
        self.assertEqual(clone.name, "tps")

    def test_model_save_and_load(self):
        inputs = keras.Input([16, 16, 3])
        x = RandomTPSDeformation(3, 2.0, seed=3, name="deform")(inputs)
        outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
        model = keras.Model(inputs, outputs)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        self.assertIsInstance(loaded.get_layer("deform"), RandomTPSDeformation)
        self.assertEqual(loaded.get_layer("deform").get_config()["strength"], 2.0)
        images = _images()
        self.assertAllClose(loaded.predict(images, verbose=0), model.predict(images, verbose=0))

    def test_trains_with_fit_under_xla(self):
        inputs = keras.Input([16, 16, 3])
        x = RandomTPSDeformation(3, 2.0, seed=3)(inputs)
        outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
        model = keras.Model(inputs, outputs)
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=True)
        history = model.fit(_images(batch=8), np.arange(8) % 2, epochs=2, batch_size=4,
                            verbose=0)
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))

    @parameterized.named_parameters(
        ("grid", dict(grid_size=1, strength=1.0), "grid_size"),
        ("strength", dict(grid_size=3, strength=-2.0), "strength"),
    )
    def test_bad_arguments(self, kwargs, word):
        with self.assertRaisesRegex(ValueError, word):
            RandomTPSDeformation(**kwargs)


if __name__ == "__main__":
    tf.test.main()
