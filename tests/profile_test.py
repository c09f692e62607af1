"""Tests of `deform_tf.profile` on non-VGG models against a float64 numpy evaluation, and of its
input conventions, default deformation, selections, undefined points and summary."""

import itertools
import os
import re
import warnings

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

import deform_tf
from deform_tf import diffeo
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
    """Per point: (cosine sensitivity, Euclidean sensitivity, R_f, D_f, G_f), in float64."""
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
        results.append((cosine, euclidean, d_f / g_f, d_f, g_f))
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
        self.assertEqual([r.point.name for r in rows],
                         ["input", "conv1", "pool1", "down2", "relu2", "logits"])
        deformed = _deform(images)
        noisy = images + sensitivity.matched_gaussian_noise(
            tf.constant(images), deformed, (3, 4))
        expected = _float64_profile(self.runner.rep_model, images, deformed, noisy)
        got = np.array([[r.sensitivity_cosine, r.sensitivity_euclidean, r.relative_stability,
                         r.deformation_stability, r.noise_stability] for r in rows])
        self.assertAllClose(got, expected, rtol=1e-4, atol=0)
        self.assertEqual({r.model for r in rows}, {"base"})
        self.assertEqual([r.point.relative_depth for r in rows][0], 0.0)
        self.assertEqual([r.point.relative_depth for r in rows][-1], 1.0)

    def test_preprocess_is_applied_after_the_deformation_to_every_group(self):
        # The same network with a nonlinear preprocessing as its first layer: measured at the
        # same layers, both must agree (deformation and noise act on the raw pixels).
        inputs = keras.Input([16, 16, 3])
        wrapped = keras.Model(inputs, self.model(keras.layers.Lambda(tf.sqrt)(inputs)))
        layers = ["conv1", "pool1", "relu2", "logits"]
        images = _images()
        hooked = profile.profile(self.model, images, _deform, layers=layers, preprocess=tf.sqrt)
        inside = profile.profile(wrapped, images, _deform, layers=layers, preprocess="none")
        for key in ("sensitivity_cosine", "sensitivity_euclidean", "relative_stability"):
            self.assertAllClose([getattr(r, key) for r in hooked],
                                [getattr(r, key) for r in inside], rtol=1e-5, msg=key)
        plain = profile.profile(self.model, images, _deform, layers=layers, preprocess=None)
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
        rows = profile.profile(model, _images(), _deform, batch_size=3, preprocess="none")
        self.assertEqual([(r.point.height, r.point.width, r.point.channels) for r in rows],
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
        from_file = profile.profile(path, images, _deform, layers=["relu2"], preprocess="none")
        direct = profile.profile(self.model, images, _deform, layers=["relu2"], preprocess="none")
        self.assertAllClose(from_file[0].sensitivity_cosine, direct[0].sensitivity_cosine,
                            rtol=1e-5)
        self.assertEqual(from_file[0].model, path)
        self.assertIsNone(representations.declared_measured_layers(self.model))


def _rescaled(name="rescaled"):
    """The `_base` network behind a leading Rescaling(1 / 255): it states its convention."""
    inputs = keras.Input([16, 16, 3])
    x = keras.layers.Rescaling(1 / 255, name="to_unit")(inputs)
    return keras.Model(inputs, _base()(x), name=name)


class InputConventionTest(parameterized.TestCase, tf.test.TestCase):

    def test_a_model_that_states_nothing_is_refused_with_the_choices(self):
        with self.assertRaisesRegex(ValueError, "does not say which input convention") as e:
            profile.profile(_base(), _images(), _deform)
        for word in ("none", "unit", "caffe", "tf", "torch", "training pipeline"):
            self.assertIn(word, str(e.exception))

    def test_unit_by_name_equals_pixels_scaled_beforehand(self):
        # TPS warps and the matched noise are linear in the intensities, so measuring x with
        # "unit" (x / 255 after the deformation) equals measuring x / 255 as it is.
        keras.utils.set_random_seed(2)
        model, images = _base(), _images()
        layers = ["class:MaxPooling2D", "re:^relu2$", "logits"]
        named = profile.profile(model, images, _deform, layers=layers, preprocess="unit")
        scaled = profile.profile(model, images / 255, _deform, layers=layers, preprocess="none")
        self.assertEqual([r.point.name for r in named], ["pool1", "relu2", "logits"])
        for key in profile.MEASURES:
            self.assertAllClose([getattr(r, key) for r in named],
                                [getattr(r, key) for r in scaled], rtol=2e-4, msg=key)

    def test_keras_applications_modes_by_name(self):
        pixels = tf.constant([[[[0.0, 127.5, 255.0]]]])
        self.assertAllClose(profile.named_preprocess("tf").fn(pixels), [[[[-1.0, 0.0, 1.0]]]])
        # caffe: RGB -> BGR minus the ImageNet BGR mean (103.939, 116.779, 123.68).
        self.assertAllClose(profile.named_preprocess("caffe").fn(pixels),
                            [[[[255.0 - 103.939, 127.5 - 116.779, 0.0 - 123.68]]]], rtol=1e-5)
        self.assertAllClose(profile.named_preprocess("torch").fn(pixels),
                            [[[[-0.485 / 0.229, (0.5 - 0.456) / 0.224, (1 - 0.406) / 0.225]]]],
                            rtol=1e-4)
        with self.assertRaisesRegex(ValueError, "Unknown preprocess 'zscore'.*unit"):
            profile.named_preprocess("zscore")

    def test_leading_rescaling_means_pixels_as_they_are(self):
        keras.utils.set_random_seed(3)
        model = _rescaled()
        convention = profile.input_convention(model)
        self.assertEqual(convention.name, "model")
        self.assertIn("to_unit", convention.description)
        images, layers = _images(), ["relu2", "logits"]
        auto = profile.profile(model, images, _deform, layers=layers)
        inner = model.layers[-1]
        explicit = profile.profile(inner, images, _deform, layers=layers, preprocess="unit")
        for key in profile.MEASURES:
            self.assertAllClose([getattr(r, key) for r in auto],
                                [getattr(r, key) for r in explicit], rtol=2e-4, msg=key)

    def test_normalization_adapted_to_unit_pixels_is_refused(self):
        inputs = keras.Input([16, 16, 3])
        norm = keras.layers.Normalization(mean=[0.3, 0.3, 0.3], variance=[0.1, 0.1, 0.1])
        model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(norm(inputs)))
        with self.assertRaisesRegex(ValueError, "within \\[-1, 1\\].*\\[0, 1\\]"):
            profile.input_convention(model)
        pixels = keras.layers.Normalization(mean=[120.0] * 3, variance=[3000.0] * 3)
        model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(pixels(inputs)))
        self.assertEqual(profile.input_convention(model).name, "model")


class DefaultDeformationTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        # The paper's two settings, then the documented rule around and between them.
        (32, 32, 3, 2.0), (224, 224, 5, 10.0), (28, 28, 3, 1.75), (16, 40, 3, 1.0),
        (128, 128, 4, 6.0), (56, 56, 3, 3.0), (200, 224, 5, 9.0), (448, 448, 5, 20.0))
    def test_paper_settings_by_image_size(self, height, width, grid, strength):
        self.assertEqual(profile.default_tps(height, width), (grid, strength))

    def test_profile_without_deformation_uses_the_sized_default(self):
        model, images = _base(), _images()
        by_default = profile.profile(model, images, layers=["relu2"], preprocess="none")
        # The documented seeds of a seed-0 measurement: deformation [0, 1000003], noise (0, 7).
        given = profile.profile(model, images, lambda x: deform_tf.random_tps_deformation(
            x, 3, 1.0, tf.constant([0, 1000003])), layers=["relu2"], preprocess="none",
            noise_seed=(0, 7))
        self.assertEqual(by_default, given)
        settings = profile.Deformation().settings(16, 16)
        self.assertEqual((settings["grid_size"], settings["strength"]), (3, 1.0))
        self.assertTrue(settings["sized_to_image"])

    @parameterized.parameters(2, 5)
    def test_diffeo_cutoff_reaches_the_temperature(self, cutoff):
        deformation = profile.Deformation("diffeo", cutoff=cutoff)
        # The matched temperature at this cutoff, for the image size's default TPS (3, 1 px).
        self.assertEqual(deformation.temperature_for(16, 16),
                         diffeo.temperature_matching_tps(16, 16, 3, 1.0, cutoff))
        self.assertEqual(deformation.settings(16, 16)["cutoff"], cutoff)

    def test_large_deformation_warns(self):
        model, images = _base(), _images()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            profile.profile(model, images, lambda x: deform_tf.random_tps_deformation(
                x, 3, 8.0, tf.constant([0, 1])), layers=["input"], preprocess="none")
            profile.profile(model, images, layers=["input"], preprocess="none")
        large = [w for w in caught if issubclass(w.category, profile.LargeDeformationWarning)]
        self.assertLen(large, 1)
        self.assertIn("too large", str(large[0].message))


