"""Tests of `experiments.profiling` (models, input conventions, images, outputs) and of
`python -m launch.profile` end to end in subprocesses: tiny .keras models on folders of PNGs,
reruns, undefined points, bad input."""

import csv
import json
import os
import re
import subprocess
import sys

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from deform_tf import diffeo
from deform_tf import model_io
from deform_tf import models
from deform_tf import profile
from experiments import profiling as profile_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_png(path, image):
    tf.io.write_file(path, tf.io.encode_png(np.asarray(image, np.uint8)))


def _png_folder(directory, count=4, constant=True):
    """`count` PNGs of different sizes, one grayscale, each of one constant value (or of
    random pixels)."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(count):
        shape = (20 + 4 * k, 30, 1 if k == 0 else 3)
        _write_png(os.path.join(directory, f"img{k}.png"),
                   np.full(shape, 40 * k + 10) if constant else rng.integers(0, 256, shape))
    return directory


def _tiny_keras_model(path, rescaling=False, lambda_layer=False):
    """A tiny model saved to `path`; with `rescaling` it states its input convention (a leading
    Rescaling(1 / 255)); with `lambda_layer` it holds Python code (a Lambda layer)."""
    inputs = x = keras.Input([16, 16, 3])
    if rescaling:
        x = keras.layers.Rescaling(1 / 255, name="to_unit")(x)
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.AveragePooling2D(2, name="pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    keras.Model(inputs, keras.layers.Dense(2, name="logits")(x)).save(path)
    return path


def run_profile(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "launch.profile"] + args, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


class ImagesTest(tf.test.TestCase):

    def test_embedded_fashion_mnist_resized_and_broadcast(self):
        images = profile_lib.load_images(None, 3, (40, 40, 3))
        self.assertEqual(images.shape, (3, 40, 40, 3))
        self.assertAllEqual(images[..., 0], images[..., 2])  # grayscale broadcast
        self.assertBetween(float(images.min()), 0.0, 255.0)
        self.assertGreater(float(images.max()), 100.0)  # pixels in 0..255
        self.assertEqual(profile_lib.load_images("fashion_mnist", 2, (8, 8, 1)).shape,
                         (2, 8, 8, 1))

    def test_folder_of_pngs_sorted_fitted_and_cropped(self):
        folder = _png_folder(os.path.join(self.get_temp_dir(), "pngs"))
        images = profile_lib.load_images(folder, 4, (16, 16, 3))
        self.assertEqual(images.shape, (4, 16, 16, 3))
        # Constant images stay constant through the resize and crop, in file-name order.
        self.assertAllClose(images.reshape(4, -1).mean(axis=1), [10, 50, 90, 130], atol=0.5)
        self.assertAllClose(images.reshape(4, -1).std(axis=1), np.zeros(4), atol=0.5)
        with self.assertRaisesRegex(ValueError, "holds 4 images.*`num_images=5`"):
            profile_lib.load_images(folder, 5, (16, 16, 3))

    def test_imagenet_tfrecords(self):
        path = os.path.join(self.get_temp_dir(), "validation-00000-of-00001")
        with tf.io.TFRecordWriter(path) as writer:
            for k in range(3):
                jpeg = tf.io.encode_jpeg(np.full((30, 40, 3), 60 * k, np.uint8)).numpy()
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                        value=[jpeg])),
                    "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(
                        value=[k + 1])),
                })).SerializeToString())
        images = profile_lib.load_images(os.path.join(self.get_temp_dir(), "validation-*"), 3,
                                         (24, 24, 3))
        self.assertEqual(images.shape, (3, 24, 24, 3))
        self.assertAllClose(images.reshape(3, -1).mean(axis=1), [0, 60, 120], atol=2.0)

    def test_bad_image_sources(self):
        folder = _png_folder(os.path.join(self.get_temp_dir(), "bad"), count=2)
        with open(os.path.join(folder, "img9.png"), "wb") as f:
            f.write(b"not a png")
        with self.assertRaisesRegex(ValueError, "img9.png"):
            profile_lib.load_images(folder, 3, (16, 16, 3))
        empty = os.path.join(self.get_temp_dir(), "empty")
        os.makedirs(empty)
        with self.assertRaisesRegex(FileNotFoundError, "No JPEG or PNG"):
            profile_lib.load_images(empty, 2, (16, 16, 3))
        with self.assertRaisesRegex(FileNotFoundError, "neither a folder"):
            profile_lib.load_images(os.path.join(self.get_temp_dir(), "nowhere"), 2,
                                    (16, 16, 3))


class ModelsAndSettingsTest(parameterized.TestCase, tf.test.TestCase):

    def test_application_with_its_preprocess_input(self):
        m = profile_lib.resolve_model("mobilenet_v2", image_size=32)
        self.assertEqual(m.image_shape, (32, 32, 3))
        self.assertIn("mobilenet_v2.preprocess_input", m.convention.description)
        self.assertAllClose(m.preprocess(tf.constant([[0.0, 255.0]])), [[-1.0, 1.0]])
        self.assertEqual(m.weights, "none (initialization, seed 0)")

    @parameterized.named_parameters(
        # The published per-channel statistics of each data set, on [0, 1] pixels.
        ("cifar10", "vgg_cifar10_max_pool", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        ("imagenet", "vgg_imagenet_avg_pool", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ("fashion_mnist", "vgg_mnist_strided", (0.2860,), (0.3530,)))
    def test_paper_vgg_pipeline_normalization_values(self, name, mean, std):
        m = profile_lib.resolve_model(name, image_size=32)
        self.assertEqual(m.model.name, name)
        pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, len(mean))).astype(
            np.float32)
        self.assertAllClose(m.preprocess(tf.constant(pixels)),
                            (pixels / 255.0 - np.array(mean)) / np.array(std), rtol=1e-5,
                            atol=1e-5)
        none = profile_lib.resolve_model(name, image_size=32, preprocess="none")
        self.assertIsNone(none.preprocess)

    @parameterized.named_parameters(
        ("unknown", dict(spec="resnet5"), ValueError, "Unknown model 'resnet5'"),
        ("missing_weights", dict(spec="mobilenet_v2", weights="/no/such.h5"),
         FileNotFoundError, "no such weights file"),
        ("imagenet_vgg", dict(spec="vgg_cifar10_max_pool", weights="imagenet"), ValueError,
         "no ImageNet weights"),
        ("too_small", dict(spec="inception_v3", image_size=32), ValueError, "at least 75"),
    )
    def test_bad_models(self, kwargs, error, message):
        with self.assertRaisesRegex(error, message):
            profile_lib.resolve_model(**kwargs)

    def test_keras_file_size_must_match(self):
        path = _tiny_keras_model(os.path.join(self.get_temp_dir(), "tiny.keras"))
        m = profile_lib.resolve_model(path, preprocess="unit")
        self.assertEqual(m.image_shape, (16, 16, 3))
        self.assertEqual(m.weights, f"file {path} (its own weights)")
        with self.assertRaisesRegex(ValueError, "16x16"):
            profile_lib.resolve_model(path, image_size=32)
        with self.assertRaisesRegex(ValueError, "`weights` applies to model names"):
            profile_lib.resolve_model(path, weights="imagenet")

    def test_launcher_checkpoint_directory_with_its_normalization(self):
        kwargs = dict(config="cifar10", downsampling="strided", width=0.0625,
                      input_shape=(16, 16, 3), seed=2)
        directory = os.path.join(self.get_temp_dir(), "checkpoints")
        model_io.save_model_config(directory, **kwargs)
        tf.train.CheckpointManager(tf.train.Checkpoint(model=models.vgg(**kwargs)), directory,
                                   1).save()
        m = profile_lib.resolve_model(directory)
        self.assertEqual(m.image_shape, (16, 16, 3))
        self.assertEqual(m.convention.name, "cifar10_pipeline")
        self.assertAllClose(m.preprocess(tf.fill([1, 1, 1, 3], 255.0)),
                            [[[[(1 - 0.4914) / 0.2470, (1 - 0.4822) / 0.2435,
                                (1 - 0.4465) / 0.2616]]]], rtol=1e-5)
        self.assertStartsWith(m.weights, f"checkpoint {directory}")

    def test_keras_file_that_states_no_convention_is_refused_unless_given(self):
        path = _tiny_keras_model(os.path.join(self.get_temp_dir(), "plain.keras"))
        with self.assertRaisesRegex(ValueError, "plain.keras.*does not say.*unit"):
            profile_lib.resolve_model(path)
        stated = _tiny_keras_model(os.path.join(self.get_temp_dir(), "stated.keras"),
                                   rescaling=True)
        self.assertEqual(profile_lib.resolve_model(stated).convention.name, "model")

    def test_file_of_random_bytes_is_said_to_be_no_keras_model(self):
        noise = os.path.join(self.get_temp_dir(), "noise.keras")
        with open(noise, "wb") as f:
            f.write(np.random.default_rng(0).bytes(4000))
        with self.assertRaisesRegex(ValueError, "exists but is not a readable Keras model"):
            profile_lib.resolve_model(noise)

    def test_model_file_with_python_code_needs_unsafe_load(self):
        path = _tiny_keras_model(os.path.join(self.get_temp_dir(), "code.keras"),
                                 rescaling=True, lambda_layer=True)
        with self.assertRaisesRegex(ValueError, "Lambda layer.*pass `unsafe_load=True`") as e:
            profile_lib.resolve_model(path)
        self.assertNotIn("safe_mode", str(e.exception))
        loaded = profile_lib.resolve_model(path, safe_mode=False)
        self.assertIn("double", [layer.name for layer in loaded.model.layers])

    def test_deformations(self):
        images = tf.zeros([2, 16, 16, 1]) + tf.range(16, dtype=tf.float32)[:, None]
        tps = profile.Deformation("tps", 3, 2.0).function(16, 16)(images)
        warped = profile.Deformation("diffeo", 3, 2.0, cutoff=3).function(16, 16)(images)
        self.assertEqual(tps.shape, images.shape)
        self.assertEqual(warped.shape, images.shape)
        self.assertNotAllClose(warped, images)
        # Same RMS displacement as the TPS deformation by default; a given T is kept.
        self.assertGreater(profile.Deformation("diffeo", 3, 2.0).temperature_for(16, 16), 0)
        self.assertEqual(profile.Deformation("diffeo", temperature=0.01).temperature_for(
            16, 16), 0.01)

    def test_output_dir_that_is_a_file_is_refused(self):
        path = os.path.join(self.get_temp_dir(), "a_file")
        with open(path, "w") as f:
            f.write("x")
        with self.assertRaisesRegex(ValueError, "is a file"):
            profile_lib.check_output_dir(path)
        with self.assertRaisesRegex(ValueError, "cannot be created"):
            profile_lib.check_output_dir(os.path.join(path, "below"))
        profile_lib.check_output_dir(os.path.join(self.get_temp_dir(), "new", "dir"))

    def test_summary_tags_hold_no_path(self):
        self.assertEqual(profile_lib.summary_tag("/home/me/models/own net.keras"), "own_net")
        self.assertEqual(profile_lib.summary_tag("runs/cifar/checkpoints/"), "checkpoints")
        self.assertEqual(profile_lib.summary_tag("resnet50"), "resnet50")


def _strict_json(path):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")
    with open(path) as f:
        return json.load(f, parse_constant=refuse)


def _event_tags(directory):
    tags = set()
    for path in tf.io.gfile.glob(os.path.join(directory, "events.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags.update(value.tag for value in event.summary.value)
    return tags


class CommandLineTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.model = _tiny_keras_model(os.path.join(self.get_temp_dir(), "tiny.keras"),
                                       rescaling=True)
        self.images = _png_folder(os.path.join(self.get_temp_dir(), "pngs"), constant=False)

    def test_end_to_end_writes_every_output_and_keeps_them_on_rerun(self):
        out = os.path.join(self.get_temp_dir(), "prof")
        args = [f"--model={self.model},vgg_cifar10_avg_pool", f"--images={self.images}",
                "--num_images=4", "--chunk_size=3", "--image_size=16", f"--output_dir={out}"]
        # --image_size=16 applies to both (the .keras model's own size, the VGG net's input).
        result = run_profile(args)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn("forward passes 12/12 images", result.stderr)  # the progress lines
        self.assertNotIn("\x1b", result.stderr)  # no terminal codes in a redirected log
        self.assertNotIn("us/image", result.stderr)
        self.assertNotIn("np.float64", result.stderr)
        with open(os.path.join(out, "profile.csv")) as f:
            rows = list(csv.DictReader(f))
        for column in profile.COLUMNS:
            self.assertIn(column, rows[0])
        tiny = [r for r in rows if r["model"] == self.model]
        self.assertEqual([r["layer"] for r in tiny], ["input", "conv", "pool", "logits"])
        self.assertLen([r for r in rows if r["model"] == "vgg_cifar10_avg_pool"], 13)
        self.assertAllClose(float(tiny[0]["relative_stability"]), 1.0, rtol=1e-4)
        saved = _strict_json(os.path.join(out, "profile.json"))
        settings = saved["settings"]
        self.assertEqual(settings["num_images"], 4)
        tiny_settings = settings["models"][self.model]
        self.assertEqual(tiny_settings["weights"], f"file {self.model} (its own weights)")
        self.assertEqual(tiny_settings["preprocess"]["name"], "model")
        self.assertEqual(settings["models"]["vgg_cifar10_avg_pool"]["preprocess"]["name"],
                         "cifar10_pipeline")
        # The deformation sized to 16 px images: the paper's 32 px setting scaled.
        self.assertEqual({k: tiny_settings["deformation"][k]
                          for k in ("kind", "grid_size", "strength", "sized_to_image")},
                         {"kind": "tps", "grid_size": 3, "strength": 1.0,
                          "sized_to_image": True})
        self.assertContainsSubset({"python", "numpy", "tensorflow", "keras", "deform_tf"},
                                  settings["versions"])
        self.assertLen(saved["rows"], len(rows))
        tags = _event_tags(os.path.join(out, "summaries"))
        self.assertIn("tiny/sensitivity_cosine", tags)
        self.assertFalse([t for t in tags if self.get_temp_dir() in t], tags)
        with open(os.path.join(out, "profile.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # The summary on stdout: per model, its convention and the four points, and how to read.
        self.assertIn(f"{self.model}  (weights file", result.stdout)
        self.assertRegex(result.stdout, r"last feature map +pool +8x8x3")
        self.assertIn("Lower = more stable", result.stdout)

        before = os.path.getmtime(os.path.join(out, "profile.csv"))
        again = run_profile(args)
        self.assertEqual(again.returncode, 2)
        self.assertIn("--overwrite", again.stderr)
        self.assertEqual(os.path.getmtime(os.path.join(out, "profile.csv")), before)

    def test_undefined_points_are_empty_with_a_note_and_cutoff_sets_the_temperature(self):
        # Images of one grey level each: every input points the same way (cosine undefined),
        # and the deformation leaves them unchanged (G_f = 0: R_f undefined).
        constant = _png_folder(os.path.join(self.get_temp_dir(), "flat"))
        out = os.path.join(self.get_temp_dir(), "flat_prof")
        result = run_profile([f"--model={self.model}", f"--images={constant}", "--num_images=4",
                              "--deformation=diffeo", "--cutoff=2", f"--output_dir={out}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertNotIn("RuntimeWarning", result.stderr)
        self.assertNotIn("nan", result.stdout.lower())
        with open(os.path.join(out, "profile.csv")) as f:
            first = next(csv.DictReader(f))
        self.assertEqual((first["layer"], first["sensitivity_cosine"],
                          first["relative_stability"]), ("input", "", ""))
        self.assertIn("cosine sensitivity undefined", first["note"])
        self.assertLen([line for line in result.stderr.splitlines()
                        if "point 'input'" in line and "undefined" in line], 1)
        saved = _strict_json(os.path.join(out, "profile.json"))
        self.assertIsNone(saved["rows"][0]["sensitivity_cosine"])
        self.assertIn("undefined", result.stdout)
        deformation = saved["settings"]["models"][self.model]["deformation"]
        self.assertEqual(deformation["cutoff"], 2)
        self.assertAllClose(deformation["temperature"],
                            diffeo.temperature_matching_tps(16, 16, 3, 1.0, 2), rtol=1e-6)

    def test_bad_input_exits_2_and_writes_nothing(self):
        corrupt = os.path.join(self.images, "zz_corrupt.png")
        with open(corrupt, "wb") as f:
            f.write(b"\x89PNG truncated")
        plain = _tiny_keras_model(os.path.join(self.get_temp_dir(), "plain.keras"))
        a_file = os.path.join(self.get_temp_dir(), "a_file")
        with open(a_file, "w") as f:
            f.write("keep me")
        for args, message in [
                ([f"--model={self.model}", f"--images={self.images}", "--num_images=5"],
                 "zz_corrupt.png"),
                (["--model=not_a_net", "--num_images=4"], "Unknown model 'not_a_net'"),
                (["--model=vgg_cifar10_max_pool", "--num_images=1"], "--num_images"),
                ([f"--model={plain}", "--num_images=4"], "does not say which input convention")]:
            out = os.path.join(self.get_temp_dir(), "never")
            result = run_profile(args + [f"--output_dir={out}"])
            self.assertEqual(result.returncode, 2, result.stderr[-2000:])
            self.assertIn(message, result.stderr)
            self.assertNotIn("Traceback", result.stderr)
            self.assertNotIn("safe_mode=False", result.stderr)
            self.assertLen([line for line in result.stderr.splitlines()
                            if re.search(r"launch/profile.py: (error: |flag --)", line)], 1,
                           result.stderr)
            self.assertFalse(os.path.exists(out))
        # An existing file as --output_dir: refused before any model is built or measured.
        result = run_profile([f"--model={self.model}", "--num_images=4",
                              f"--output_dir={a_file}"])
        self.assertEqual(result.returncode, 2, result.stderr[-2000:])
        self.assertIn("is a file, not a folder", result.stderr)
        self.assertNotIn("Profiling", result.stderr)
        with open(a_file) as f:
            self.assertEqual(f.read(), "keep me")


if __name__ == "__main__":
    tf.test.main()
