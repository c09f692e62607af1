"""Tests of the measured points of any Keras model: flattening, default points, selections."""

import re

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from deform_tf import models
from deform_tf import representations


def _functional():
    """input -> conv (linear) -> ReLU -> maxpool -> conv stride 2 (linear) -> GAP -> dense."""
    inputs = keras.Input([16, 16, 3])
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x), name="functional")


def _sequential():
    """A "valid" conv with relu (a nonlinearity, not a downsampling), a strided linear conv."""
    return keras.Sequential([
        keras.Input([16, 16, 3]),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv_relu"),
        keras.layers.Conv2D(4, 3, name="conv_valid"),
        keras.layers.Conv2D(4, 3, strides=2, name="conv_stride"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(2, name="out"),
    ], name="sequential")


def _nested_mobilenet():
    """A keras.applications backbone inside a functional classifier."""
    backbone = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)
    inputs = keras.Input([32, 32, 3])
    x = backbone(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="head")(x), name="classifier"), backbone


class FlattenTest(parameterized.TestCase, tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nested, cls.backbone = _nested_mobilenet()
        cls.nested_reps = representations.representation_model(cls.nested)
        cls.images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)

    def test_functional_default_points(self):
        reps = representations.representation_model(_functional())
        self.assertEqual(reps.names, ["input", "relu1", "pool1", "down2", "logits"])
        self.assertEqual([(p.height, p.width, p.channels) for p in reps.points],
                         [(16, 16, 3), (16, 16, 4), (8, 8, 4), (4, 4, 4), (1, 1, 3)])
        # Longest paths: conv1 1, relu1 2, pool1 3, down2 4, gap 5, logits 6 layer calls.
        self.assertAllClose([p.relative_depth for p in reps.points], [0, 2 / 6, 3 / 6, 4 / 6, 1])
        self.assertEqual([p.index for p in reps.points], list(range(5)))
        self.assertEqual(reps.points[1].layer_type, "ReLU")

    def test_sequential_default_points(self):
        reps = representations.representation_model(_sequential())
        self.assertEqual(reps.names, ["input", "conv_relu", "conv_stride", "out"])
        self.assertEqual((reps.points[2].height, reps.points[2].channels), (5, 4))

    def test_nested_backbone_layers_are_reachable(self):
        names = self.nested_reps.names
        prefix = self.backbone.name + "/"
        self.assertEqual(names[0], "input")
        self.assertEqual(names[-1], "head")
        self.assertIn(prefix + "Conv1_relu", names)
        self.assertIn(prefix + "block_1_depthwise", names)  # strided depthwise conv
        # At 32 px the last stages are 1 x 1: vectors, not feature maps.
        self.assertNotIn(prefix + "out_relu", names)
        self.assertTrue(all(n.startswith(prefix) for n in names[1:-1]))
        depths = [p.relative_depth for p in self.nested_reps.points]
        self.assertEqual(depths, sorted(depths))
        self.assertEqual((depths[0], depths[-1]), (0.0, 1.0))
        # The flat model computes what the nested one does, inside and at the output.
        outputs = self.nested_reps.model(self.images, training=False)
        self.assertAllClose(outputs[-1], self.nested(self.images, training=False), atol=1e-5)
        inner = keras.Model(self.backbone.inputs[0],
                            self.backbone.get_layer("block_1_depthwise").output)
        k = names.index(prefix + "block_1_depthwise")
        self.assertAllClose(outputs[k], inner(self.images, training=False), atol=1e-5)

    def test_shared_layer_calls_are_separate_points(self):
        inputs = keras.Input([8, 8, 2])
        relu = keras.layers.ReLU(name="shared")
        outputs = relu(keras.layers.Conv2D(2, 1, name="c")(relu(inputs)))
        reps = representations.representation_model(keras.Model(inputs, outputs))
        self.assertEqual(reps.names, ["input", "shared", "shared:1"])

    def test_vgg_keeps_its_declared_points(self):
        model = models.vgg("cifar10", "strided_relu", width=0.0625, input_shape=(16, 16, 3))
        reps = representations.representation_model(model)
        self.assertLen(reps.names, 13)
        self.assertEqual(reps.names[:4], ["input", "block1_relu1", "block1_relu2",
                                          "block1_down_relu"])
        self.assertEqual(representations.declared_measured_layers(model),
                         tuple(reps.names[1:]))

    def test_undefined_input_size_needs_input_shape(self):
        inputs = keras.Input([None, None, 3])
        model = keras.Model(inputs, keras.layers.ReLU(name="r")(inputs))
        with self.assertRaisesRegex(ValueError, "input_shape"):
            representations.representation_model(model)
        reps = representations.representation_model(model, input_shape=(6, 7, 3))
        self.assertEqual((reps.points[1].height, reps.points[1].width), (6, 7))

    def test_models_that_cannot_be_flattened(self):
        class Subclassed(keras.Model):
            def call(self, x):
                return x

        with self.assertRaisesRegex(ValueError, "subclassed"):
            representations.representation_model(Subclassed())
        with self.assertRaisesRegex(ValueError, "no defined input"):
            representations.representation_model(keras.Sequential([keras.layers.ReLU()]))
        inputs = keras.Input([4])
        with self.assertRaisesRegex(ValueError, "image input"):
            representations.representation_model(keras.Model(inputs, inputs * 2))


