"""Tests of `launch.profile_lib` (models, images, deformations) and of `python -m launch.profile`
end to end in subprocesses: a tiny .keras model on a folder of PNGs, reruns, bad input."""

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

from deform_tf import model_io
from deform_tf import models
from launch import profile_lib
from pipelines import cifar10

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


def _tiny_keras_model(path):
    inputs = keras.Input([16, 16, 3])
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inputs)
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
        with self.assertRaisesRegex(ValueError, "holds 4 images.*--num_images=5"):
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
        self.assertIn("mobilenet_v2.preprocess_input", m.preprocess_name)
        self.assertAllClose(m.preprocess(tf.constant([[0.0, 255.0]])), [[-1.0, 1.0]])

    def test_paper_vgg_and_its_normalization(self):
        m = profile_lib.resolve_model("vgg_mnist_avg_pool", preprocess="auto")
        self.assertEqual(m.image_shape, (32, 32, 1))
        self.assertEqual(m.model.name, "vgg_mnist_avg_pool")
        self.assertIn("mnist", m.preprocess_name)
        none = profile_lib.resolve_model("vgg_cifar10_strided", image_size=16, preprocess="none")
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
        self.assertEqual(profile_lib.resolve_model(path).image_shape, (16, 16, 3))
        with self.assertRaisesRegex(ValueError, "16x16"):
            profile_lib.resolve_model(path, image_size=32)
        with self.assertRaisesRegex(ValueError, "--weights applies to model names"):
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
        self.assertIn("cifar10", m.preprocess_name)
        self.assertAllClose(m.preprocess(tf.fill([1, 1, 1, 3], 255.0)),
                            cifar10.normalize(tf.ones([1, 1, 1, 3])))

    def test_parse_layers(self):
        selection = profile_lib.parse_layers(["a,b", "class:ReLU", "re:block_(1|2),x"])
        self.assertEqual(selection[:2], ["a", "b"])
        self.assertIs(selection[2], keras.layers.ReLU)
        self.assertEqual(selection[3].pattern, "block_(1|2),x")
        self.assertIsNone(profile_lib.parse_layers(None))
        with self.assertRaisesRegex(ValueError, "Nope"):
            profile_lib.parse_layers(["class:Nope"])

    def test_deformations(self):
        images = tf.zeros([2, 16, 16, 1]) + tf.range(16, dtype=tf.float32)[:, None]
        tps = profile_lib.Deformation("tps", 3, 2.0).function(16, 16)(images)
        diffeo = profile_lib.Deformation("diffeo", 3, 2.0, cutoff=3).function(16, 16)(images)
        self.assertEqual(tps.shape, images.shape)
        self.assertEqual(diffeo.shape, images.shape)
        self.assertNotAllClose(diffeo, images)
        # Same RMS displacement as the TPS deformation by default; a given T is kept.
        self.assertGreater(profile_lib.Deformation("diffeo", 3, 2.0).temperature_for(16, 16), 0)
        self.assertEqual(profile_lib.Deformation("diffeo", temperature=0.01).temperature_for(
            16, 16), 0.01)


class CommandLineTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.model = _tiny_keras_model(os.path.join(self.get_temp_dir(), "tiny.keras"))
        self.images = _png_folder(os.path.join(self.get_temp_dir(), "pngs"), constant=False)

    def test_end_to_end_writes_every_output_and_keeps_them_on_rerun(self):
        out = os.path.join(self.get_temp_dir(), "prof")
        args = [f"--model={self.model},vgg_cifar10_avg_pool", f"--images={self.images}",
                "--num_images=4", "--chunk_size=3", "--image_size=16", f"--output_dir={out}"]
        # --image_size=16 applies to both (the .keras model's own size, the VGG net's input).
        result = run_profile(args)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn("forward passes", result.stderr)  # the progress bar
        with open(os.path.join(out, "profile.csv")) as f:
            rows = list(csv.DictReader(f))
        for column in ("model", "layer", "index", "relative_depth", "height", "width",
                       "channels", "sensitivity_cosine", "sensitivity_euclidean",
                       "relative_stability"):
            self.assertIn(column, rows[0])
        tiny = [r for r in rows if r["model"] == self.model]
        self.assertEqual([r["layer"] for r in tiny], ["input", "conv", "pool", "logits"])
        self.assertLen([r for r in rows if r["model"] == "vgg_cifar10_avg_pool"], 13)
        self.assertAllClose(float(tiny[0]["relative_stability"]), 1.0, rtol=1e-4)
        with open(os.path.join(out, "profile.json")) as f:
            saved = json.load(f)
        self.assertEqual(saved["settings"]["num_images"], 4)
        self.assertEqual(saved["settings"]["deformation"], "tps")
        self.assertLen(saved["rows"], len(rows))
        self.assertTrue(tf.io.gfile.glob(os.path.join(out, "summaries", "events.*")))
        with open(os.path.join(out, "profile.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

        before = os.path.getmtime(os.path.join(out, "profile.csv"))
        again = run_profile(args)
        self.assertEqual(again.returncode, 2)
        self.assertIn("--overwrite", again.stderr)
        self.assertEqual(os.path.getmtime(os.path.join(out, "profile.csv")), before)

    def test_bad_input_exits_2_and_writes_nothing(self):
        corrupt = os.path.join(self.images, "zz_corrupt.png")
        with open(corrupt, "wb") as f:
            f.write(b"\x89PNG truncated")
        for args, message in [
                ([f"--model={self.model}", f"--images={self.images}", "--num_images=5"],
                 "zz_corrupt.png"),
                (["--model=not_a_net", "--num_images=4"], "Unknown model 'not_a_net'"),
                (["--model=vgg_cifar10_max_pool", "--num_images=1"], "--num_images")]:
            out = os.path.join(self.get_temp_dir(), "never")
            result = run_profile(args + [f"--output_dir={out}"])
            self.assertEqual(result.returncode, 2, result.stderr[-2000:])
            self.assertIn(message, result.stderr)
            self.assertNotIn("Traceback", result.stderr)
            self.assertLen([line for line in result.stderr.splitlines()
                            if re.search(r"launch/profile.py: (error: |flag --)", line)], 1,
                           result.stderr)
            self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    tf.test.main()
