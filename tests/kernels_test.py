"""Tests for deform_tf.kernels: the conv layers of a model and their spatial kernels."""

import keras
import numpy as np
import tensorflow as tf

from deform_tf import kernels


def tiny_model():
    """Conv layers conv_a (3x3), conv_1x1, conv_b (3x3), then a dense layer."""
    inputs = keras.Input((10, 10, 2))
    x = keras.layers.Conv2D(4, 3, name="conv_a")(inputs)
    x = keras.layers.Conv2D(5, 1, name="conv_1x1")(x)
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(7, name="logits")(x)
    return keras.Model(inputs, outputs)


class ConvKernelsTest(tf.test.TestCase):

    def test_conv_kernels_are_numpy_copies(self):
        model = tiny_model()
        listed = kernels.conv_kernels(model)
        self.assertEqual([name for name, _ in listed], ["conv_a", "conv_b"])
        name, kernel = listed[0]
        self.assertIsInstance(kernel, np.ndarray)
        self.assertAllEqual(kernel, model.get_layer(name).kernel)
        kernel[...] = 0.0
        self.assertNotAllClose(kernel, model.get_layer(name).kernel)

    def test_nested_models_and_other_spatial_kernels(self):
        inner = keras.Sequential(
            [keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 3, padding="same", name="inner_conv"),
             keras.layers.DepthwiseConv2D(3, padding="same", name="inner_depthwise")],
            name="inner")
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(3, (1, 3), padding="same", name="outer_1x3")(inputs)
        x = inner(x)
        x = inner(x)  # shared: listed once
        x = keras.layers.Conv2DTranspose(2, 2, name="outer_transpose")(x)
        model = keras.Model(inputs, x)
        names = [name for name, _ in kernels.conv_kernels(model)]
        self.assertEqual(names, ["outer_1x3", "inner_conv", "inner_depthwise", "outer_transpose"])

    def test_not_a_model(self):
        with self.assertRaisesRegex(ValueError, "`model` must be a Keras model"):
            kernels.conv_kernels(np.ones([3, 3, 1, 1]))


if __name__ == "__main__":
    tf.test.main()
