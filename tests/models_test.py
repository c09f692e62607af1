"""Tests of the VGG family: layer counts and names, shapes, downsampling semantics, loading."""

import json
import os

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from deform_tf import model_io
from deform_tf import models
from deform_tf import representations


def _down_model(kind, channels=2, size=4):
    """A model applying one downsampling layer of `kind` to a [1, size, size, channels] input."""
    inputs = keras.Input([size, size, channels])
    init = lambda: keras.initializers.Ones()
    bn = lambda name: keras.layers.BatchNormalization(name=name)
    outputs = models.downsampling_layers(kind, channels, init, bn, "down")(inputs)
    return keras.Model(inputs, outputs)


class VggTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        ("cifar10", "max_pool", 13), ("cifar10", "strided_relu", 13), ("mnist", "subsample", 13),
        ("imagenet", "max_pool", 19), ("imagenet", "strided_relu", 19))
    def test_measured_layer_counts_and_names(self, config, downsampling, count):
        input_shape = (32, 32, 1) if config == "mnist" else (32, 32, 3)
        model = models.vgg(config, downsampling, width=0.0625, input_shape=input_shape)
        rep_model, names = models.representation_model(model)
        self.assertLen(names, count)
        self.assertLen(rep_model.outputs, count)
        self.assertEqual(names[0], "input")
        self.assertEqual(names[1:4], ["block1_relu1", "block1_relu2",
                                      "block1_down_relu" if downsampling == "strided_relu"
                                      else "block1_down"])
        self.assertTrue(names[-1].startswith(f"block{len(models.STAGES[config])}_down"))
        conv_names = [l.name for l in model.layers if isinstance(l, keras.layers.Conv2D)]
        self.assertEqual(conv_names[:2], ["block1_conv1", "block1_conv2"])

    @parameterized.parameters(*models.DOWNSAMPLING)
    def test_output_shapes_cifar(self, downsampling):
        model = models.vgg("cifar10", downsampling, width=0.25)
        rep_model, names = models.representation_model(model)
        outputs = rep_model(np.zeros([2, 32, 32, 3], np.float32))
        shapes = {n: tuple(o.shape) for n, o in zip(names, outputs)}
        self.assertEqual(shapes["input"], (2, 32, 32, 3))
        self.assertEqual(shapes["block1_relu1"], (2, 32, 32, 8))
        last = names[-1]
        self.assertEqual(shapes[last], (2, 2, 2, 64))
        self.assertEqual(model.output_shape, (None, 10))

    def test_imagenet_full_width_shapes_and_params(self):
        model = models.vgg("imagenet", "max_pool")
        self.assertEqual(model.input_shape, (None, 224, 224, 3))
        self.assertEqual(model.get_layer("block5_down").output.shape, (None, 7, 7, 512))
        convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
        self.assertLen(convs, 13)
        # 3x3 convs without bias: sum of 9 * c_in * c_out, plus BN (4 per channel) and logits.
        channels = [3] + [c for stage in models.STAGES["imagenet"] for c in stage]
        conv_params = sum(9 * a * b for a, b in zip(channels[:-1], channels[1:]))
        bn_params = 4 * sum(channels[1:])
        self.assertEqual(model.count_params(), conv_params + bn_params + 512 * 1000 + 1000)

    def test_any_input_size_and_width(self):
        model = models.vgg("cifar10", "avg_pool", width=0.5, input_shape=(48, 40, 3),
                           num_classes=7)
        self.assertEqual(model(np.zeros([1, 48, 40, 3], np.float32)).shape, (1, 7))
        self.assertEqual(model.get_layer("block4_down").output.shape, (None, 3, 2, 128))

    def test_subsample_keeps_top_left(self):
        x = np.arange(2 * 5 * 4 * 2, dtype=np.float32).reshape(2, 5, 4, 2)
        got = models.Subsample2D()(x).numpy()
        np.testing.assert_array_equal(got, x[:, 0:4:2, 0:4:2, :])
        self.assertEqual(got.shape, (2, 2, 2, 2))

    def test_max_and_avg_pool_semantics(self):
        x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
        x = np.concatenate([x, -x], axis=-1)
        cells = x.reshape(1, 2, 2, 2, 2, 2).transpose(0, 1, 3, 2, 4, 5).reshape(1, 2, 2, 4, 2)
        np.testing.assert_array_equal(_down_model("max_pool")(x).numpy(), cells.max(axis=3))
        np.testing.assert_allclose(_down_model("avg_pool")(x).numpy(), cells.mean(axis=3))
        np.testing.assert_array_equal(_down_model("subsample")(x).numpy(), x[:, ::2, ::2])

    def test_strided_is_linear_without_bn_or_relu(self):
        model = _down_model("strided")
        self.assertEqual([type(l).__name__ for l in model.layers[1:]], ["Conv2D"])
        conv = model.layers[1]
        self.assertEqual(conv.strides, (2, 2))
        self.assertEqual(conv.kernel.shape, (2, 2, 2, 2))
        self.assertTrue(conv.use_bias)
        x = np.random.default_rng(0).normal(size=(1, 4, 4, 2)).astype(np.float32)
        # Ones kernel, zero bias: each output is the sum of its 2x2 cell over both channels,
        # negative values included (no ReLU).
        expected = x.reshape(1, 2, 2, 2, 2, 2).sum(axis=(2, 4, 5))[..., None].repeat(2, -1)
        self.assertAllClose(model(x), expected, atol=1e-5)
        self.assertLess(model(x).numpy().min(), 0.0)

    def test_strided_relu_has_bn_and_relu(self):
        model = models.vgg("cifar10", "strided_relu", width=0.125)
        self.assertFalse(model.get_layer("block1_down").use_bias)
        self.assertIsInstance(model.get_layer("block1_down_bn"), keras.layers.BatchNormalization)
        self.assertIsInstance(model.get_layer("block1_down_relu"), keras.layers.ReLU)

    def test_init_is_fan_in_truncated_normal_and_seeded(self):
        a = models.vgg("cifar10", "max_pool", width=0.5, seed=3)
        b = models.vgg("cifar10", "max_pool", width=0.5, seed=3)
        kernel = a.get_layer("block3_conv1").kernel.numpy()
        fan_in = 9 * kernel.shape[2]
        self.assertLessEqual(np.abs(kernel).max(), 2.0 / np.sqrt(fan_in) + 1e-6)
        self.assertAllClose(kernel.std() * np.sqrt(fan_in), 0.88, atol=0.05)
        self.assertAllEqual(kernel, b.get_layer("block3_conv1").kernel.numpy())
        self.assertNotAllClose(a.get_layer("block3_conv1").kernel,
                               a.get_layer("block3_conv2").kernel[:, :, :kernel.shape[2]])

    @parameterized.named_parameters(
        ("config", dict(config="resnet"), "config"),
        ("downsampling", dict(downsampling="stride"), "downsampling"),
        ("width", dict(width=0), "width"),
        ("too_small", dict(input_shape=(8, 8, 3)), "at least 16"),
    )
    def test_bad_arguments(self, kwargs, word):
        with self.assertRaisesRegex(ValueError, word):
            models.vgg(**kwargs)

    def test_measured_points_are_the_builders_declaration(self):
        model = models.vgg("cifar10", "avg_pool", width=0.0625, input_shape=(16, 16, 3))
        declared = representations.declared_measured_layers(model)
        self.assertEqual(declared, tuple(models.vgg_layout_layers(model)))
        # The declaration, not the layer names, decides what is measured.
        representations.declare_measured_layers(model, ["block2_relu1", "block4_down"])
        self.assertEqual(models.representation_model(model)[1],
                         ["input", "block2_relu1", "block4_down"])
        with self.assertRaisesRegex(ValueError, "no layers named"):
            representations.declare_measured_layers(model, ["block9_relu1"])

    def test_representation_model_rejects_foreign_models(self):
        inputs = keras.Input([8, 8, 3])
        model = keras.Model(inputs, keras.layers.Conv2D(2, 3, name="conv")(inputs))
        with self.assertRaisesRegex(ValueError, "block"):
            models.representation_model(model)