class SelectionTest(parameterized.TestCase, tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model, cls.backbone = _nested_mobilenet()
        cls.calls = representations.flatten(cls.model)

    def _names(self, layers):
        return [c.name for c in representations.select_calls(self.calls, layers)]

    def test_every_selection_form(self):
        p = self.backbone.name + "/"
        self.assertEqual(self._names("Conv1_relu"), [p + "Conv1_relu"])  # bare name
        self.assertEqual(self._names([p + "Conv1_relu", "input"]), ["input", p + "Conv1_relu"])
        self.assertEqual(self._names(re.compile(r"block_1_(expand|project)$")),
                         [p + "block_1_expand", p + "block_1_project"])
        self.assertEqual(self._names(keras.layers.GlobalAveragePooling2D), ["gap"])
        self.assertEqual(self._names(lambda layer: layer.name == "head"), ["head"])
        # A union of forms, in topological order whatever the order given.
        self.assertEqual(self._names(["head", keras.layers.GlobalAveragePooling2D,
                                      re.compile("^input$")]), ["input", "gap", "head"])

    def test_text_selectors_equal_their_objects(self):
        p = self.backbone.name + "/"
        self.assertEqual(self._names("re:block_1_(expand|project)$"),
                         [p + "block_1_expand", p + "block_1_project"])
        self.assertEqual(self._names("class:GlobalAveragePooling2D"), ["gap"])
        self.assertEqual(self._names(["head", "class:GlobalAveragePooling2D", "re:^input$"]),
                         ["input", "gap", "head"])
        with self.assertRaisesRegex(ValueError, "'Nope' is not a keras.layers class"):
            self._names("class:Nope")
        with self.assertRaisesRegex(ValueError, "bad regular expression"):
            self._names("re:(")

    @parameterized.named_parameters(
        ("unknown_name", "block_99_relu", "no layer named 'block_99_relu'"),
        ("regex_matches_nothing", re.compile("^nothing"), "matches no layer"),
        ("class_matches_nothing", keras.layers.LSTM, "matches no layer"),
        ("callable_matches_nothing", lambda layer: False, "matches no layer"),
        ("not_a_layer_class", int, "not a Keras layer class"),
        ("not_a_selector", 3, "not a name"),
        ("empty", [], "empty"),
    )
    def test_bad_selection(self, layers, message):
        with self.assertRaisesRegex(ValueError, message):
            representations.select_calls(self.calls, layers)

    def test_ambiguous_bare_name(self):
        inputs = keras.Input([8, 8, 1])
        x = inputs
        for name in ("a", "b"):
            x = keras.Sequential([keras.Input([8, 8, 1]), keras.layers.ReLU(name="r")],
                                 name=name)(x)
        calls = representations.flatten(keras.Model(inputs, x))
        with self.assertRaisesRegex(ValueError, "ambiguous"):
            representations.select_calls(calls, "r")
        self.assertEqual([c.name for c in representations.select_calls(calls, "b/r")], ["b/r"])


class DepthAndSizeTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters((7, 4), (15, 8))
    def test_same_padded_stride_2_on_odd_sizes_is_a_downsampling_point(self, size, reduced):
        inputs = keras.Input([size, size, 2])
        x = keras.layers.Conv2D(3, 3, strides=2, padding="same", name="down")(inputs)
        x = keras.layers.Conv2D(3, 3, padding="same", name="keep")(x)
        x = keras.layers.MaxPooling2D(2, padding="same", name="pool")(x)
        model = keras.Model(inputs, keras.layers.Flatten(name="flat")(x))
        points = representations.representation_model(model).points
        self.assertEqual([p.name for p in points], ["input", "down", "pool", "flat"])
        self.assertEqual((points[1].height, points[1].width), (reduced, reduced))
        self.assertEqual(points[2].height, (reduced + 1) // 2)

    def test_relative_depth_is_the_depth_in_the_whole_network(self):
        # conv1 -> relu1 -> pool1 -> down2 -> gap -> logits: six calls on the longest path.
        model = _functional()
        default = {p.name: p.relative_depth
                   for p in representations.representation_model(model).points}
        chosen = representations.representation_model(model, ["relu1", "down2"]).points
        self.assertEqual([(p.name, p.relative_depth) for p in chosen],
                         [("relu1", 2 / 6), ("down2", 4 / 6)])
        self.assertEqual(default["relu1"], 2 / 6)
        self.assertEqual(default["logits"], 1.0)


if __name__ == "__main__":
    tf.test.main()
