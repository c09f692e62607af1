"""Tests of deform_tf.batch_norm.recalibrate and the training setting bn_recalibration_batches.

The oracle is the pooled per-channel mean and biased variance, over every example and position
of the batches, of each batch norm's input in float64 numpy; the input of a later batch norm is
read from a Keras sub-model called in training mode (earlier batch norms normalizing with their
batch statistics, as during training), never from the code under test.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from deform_tf import batch_norm
from experiments import runs
from experiments import settings as settings_lib
from experiments import training
from pipelines import idx


def _net(seed=0, momentum=0.999, nested=False):
    """conv -> BN -> relu -> conv -> BN -> pool -> dense, with BN 2 optionally in a sub-model."""
    init = lambda k: keras.initializers.GlorotUniform(seed + k)  # noqa: E731
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", kernel_initializer=init(1), name="conv1")(inputs)
    x = keras.layers.BatchNormalization(momentum=momentum, name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(4, 3, strides=2, kernel_initializer=init(2), name="conv2")(x)
    block_bn = keras.layers.BatchNormalization(momentum=momentum, name="bn2")
    if nested:
        inner_in = keras.Input(x.shape[1:])
        x = keras.Model(inner_in, block_bn(inner_in), name="block")(x)
    else:
        x = block_bn(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, kernel_initializer=init(3), name="logits")(x)
    return keras.Model(inputs, outputs)


def _batches(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(1.5, 2.0, (n, 8, 8, 2)).astype(np.float32), np.zeros(n, np.int32))
            for n in sizes]


def _pooled(features):
    """Per-channel mean and biased variance over all examples and positions, float64."""
    values = np.concatenate([np.asarray(f, np.float64).reshape(-1, f.shape[-1])
                             for f in features])
    return values.mean(0), values.var(0)


class RecalibrateTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(False, True)
    def test_moving_statistics_are_the_pooled_statistics(self, nested):
        model = _net(nested=nested)
        batches = _batches([8, 8, 5])  # a short last batch: examples weigh equally
        conv1 = keras.Model(model.input, model.get_layer("conv1").output)
        first = _pooled([conv1(x) for x, _ in batches])
        # bn2's input in training mode: bn1 normalizes each batch with its own statistics.
        bn2_input = keras.Model(model.input, model.get_layer("conv2").output)
        second = _pooled([bn2_input(x, training=True) for x, _ in batches])
        layers = batch_norm.batch_norm_layers(model)
        self.assertEqual([layer.name for layer in layers], ["bn1", "bn2"])
        kernels = [w.numpy() for w in model.trainable_weights]

        count = batch_norm.recalibrate(model, batches, num_batches=10)

        self.assertEqual(count, 21)
        for layer, (mean, variance) in zip(layers, (first, second)):
            self.assertAllClose(layer.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-5)
            self.assertAllClose(layer.moving_variance.numpy(), variance, rtol=1e-4, atol=1e-5)
            self.assertEqual(layer.momentum, 0.999)
        for before, after in zip(kernels, model.trainable_weights):
            self.assertAllEqual(before, after.numpy())

    def test_only_the_first_num_batches_are_pooled_and_plain_image_batches_work(self):
        model = _net()
        batches = _batches([6, 6, 6])
        conv1 = keras.Model(model.input, model.get_layer("conv1").output)
        mean, variance = _pooled([conv1(x) for x, _ in batches[:2]])
        count = batch_norm.recalibrate(model, iter([x for x, _ in batches]), num_batches=2)
        self.assertEqual(count, 12)
        self.assertAllClose(model.get_layer("bn1").moving_mean.numpy(), mean, atol=1e-5)
        self.assertAllClose(model.get_layer("bn1").moving_variance.numpy(), variance,
                            rtol=1e-4, atol=1e-5)

    def test_one_batch_of_everything_makes_inference_match_training_mode_at_the_first_bn(self):
        model = _net()
        images = _batches([32])[0][0]
        batch_norm.recalibrate(model, [images], num_batches=1)
        probe = keras.Model(model.input, model.get_layer("bn1").output)
        self.assertAllClose(probe(images, training=False), probe(images, training=True),
                            atol=1e-4)

    def test_no_batch_norm_is_a_no_op_and_no_batch_refuses_and_keeps_statistics(self):
        inputs = keras.Input((8, 8, 2))
        plain = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
        self.assertEqual(batch_norm.recalibrate(plain, _batches([4]), 5), 0)
        model = _net()
        before = model.get_layer("bn1").moving_variance.numpy()
        with self.assertRaisesRegex(ValueError, "no batch"):
            batch_norm.recalibrate(model, [], 5)
        with self.assertRaisesRegex(ValueError, "at least 1"):
            batch_norm.recalibrate(model, _batches([4]), 0)
        self.assertAllEqual(model.get_layer("bn1").moving_variance.numpy(), before)
        self.assertEqual(model.get_layer("bn1").momentum, 0.999)

    def test_an_error_midway_restores_statistics_and_momentum(self):
        model = _net()
        before = model.get_layer("bn2").moving_mean.numpy()

        def failing():
            yield _batches([4])[0]
            raise OSError("disk gone")

        with self.assertRaisesRegex(OSError, "disk gone"):
            batch_norm.recalibrate(model, failing(), 5)
        self.assertAllEqual(model.get_layer("bn2").moving_mean.numpy(), before)
        self.assertEqual(model.get_layer("bn2").momentum, 0.999)


class TrainingTest(tf.test.TestCase):

    def _settings(self, **overrides):
        settings = settings_lib.default_settings("train")
        settings.update(model="vgg_mnist_strided", width=0.0625, dataset="fashion_mnist",
                        data_dir=idx.EMBEDDED_FASHION_MNIST_DIR, max_train_examples=128,
                        batch_size=16, train_steps=2, num_measure_images=8, log_every=1)
        settings.update(overrides)
        return settings

    def test_a_run_saves_recalibrated_statistics_and_records_the_setting(self):
        config, data = settings_lib.build_run("train", self._settings(bn_recalibration_batches=3))
        out = os.path.join(self.get_temp_dir(), "run")
        training.train(config, data, out)
        with open(os.path.join(out, "config.json")) as f:
            self.assertEqual(json.load(f)["bn_recalibration_batches"], 3)
        model = runs.load_model(os.path.join(out, "checkpoints"))
        stream = data.train(tf.distribute.InputContext(), config.train_steps)
        images = [x for (x, _), _ in zip(stream, range(3))]
        first_bn = batch_norm.batch_norm_layers(model)[0]
        conv = keras.Model(model.input, first_bn.input)
        mean, variance = _pooled([conv(x) for x in images])
        self.assertAllClose(first_bn.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
        self.assertAllClose(first_bn.moving_variance.numpy(), variance, rtol=1e-4, atol=1e-5)

    def test_off_by_default_and_absent_from_config_json(self):
        config, _ = settings_lib.build_run("train", self._settings())
        self.assertEqual(config.bn_recalibration_batches, 0)
        self.assertNotIn("bn_recalibration_batches", config.to_json())

    def test_lagging_statistics_are_warned_about(self):
        model = _net()
        config = settings_lib.build_run("train", self._settings())[0]
        with self.assertLogs(level="WARNING") as logs:
            training._warn_if_statistics_lag(model, config, {"accuracy": 0.8}, 0.1)
        self.assertIn("bn_recalibration_batches", "\n".join(logs.output))
        with self.assertNoLogs(level="WARNING"):
            training._warn_if_statistics_lag(model, config, {"accuracy": 0.8}, 0.7)


if __name__ == "__main__":
    tf.test.main()