class UndefinedPointTest(tf.test.TestCase):

    def _model(self):
        """A point whose output is the same for every image (zero kernel: the bias)."""
        keras.utils.set_random_seed(4)
        inputs = keras.Input([16, 16, 3])
        x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
        const = keras.layers.Conv2D(2, 1, kernel_initializer="zeros", bias_initializer="ones",
                                    name="constant")(x)
        return keras.Model(inputs, [x, const])

    def test_undefined_point_is_none_with_a_note_and_one_warning(self):
        model, images = self._model(), _images()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = profile.profile(model, images, _deform, layers=["conv", "constant"],
                                   preprocess="none")
        self.assertEqual([w.category for w in caught], [profile.UndefinedPointWarning])
        self.assertIn("'constant'", str(caught[0].message))
        constant = rows[1]
        for key in profile.MEASURES:
            self.assertIsNone(getattr(constant, key), key)
        self.assertIn("same for all 10 images", constant.note)
        self.assertEqual(rows[0].note, "")
        # The defined point is measured as when measured alone.
        alone = profile.profile(model, images, _deform, layers=["conv"], preprocess="none")
        self.assertEqual(rows[0], alone[0])
        self.assertIn("undefined", profile.format_summary(rows))

    def test_identical_images_are_refused(self):
        with self.assertRaisesRegex(ValueError, "all the same"):
            profile.profile(_base(), np.ones((4, 16, 16, 3), np.float32), _deform,
                            preprocess="none")


class SummaryTest(tf.test.TestCase):

    def test_summary_picks_input_largest_last_feature_map_and_output(self):
        rows = [profile.ProfileRow("m", representations.Point(name, k, k / 4, h, h, 2, kind),
                                   cos, 0.5, rf, 0.1, 0.1)
                for k, (name, h, kind, cos, rf) in enumerate([
                    ("input", 8, "InputLayer", 0.1, 1.0), ("a", 8, "ReLU", 0.3, 0.8),
                    ("b", 4, "ReLU", 0.2, 0.5), ("gap", 1, "GlobalAveragePooling2D", 0.25, 0.4),
                    ("out", 1, "Dense", None, None)])]
        picked = {what: row.point.name for what, row in profile.summary(rows)["m"]}
        self.assertEqual(picked, {"input": "input", "largest": "a", "last feature map": "b",
                                  "output": "out"})
        # A last point that is a feature map is the last feature map, not listed twice.
        self.assertEqual([what for what, _ in profile.summary(rows[:3])["m"]],
                         ["input", "largest", "last feature map"])
        text = profile.format_summary(rows, {"m": "preprocess unit"})
        self.assertIn("m  (preprocess unit)", text)
        self.assertRegex(text, r"output +out +1x1x2 +undefined +undefined")
        self.assertIn("Lower = more stable", text)


class RecordTest(tf.test.TestCase):

    def test_a_row_is_written_flat_with_the_point_inline_in_the_published_columns(self):
        # The header of the published profile (docs/profile/profile.csv), in its order.
        self.assertEqual(",".join(profile.COLUMNS),
                         "model,layer,index,relative_depth,height,width,channels,layer_type,"
                         "sensitivity_cosine,sensitivity_euclidean,relative_stability,"
                         "deformation_stability,noise_stability,note")
        point = representations.Point("block1_pool", 3, 0.25, 8, 6, 64, "MaxPooling2D")
        row = profile.ProfileRow("m", point, 0.5, 1.5, None, 0.25, 0.125, note="why")
        self.assertEqual(list(row.record().items()), [
            ("model", "m"), ("layer", "block1_pool"), ("index", 3), ("relative_depth", 0.25),
            ("height", 8), ("width", 6), ("channels", 64), ("layer_type", "MaxPooling2D"),
            ("sensitivity_cosine", 0.5), ("sensitivity_euclidean", 1.5),
            ("relative_stability", None), ("deformation_stability", 0.25),
            ("noise_stability", 0.125), ("note", "why")])

class SelectionTest(tf.test.TestCase):

    def test_parse_layers_is_what_the_command_line_and_python_share(self):
        selection = profile.parse_layers(["a,b", "class:ReLU", "re:block_(1|2),x"])
        self.assertEqual(selection[:2], ["a", "b"])
        self.assertIs(selection[2], keras.layers.ReLU)
        self.assertEqual(selection[3].pattern, "block_(1|2),x")
        self.assertIsNone(profile.parse_layers(None))
        with self.assertRaisesRegex(ValueError, "'Nope' is not a keras.layers class"):
            profile.parse_layers(["class:Nope"])
        with self.assertRaisesRegex(ValueError, "bad regular expression"):
            profile.parse_layers(["re:("])

    def test_text_and_object_selectors_select_the_same_points(self):
        model = _base()
        runner_text = sensitivity.RepresentationRunner(
            model, layers=["class:MaxPooling2D", "re:^(conv1|relu2)$"])
        runner_objects = sensitivity.RepresentationRunner(
            model, layers=[keras.layers.MaxPooling2D, re.compile("^(conv1|relu2)$")])
        self.assertEqual(runner_text.names, runner_objects.names)
        self.assertEqual(runner_text.names, ["conv1", "pool1", "relu2"])


if __name__ == "__main__":
    tf.test.main()
