"""Tests of the model registry: every entry builds and trains on real images (the embedded
Fashion-MNIST IDX files); kinds, input conventions, the measured points of the study's nets, a
user's module:function builder and the error messages."""

import os
import sys
import textwrap

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from deform_tf import representations
from experiments import models as registry
from pipelines import idx

# Tiny widths for the entries that take one (fc*: units; the others: a channel multiplier).
SMALL_WIDTH = {"fully_connected": 8, "cnn": 0.0625, "resnet": 0.0625}
# Larger variants of a keras.applications family: built and checked, but trained only through
# the family's smallest entry (same Keras constructor code and registry builder), which saves
# about 55 s on a loaded 2-core machine.
TRAINED_AS = {"resnet101": "resnet50", "resnet152": "resnet50", "densenet169": "densenet121",
              "efficientnet_b1": "efficientnet_b0", "convnext_small": "convnext_tiny",
              "mobilenet_v2": "mobilenet_v2_035", "mobilenet_v3_large": "mobilenet_v3_small"}
MODULE = "experiments_models_test_nets"
NETS = textwrap.dedent("""\
    import keras


    def build(input_shape, num_classes, seed=None, hidden=3):
        inputs = keras.Input(input_shape)
        x = keras.layers.Flatten()(inputs)
        x = keras.layers.Dense(hidden, activation="relu", name="hidden",
                               kernel_initializer=keras.initializers.GlorotUniform(seed))(x)
        return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x))


    def without_seed(shape, classes):
        return build(shape, classes, seed=7)


    def wrong_classes(input_shape, num_classes):
        return build(input_shape, num_classes + 1)


    def wrong_input(input_shape, num_classes):
        return build((8, 8, 3), num_classes)


    def not_a_model(input_shape, num_classes):
        return "a model"


    def fails(input_shape, num_classes):
        raise RuntimeError("out of memory")


    NOT_CALLABLE = 3
    """)


def _real_images(shape, count=4):
    """The first `count` embedded Fashion-MNIST test images (IDX files, the real format) as
    float32 pixels 0..255 resized to `shape` (height, width, channels), and their labels."""
    images, labels = idx.load_mnist_split(idx.EMBEDDED_FASHION_MNIST_DIR, "test")
    resized = tf.image.resize(images[:count, :, :, None].astype(np.float32), shape[:2])
    return np.repeat(resized.numpy(), shape[2], axis=-1), np.asarray(labels[:count], np.int64)


def _small_input(entry):
    """32 x 32 (or the entry's minimum) x 1 or 3 channels: grayscale where the entry takes it."""
    size = max(32, entry.min_size)
    if entry.channels:
        channels = entry.channels[-1]
    elif entry.config:
        channels = entry.default_input_shape[2]
    else:
        channels = 1 if entry.name in ("lenet", "fc4") else 3
    return (size, size, channels)


def _convention(entry, channels):
    if entry.preprocess != registry.PIPELINE or entry.config:
        return entry.input_convention()
    return entry.input_convention("fashion_mnist" if channels == 1 else "cifar10")


class RegistryTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.named_parameters((name, name) for name in registry.MODELS)
    def test_entry_builds_and_trains_two_steps(self, name):
        entry = registry.get(name)
        self.assertIn(entry.kind, registry.KINDS)
        shape = _small_input(entry)
        options = {}
        if entry.options and "width" in entry.options and entry.kind in SMALL_WIDTH:
            options["width"] = SMALL_WIDTH[entry.kind]
        model = entry.build(shape, 10, seed=1, **options)
        self.assertEqual(tuple(model.outputs[0].shape), (None, 10))
        if name in TRAINED_AS:
            constructors = [getattr(keras.applications, registry.APPLICATIONS[n].constructor)
                            for n in (name, TRAINED_AS[name])]
            self.assertEqual(*[c.__module__ for c in constructors])
            return
        # Real images (pixels 0..255) through the entry's own input convention, as training and
        # profiling do.
        pixels, labels = _real_images(shape)
        convention = _convention(entry, shape[2])
        images = pixels if convention.fn is None else np.asarray(convention.fn(pixels))
        model.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=True,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        first, last = model.trainable_weights[0], model.trainable_weights[-1]
        before = [first.numpy(), last.numpy()]
        history = model.fit(images, labels, batch_size=2, epochs=1, verbose=0)
        self.assertTrue(np.all(np.isfinite(history.history["loss"])), history.history)
        # The gradient reached the first layer and the logits.
        self.assertNotAllClose(first.numpy(), before[0])
        self.assertNotAllClose(last.numpy(), before[1])

    def test_kinds_of_the_study_nets(self):
        kinds = {name: registry.get(name).kind for name in (
            "fc2", "fc4", "fc6", "lenet", "vgg_cifar10_max_pool", "resnet18", "resnet50",
            "mobilenet_v2_035", "efficientnet_b0", "densenet121")}
        self.assertEqual(kinds, {
            "fc2": "fully_connected", "fc4": "fully_connected", "fc6": "fully_connected",
            "lenet": "cnn", "vgg_cifar10_max_pool": "cnn", "resnet18": "resnet",
            "resnet50": "resnet", "mobilenet_v2_035": "mobile", "efficientnet_b0": "mobile",
            "densenet121": "densenet"})
        self.assertEqual(set(registry.PAPER_VGG) | set(registry.APPLICATIONS) |
                         {"fc2", "fc4", "fc6", "lenet", "resnet18"}, set(registry.MODELS))

    def test_small_mobilenet_width_and_reference_width_options(self):
        small = registry.build("mobilenet_v2_035", (32, 32, 3), 10)
        wide = registry.build("mobilenet_v2_035", (32, 32, 3), 10, width=0.5)
        # The stem has round(32 * alpha / 8) * 8 channels (at least 8): 16 at 0.35 and 0.5.
        self.assertEqual(small.get_layer("Conv1").filters, 16)
        self.assertEqual(small.get_layer("out_relu").output.shape[-1], 1280)
        self.assertLess(small.count_params(), wide.count_params())
        self.assertEqual(registry.build("fc4", (4, 4, 1), 3, width=5).count_params(),
                         16 * 5 + 5 + 2 * (5 * 5 + 5) + 5 * 3 + 3)
        self.assertEqual(registry.build("vgg_cifar10_max_pool", width=0.0625).get_layer(
            "block4_conv2").filters, 16)

    def test_same_seed_same_weights(self):
        for name in ("lenet", "mobilenet_v2_035"):
            a, b, c = (registry.build(name, (32, 32, 3), 4, seed=s) for s in (3, 3, 4))
            self.assertAllEqual(a.trainable_weights[0], b.trainable_weights[0])
            self.assertNotAllClose(a.trainable_weights[0], c.trainable_weights[0])


class PointsTest(tf.test.TestCase):

    def _names(self, name, shape, **options):
        model = registry.build(name, shape, 10, **options)
        return [p.name for p in representations.representation_model(model).points]

    def test_reference_and_paper_nets_declare_their_points(self):
        self.assertEqual(self._names("fc2", (28, 28, 1), width=4), ["input", "fc1_relu", "logits"])
        self.assertLen(self._names("fc6", (28, 28, 1), width=4), 7)
        self.assertLen(self._names("lenet", (28, 28, 1), width=0.5), 8)
        self.assertLen(self._names("resnet18", (32, 32, 3), width=0.0625), 19)
        names = self._names("vgg_mnist_avg_pool", (32, 32, 1), width=0.0625)
        self.assertLen(names, 13)
        self.assertEqual(names[-2:], ["block4_relu2", "block4_down"])

    def test_mobilenet_v2_default_points_at_32_pixels(self):
        # The default selection: the input, every ReLU and strided (downsampling) output while
        # the maps are larger than 1 x 1, and the logits. MobileNetV2 halves the size in Conv1
        # and in the depthwise convolutions of blocks 1, 3, 6 and 13: 32 -> 16 -> 8 -> 4 -> 2 -> 1,
        # so block 13's depthwise output (1 x 1) and every later map are vectors.
        expected = ["input", "Conv1", "Conv1_relu", "expanded_conv_depthwise_relu"]
        for block in range(1, 13):
            expected.append(f"block_{block}_expand_relu")
            if block in (1, 3, 6):
                expected.append(f"block_{block}_depthwise")
            expected.append(f"block_{block}_depthwise_relu")
        expected += ["block_13_expand_relu", "predictions"]
        self.assertEqual(self._names("mobilenet_v2_035", (32, 32, 3)), expected)

    def test_efficientnet_b0_default_points_at_32_pixels(self):
        # EfficientNet-B0 halves the size in its stem and in blocks 2a, 3a, 4a and 6a; block 1a
        # has no expansion; the squeeze-and-excitation gates are 1 x 1 (vectors).
        expected = ["input", "stem_conv", "stem_activation", "block1a_activation"]
        for block in ("2a", "2b", "3a", "3b", "4a", "4b", "4c", "5a", "5b", "5c"):
            expected.append(f"block{block}_expand_activation")
            if block in ("2a", "3a", "4a"):
                expected.append(f"block{block}_dwconv")
            expected.append(f"block{block}_activation")
        expected += ["block6a_expand_activation", "predictions"]
        self.assertEqual(self._names("efficientnet_b0", (32, 32, 3)), expected)


