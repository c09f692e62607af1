"""Tests for pipelines.mnist on fake IDX files in the real format, and on the embedded subset."""

import gzip
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from pipelines import idx
from pipelines import mnist

_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _context(num_pipelines, pipeline_id):
    return tf.distribute.InputContext(num_input_pipelines=num_pipelines,
                                      input_pipeline_id=pipeline_id,
                                      num_replicas_in_sync=num_pipelines)


def _as_numpy(dataset):
    images, labels = [], []
    for image, label in dataset:
        images.append(image.numpy())
        labels.append(label.numpy())
    return np.stack(images), np.array(labels)


class MnistTest(parameterized.TestCase, tf.test.TestCase):

    # tf.test.TestCase.test_session is a deprecated context manager, not a test.
    test_session = None

    def _fake_dir(self, name="fake", num_train=24, num_test=12, compress=True, seed=0):
        """Writes the four IDX files (random pixels, labels cycling 9, 8, ..., 0) into a dir."""
        directory = os.path.join(self.get_temp_dir(), name)
        os.makedirs(directory, exist_ok=True)
        rng = np.random.default_rng(seed)
        arrays = {}
        for split, n in (("train", num_train), ("test", num_test)):
            images = rng.integers(0, 256, size=[n, 28, 28], dtype=np.uint8)
            labels = (9 - np.arange(n) % 10).astype(np.uint8)
            suffix = ".gz" if compress else ""
            idx.write_idx(os.path.join(directory, _STEMS[split][0] + suffix), images)
            idx.write_idx(os.path.join(directory, _STEMS[split][1] + suffix), labels)
            arrays[split] = (images, labels)
        return directory, arrays

    def _empty_dir(self, name="empty"):
        directory = os.path.join(self.get_temp_dir(), name)
        os.makedirs(directory, exist_ok=True)
        return directory

    # Reading.

    @parameterized.product(compress=[True, False], split=["train", "test"],
                           dataset=["fashion_mnist", "mnist"])
    def test_load_shapes_values_and_padding(self, compress, split, dataset):
        directory, arrays = self._fake_dir(compress=compress)
        written_images, written_labels = arrays[split]
        ds = mnist.load(split, dataset=dataset, data_dir=directory)
        self.assertEqual(ds.element_spec[0], tf.TensorSpec([32, 32, 1], tf.float32))
        self.assertEqual(ds.element_spec[1], tf.TensorSpec([], tf.int32))
        images, labels = _as_numpy(ds)
        self.assertEqual(images.shape, (len(written_labels), 32, 32, 1))
        self.assertAllEqual(labels, written_labels)
        background = (0.0 - mnist.MEAN[dataset]) / mnist.STD[dataset]
        border = np.ones([32, 32], bool)
        border[2:30, 2:30] = False
        self.assertAllClose(images[:, border, 0], np.full([len(labels), border.sum()], background),
                            atol=1e-6)
        expected = (written_images / 255.0 - mnist.MEAN[dataset]) / mnist.STD[dataset]
        self.assertAllClose(images[:, 2:30, 2:30, 0], expected, atol=1e-5)
        pixels = np.round(mnist.denormalize(images, dataset).numpy() * 255.0)
        self.assertAllEqual(pixels[:, 2:30, 2:30, 0], written_images)

    @parameterized.parameters((28, 0), (32, 2), (33, 2), (40, 6))
    def test_pad_to(self, pad_to, before):
        directory, arrays = self._fake_dir()
        images, _ = _as_numpy(mnist.load("test", data_dir=directory, pad_to=pad_to))
        self.assertEqual(images.shape[1:], (pad_to, pad_to, 1))
        pixels = np.round(mnist.denormalize(images).numpy()[..., 0] * 255.0)
        self.assertAllEqual(pixels[:, before:before + 28, before:before + 28], arrays["test"][0])
        self.assertEqual(pixels.sum(), arrays["test"][0].astype(np.int64).sum())

    def test_bad_pad_to(self):
        directory, _ = self._fake_dir()
        with self.assertRaisesRegex(ValueError, "pad_to"):
            mnist.load("train", data_dir=directory, pad_to=27)

    def test_max_examples(self):
        directory, arrays = self._fake_dir()
        _, labels = _as_numpy(mnist.load("train", data_dir=directory, max_examples=5))
        self.assertAllEqual(labels, arrays["train"][1][:5])

    def test_normalize_round_trip(self):
        pixels = np.arange(256, dtype=np.uint8)
        for dataset in mnist.DATASETS:
            from_uint8 = mnist.normalize(pixels, dataset)
            from_float = mnist.normalize(pixels / np.float32(255.0), dataset)
            self.assertAllClose(from_uint8, from_float, atol=1e-6)
            self.assertAllClose(mnist.denormalize(from_uint8, dataset), pixels / 255.0, atol=1e-6)
        self.assertAllClose(mnist.normalize(np.float32([0.2860]), "fashion_mnist"), [0.0])
        with self.assertRaisesRegex(ValueError, "dataset"):
            mnist.normalize(pixels, "cifar10")

    # Finding the files.

    def test_data_dir_is_used(self):
        directory, _ = self._fake_dir()
        self.assertEqual(mnist.find_mnist_dir(directory), (directory, False))
        self.assertEqual(mnist.find_mnist_dir(idx.EMBEDDED_FASHION_MNIST_DIR),
                         (idx.EMBEDDED_FASHION_MNIST_DIR, True))

    def test_search_paths_in_order_skipping_incomplete(self):
        first, _ = self._fake_dir("first")
        second, _ = self._fake_dir("second")
        os.remove(os.path.join(first, "t10k-labels-idx1-ubyte.gz"))
        for dataset in mnist.DATASETS:
            with self.assertLogs("absl", level="INFO") as logs:
                found = mnist.find_mnist_dir(dataset=dataset,
                                             search_paths=[self._empty_dir(), first, second])
            self.assertEqual(found, (second, False))
            self.assertIn(second, "\n".join(logs.output))
            self.assertNotIn("embedded", "\n".join(logs.output))

    def test_embedded_fallback_only_when_nothing_found_and_logged(self):
        empty = self._empty_dir()
        with self.assertLogs("absl", level="INFO") as logs:
            found = mnist.find_mnist_dir(search_paths=[empty, os.path.join(empty, "missing")])
        self.assertEqual(found, (idx.EMBEDDED_FASHION_MNIST_DIR, True))
        message = "\n".join(logs.output)
        self.assertIn("no fashion-mnist found", message.lower())
        self.assertIn(empty, message)
        self.assertIn("embedded 4000/1000-image subset", message)
        with self.assertLogs("absl", level="INFO") as logs:
            ds = mnist.load("test", search_paths=[empty])
        self.assertIn("embedded", "\n".join(logs.output))
        self.assertEqual(int(ds.cardinality()), 1000)

    def test_default_search_paths_are_the_standard_locations(self):
        self.assertIn("/usr/share/datasets/fashion-mnist", mnist.SEARCH_PATHS["fashion_mnist"])
        self.assertIn("~/.keras/datasets/fashion-mnist", mnist.SEARCH_PATHS["fashion_mnist"])
        self.assertIn("~/.keras/datasets/mnist", mnist.SEARCH_PATHS["mnist"])

    def test_mnist_not_found_suggests_data_dir_and_embedded(self):
        with self.assertRaises(FileNotFoundError) as cm:
            mnist.find_mnist_dir(dataset="mnist", search_paths=[self._empty_dir()])
        self.assertIn("data_dir", str(cm.exception))
        self.assertIn("fashion_mnist", str(cm.exception))

    def test_missing_data_dir_is_an_error_not_a_fallback(self):
        missing = os.path.join(self.get_temp_dir(), "no_such_dir")
        for fn in (mnist.find_mnist_dir, lambda d: mnist.load("train", data_dir=d)):
            with self.assertRaises(FileNotFoundError) as cm:
                fn(missing)
            self.assertIn(missing, str(cm.exception))
            self.assertIn("train-images-idx3-ubyte", str(cm.exception))

    def test_incomplete_data_dir_names_missing_files(self):
        directory, _ = self._fake_dir()
        os.remove(os.path.join(directory, "train-labels-idx1-ubyte.gz"))
        with self.assertRaises(FileNotFoundError) as cm:
            mnist.load("test", data_dir=directory)
        message = str(cm.exception)
        self.assertIn(directory, message)
        self.assertIn("missing train-labels-idx1-ubyte", message)
        self.assertIn("t10k-images-idx3-ubyte", message)

    # Corrupt files raise when the pipeline is built, naming the file.

    def _corrupt(self, directory, stem, data):
        with open(os.path.join(directory, stem + ".gz"), "wb") as f:
            f.write(gzip.compress(data, mtime=0))

    def test_truncated_file(self):
        directory, _ = self._fake_dir()
        path = os.path.join(directory, "train-images-idx3-ubyte.gz")
        with open(path, "rb") as f:
            raw = gzip.decompress(f.read())
        self._corrupt(directory, "train-images-idx3-ubyte", raw[:-100])
        with self.assertRaisesRegex(ValueError, "train-images-idx3-ubyte.gz.*truncated"):
            mnist.load("train", data_dir=directory)

    def test_truncated_gzip_stream(self):
        directory, _ = self._fake_dir()
        path = os.path.join(directory, "t10k-images-idx3-ubyte.gz")
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
        with self.assertRaisesRegex(ValueError, "t10k-images-idx3-ubyte.gz"):
            mnist.load("test", data_dir=directory)

    def test_wrong_magic(self):
        directory, _ = self._fake_dir()
        self._corrupt(directory, "train-labels-idx1-ubyte",
                      b"\x00\x00\x0d\x01" + (24).to_bytes(4, "big") + bytes(96))
        with self.assertRaisesRegex(ValueError, "train-labels-idx1-ubyte.gz.*magic"):
            mnist.load("train", data_dir=directory)

    def test_label_out_of_range(self):
        directory, _ = self._fake_dir()
        labels = np.zeros([12], np.uint8)
        labels[3] = 10
        idx.write_idx(os.path.join(directory, "t10k-labels-idx1-ubyte.gz"), labels)
        with self.assertRaisesRegex(ValueError, "t10k-labels-idx1-ubyte.gz.*outside 0..9"):
            mnist.load("test", data_dir=directory)
        with self.assertRaisesRegex(ValueError, "t10k-labels-idx1-ubyte.gz"):
            mnist.prototypes(data_dir=directory, split="test")

    def test_count_mismatch(self):
        directory, _ = self._fake_dir()
        idx.write_idx(os.path.join(directory, "train-labels-idx1-ubyte.gz"),
                      np.zeros([23], np.uint8))
        with self.assertRaisesRegex(ValueError, "count mismatch.*train-images.*train-labels"):
            mnist.load("train", data_dir=directory)

    # Sharding.

    def test_sharding_gives_disjoint_covering_halves(self):
        directory, arrays = self._fake_dir(num_train=25)
        full, full_labels = _as_numpy(mnist.load("train", data_dir=directory))
        shards = [_as_numpy(mnist.load("train", data_dir=directory, input_context=_context(2, i)))
                  for i in range(2)]
        self.assertEqual([len(s[1]) for s in shards], [13, 12])
        self.assertEqual([int(mnist.load("train", data_dir=directory,
                                         input_context=_context(2, i)).cardinality())
                          for i in range(2)], [13, 12])
        for i, (images, labels) in enumerate(shards):
            self.assertAllEqual(images, full[i::2])
            self.assertAllEqual(labels, full_labels[i::2])
        written = {arrays["train"][0][k].tobytes() for k in range(25)}
        pixels = [np.round(mnist.denormalize(s[0]).numpy()[:, 2:30, 2:30, 0] * 255)
                  .astype(np.uint8) for s in shards]
        seen = [{p.tobytes() for p in shard} for shard in pixels]
        self.assertEmpty(seen[0] & seen[1])
        self.assertEqual(seen[0] | seen[1], written)

    # Prototypes.

    def test_prototypes_are_first_image_of_each_class(self):
        directory, arrays = self._fake_dir()
        images, labels = mnist.prototypes(data_dir=directory)
        self.assertEqual(images.shape, (10, 32, 32, 1))
        self.assertEqual(images.dtype, np.float32)
        self.assertAllEqual(labels, np.arange(10))
        written_images, written_labels = arrays["train"]
        for c in range(10):
            first = np.flatnonzero(written_labels == c)[0]
            self.assertAllEqual(images[c, 2:30, 2:30, 0], written_images[first] / np.float32(255))
        self.assertEqual(images[:, :2].max(), 0.0)
        images, labels = mnist.prototypes(data_dir=directory, num_classes=3, pad_to=28)
        self.assertEqual(images.shape, (3, 28, 28, 1))

    def test_prototypes_missing_class(self):
        directory, _ = self._fake_dir(num_test=5)  # test labels 9..5 only
        with self.assertRaisesRegex(ValueError, "no example of class 0"):
            mnist.prototypes(data_dir=directory, split="test")

    def test_embedded_prototypes(self):
        images, labels = mnist.prototypes(data_dir=idx.EMBEDDED_FASHION_MNIST_DIR)
        first_images, first_labels = idx.load_mnist_split(idx.EMBEDDED_FASHION_MNIST_DIR, "train")
        self.assertEqual(first_labels[0], 9)  # the first example is the ankle boot
        self.assertAllEqual(images[9, 2:30, 2:30, 0], first_images[0] / np.float32(255))
        self.assertBetween(float(images.min()), 0.0, 0.0)
        self.assertBetween(float(images.max()), 0.9, 1.0)


if __name__ == "__main__":
    tf.test.main()