class ModelIoTest(tf.test.TestCase):

    def test_keras_file_and_checkpoint_round_trip(self):
        kwargs = dict(config="cifar10", downsampling="subsample", width=0.125, seed=1)
        model = models.vgg(**kwargs)
        images = np.random.default_rng(0).uniform(size=(2, 32, 32, 3)).astype(np.float32)
        expected = model(images, training=False)

        keras_path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(keras_path)
        loaded = model_io.load_model(keras_path)
        self.assertAllClose(loaded(images, training=False), expected)
        # A .keras file keeps no declaration: the loader declares the VGG layout again.
        self.assertEqual(representations.declared_measured_layers(loaded),
                         representations.declared_measured_layers(model))

        directory = os.path.join(self.get_temp_dir(), "run")
        model_io.save_model_config(directory, **kwargs)
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), directory, 2)
        prefix = manager.save()
        with open(os.path.join(directory, model_io.MODEL_CONFIG_FILE)) as f:
            self.assertEqual(json.load(f)["downsampling"], "subsample")
        for path in (directory, prefix):
            restored = model_io.load_model(path)
            self.assertAllClose(restored(images, training=False), expected, atol=1e-6)

    def test_bad_paths(self):
        with self.assertRaisesRegex(FileNotFoundError, "nowhere"):
            model_io.load_model(os.path.join(self.get_temp_dir(), "nowhere.keras"))
        corrupt = os.path.join(self.get_temp_dir(), "corrupt.keras")
        with open(corrupt, "wb") as f:
            f.write(b"not a zip file")
        with self.assertRaisesRegex(ValueError, "corrupt.keras"):
            model_io.load_model(corrupt)
        empty_dir = os.path.join(self.get_temp_dir(), "empty")
        os.makedirs(empty_dir)
        with self.assertRaisesRegex(ValueError, "model_config.json"):
            model_io.load_model(empty_dir)


if __name__ == "__main__":
    tf.test.main()