class InputConventionTest(tf.test.TestCase):

    def test_application_takes_its_family_preprocess_input(self):
        convention = registry.get("mobilenet_v2").input_convention("cifar10")
        self.assertEqual(convention.name, "mobilenet_v2")
        self.assertAllClose(convention.fn(tf.constant([[0.0, 127.5, 255.0]])), [[-1, 0, 1]])

    def test_pipeline_entries_take_the_data_set_normalization(self):
        # The published per-channel statistics of each data set, on [0, 1] pixels.
        stats = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
                 "fashion_mnist": ((0.2860,), (0.3530,)), "mnist": ((0.1307,), (0.3081,))}
        for dataset, (mean, std) in stats.items():
            pixels = np.linspace(0, 255, 6 * len(mean), dtype=np.float32).reshape(
                1, 2, 3, len(mean))
            convention = registry.get("resnet18").input_convention(dataset)
            self.assertEqual(convention.name, f"{dataset}_pipeline")
            self.assertAllClose(convention.fn(pixels), (pixels / 255 - mean) / np.array(std),
                                rtol=1e-3, atol=1e-3)
        paper = registry.get("vgg_mnist_strided").input_convention()
        self.assertEqual(paper.name, "mnist_pipeline")  # its config: Fashion-MNIST statistics
        self.assertAllClose(paper.fn(tf.fill([1, 1, 1, 1], 255.0)), [[[[(1 - 0.2860) / 0.3530]]]],
                            rtol=1e-3)

    def test_pipeline_entry_without_a_data_set_is_refused(self):
        with self.assertRaisesRegex(ValueError, "'fc2' takes the normalization of the data set "
                                    ".*give the data set.*cifar10"):
            registry.get("fc2").input_convention()
        with self.assertRaisesRegex(ValueError, "Unknown data set 'svhn'.*fashion_mnist"):
            registry.get("fc2").input_convention("svhn")


class UserBuilderTest(parameterized.TestCase, tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.folder = os.path.join(tf.compat.v1.test.get_temp_dir(), "user_builders")
        os.makedirs(cls.folder, exist_ok=True)
        with open(os.path.join(cls.folder, MODULE + ".py"), "w") as f:
            f.write(NETS)
        with open(os.path.join(cls.folder, MODULE + "_broken.py"), "w") as f:
            f.write("import no_such_dependency_of_the_test\n")
        sys.path.insert(0, cls.folder)

    @classmethod
    def tearDownClass(cls):
        sys.path.remove(cls.folder)
        for name in (MODULE, MODULE + "_broken"):
            sys.modules.pop(name, None)
        super().tearDownClass()

    def test_builder_gets_shape_classes_seed_and_options(self):
        entry = registry.get(f"{MODULE}:build")
        self.assertEqual((entry.kind, entry.preprocess), ("custom", registry.PIPELINE))
        model = entry.build((6, 5, 1), 4, seed=2, hidden=7)
        self.assertEqual(tuple(model.inputs[0].shape), (None, 6, 5, 1))
        self.assertEqual(model.get_layer("hidden").units, 7)
        again = registry.build(f"{MODULE}:build", (6, 5, 1), 4, seed=2, hidden=7)
        other = registry.build(f"{MODULE}:build", (6, 5, 1), 4, seed=3, hidden=7)
        self.assertAllEqual(model.get_layer("hidden").kernel, again.get_layer("hidden").kernel)
        self.assertNotAllClose(model.get_layer("hidden").kernel, other.get_layer("hidden").kernel)

    def test_builder_without_seed_is_called_positionally(self):
        model = registry.build(f"{MODULE}:without_seed", (3, 3, 2), 5, seed=1)
        self.assertEqual(tuple(model.outputs[0].shape), (None, 5))

    @parameterized.named_parameters(
        ("no_module", "no_such_module_xyz:build",
         "no module named 'no_such_module_xyz' on the Python path.*PYTHONPATH"),
        ("import_fails", f"{MODULE}_broken:build",
         f"importing the module '{MODULE}_broken' failed.*no_such_dependency_of_the_test"),
        ("no_attribute", f"{MODULE}:missing",
         f"the module '{MODULE}' .*{MODULE}.py.* has no attribute 'missing'"),
        ("not_callable", f"{MODULE}:NOT_CALLABLE", "'NOT_CALLABLE' .* is a int, not a function"),
        ("empty_part", f"{MODULE}:", "named module:function"),
    )
    def test_bad_builder_names(self, name, message):
        with self.assertRaisesRegex(ValueError, message):
            registry.get(name)

    @parameterized.named_parameters(
        ("wrong_classes", "wrong_classes", r"outputs \[\(None, 5\)\]; expected one output "
                                           r"\(None, 4\)"),
        ("wrong_input", "wrong_input", r"inputs \[\(None, 8, 8, 3\)\]; expected one image input "
                                       r"\(None, 6, 6, 1\)"),
        ("not_a_model", "not_a_model", "returned str, not a keras.Model"),
        ("raises", "fails", "the builder raised RuntimeError: out of memory"),
        ("unknown_option_is_passed_on", "build", "raised TypeError.*unexpected keyword.*depth"),
    )
    def test_bad_builder_results(self, function, message):
        options = {"depth": 3} if function == "build" else {}
        with self.assertRaisesRegex(ValueError, f"'{MODULE}:{function}'.*{message}"):
            registry.build(f"{MODULE}:{function}", (6, 6, 1), 4, **options)


class ErrorsTest(parameterized.TestCase, tf.test.TestCase):

    def test_unknown_name_lists_the_registry(self):
        with self.assertRaisesRegex(ValueError, "Unknown model 'resnet19'") as e:
            registry.get("resnet19")
        for name in ("fc2", "lenet", "resnet18", "mobilenet_v2_035", "efficientnet_b0",
                     "vgg_cifar10_strided_relu", "xception", "module:function"):
            self.assertIn(name, str(e.exception))

    @parameterized.named_parameters(
        ("shape", "fc2", dict(input_shape=(32, 32), num_classes=2),
         r"input_shape must be \(height, width, channels\)"),
        ("float_size", "fc2", dict(input_shape=(32.0, 32, 1), num_classes=2), "positive ints"),
        ("too_small", "inception_v3", dict(input_shape=(32, 32, 3)), "at least 75 x 75"),
        ("paper_too_small", "vgg_imagenet_max_pool", dict(input_shape=(16, 16, 3)),
         "at least 32 x 32"),
        ("grayscale_application", "resnet50", dict(input_shape=(32, 32, 1)),
         "takes images of 3 channels.*as RGB"),
        ("classes", "lenet", dict(input_shape=(32, 32, 1), num_classes=0),
         "num_classes must be a positive int"),
        ("seed", "lenet", dict(input_shape=(32, 32, 1), num_classes=2, seed=1.5),
         "seed must be an int"),
        ("option", "resnet18", dict(input_shape=(8, 8, 1), num_classes=2, depth=34),
         r"no option depth: its options are \{'width'"),
        ("no_default_shape", "resnet18", dict(num_classes=2), "no default input_shape"),
        ("application_without_width", "resnet50", dict(width=0.5), "no option width"),
    )
    def test_bad_settings(self, name, kwargs, message):
        with self.assertRaisesRegex(ValueError, f"'{name}'.*{message}"):
            registry.build(name, **kwargs)


if __name__ == "__main__":
    tf.test.main()
