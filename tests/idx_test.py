"""Tests for pipelines.idx (IDX reader/writer) and the embedded Fashion-MNIST subset."""

import gzip
import hashlib
import os
import re
import struct

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from pipelines import idx

_FULL_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
_EMBEDDED_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _readme_sha256s():
    """Returns {file name: sha256} from the '## Files' table of the embedded subset's README."""
    with open(os.path.join(idx.EMBEDDED_FASHION_MNIST_DIR, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("\n## Files\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| (\S+-ubyte\.gz) \|.*\| ([0-9a-f]{64}) \|$", section, re.M))


class IdxTest(parameterized.TestCase, tf.test.TestCase):

    # tf.test.TestCase.test_session is a deprecated context manager, not a test: keep pytest from
    # collecting (and skipping) it.
    test_session = None

    def _path(self, name):
        return os.path.join(self.get_temp_dir(), name)

    def _write_bytes(self, name, data, compress=False):
        path = self._path(name)
        with open(path, "wb") as f:
            f.write(gzip.compress(data, mtime=0) if compress else data)
        return path

    def _assert_error_names(self, error_type, path, fn, *args, regex=None):
        with self.assertRaises(error_type) as cm:
            fn(*args)
        message = str(cm.exception)
        self.assertIn(os.path.basename(path), message)
        if regex is not None:
            self.assertRegex(message, regex)
        return message

    # Round trips.

    @parameterized.product(shape=[(7,), (0,), (3, 5, 4), (2, 28, 28)], ext=["", ".gz"])
    def test_round_trip(self, shape, ext):
        rng = np.random.default_rng(0)
        array = rng.integers(0, 256, size=shape, dtype=np.uint8)
        path = self._path(f"rt-{len(shape)}d-{shape[0]}{ext}")
        idx.write_idx(path, array)
        with open(path, "rb") as f:
            raw = f.read()
        self.assertEqual(raw[:2] == b"\x1f\x8b", ext == ".gz")
        header = gzip.decompress(raw) if ext else raw
        self.assertEqual(header[:4], bytes([0, 0, 8, len(shape)]))
        self.assertEqual(struct.unpack(f">{len(shape)}I", header[4:4 + 4 * len(shape)]), shape)
        got = idx.read_idx(path)
        self.assertEqual(got.dtype, np.uint8)
        self.assertEqual(got.shape, shape)
        self.assertAllEqual(got, array)
        got[...] = 0  # The result is writable.

    def test_compression_detected_from_content_not_name(self):
        array = np.arange(12, dtype=np.uint8).reshape(3, 4)
        gz_named_raw = self._path("raw-but-named.gz")
        idx.write_idx(gz_named_raw, array, compress=False)
        raw_named_gz = self._path("gz-but-named-raw")
        idx.write_idx(raw_named_gz, array, compress=True)
        self.assertAllEqual(idx.read_idx(gz_named_raw), array)
        self.assertAllEqual(idx.read_idx(raw_named_gz), array)

    def test_gzip_output_is_deterministic(self):
        array = np.arange(300, dtype=np.uint16).astype(np.uint8)
        a, b = self._path("det-a.gz"), self._path("det-b.gz")
        idx.write_idx(a, array)
        idx.write_idx(b, array)
        with open(a, "rb") as fa, open(b, "rb") as fb:
            self.assertEqual(fa.read(), fb.read())

    def test_write_rejects_non_uint8(self):
        with self.assertRaisesRegex(TypeError, "uint8"):
            idx.write_idx(self._path("f.idx"), np.zeros(3, np.float32))
        with self.assertRaisesRegex(ValueError, "dimensions"):
            idx.write_idx(self._path("s.idx"), np.uint8(3))

    # The embedded subset.

    @parameterized.parameters(("train", 400), ("test", 100))
    def test_embedded_subset(self, split, per_class):
        images, labels = idx.load_mnist_split(idx.EMBEDDED_FASHION_MNIST_DIR, split)
        self.assertEqual(images.shape, (10 * per_class, 28, 28))
        self.assertEqual(labels.shape, (10 * per_class,))
        self.assertEqual(images.dtype, np.uint8)
        self.assertEqual(labels.dtype, np.uint8)
        self.assertAllEqual(np.bincount(labels, minlength=10), [per_class] * 10)
        self.assertEqual(labels[0], 9)  # Original example 0 of both splits is an ankle boot.
        self.assertGreater(images.max(), 200)  # Real images, not blanks.

    def test_embedded_subset_sha256_matches_readme(self):
        expected = _readme_sha256s()
        self.assertCountEqual(expected.keys(), _EMBEDDED_FILES)
        for name in _EMBEDDED_FILES:
            with open(os.path.join(idx.EMBEDDED_FASHION_MNIST_DIR, name), "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), expected[name], name)

    def test_embedded_subset_has_license(self):
        with open(os.path.join(idx.EMBEDDED_FASHION_MNIST_DIR, "LICENSE"), encoding="utf-8") as f:
            text = f.read()
        self.assertIn("MIT License", text)
        self.assertIn("Zalando SE", text)

    @parameterized.parameters("train", "test")
    def test_embedded_first_image_matches_full_dataset(self, split):
        if not os.path.isdir(_FULL_FASHION_MNIST_DIR):
            self.skipTest(f"{_FULL_FASHION_MNIST_DIR} not installed (apt-get install "
                          "dataset-fashion-mnist)")
        prefix = "train" if split == "train" else "t10k"
        full_labels = idx.read_idx(
            os.path.join(_FULL_FASHION_MNIST_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
        full_images = idx.read_idx(
            os.path.join(_FULL_FASHION_MNIST_DIR, f"{prefix}-images-idx3-ubyte.gz"))
        images, labels = idx.load_mnist_split(idx.EMBEDDED_FASHION_MNIST_DIR, split)
        # The subset keeps original order, and original example 0 is in it.
        self.assertAllEqual(images[0], full_images[0])
        self.assertEqual(labels[0], full_labels[0])
        # The first example of each class is the first one in the full split too.
        for c in range(10):
            self.assertAllEqual(images[np.argmax(labels == c)],
                                full_images[np.argmax(full_labels == c)])

    # Bad inputs.

    def test_missing_file(self):
        path = self._path("does-not-exist-idx1-ubyte")
        msg = self._assert_error_names(FileNotFoundError, path, idx.read_idx, path)
        self.assertIn("dataset-fashion-mnist", msg)

    @parameterized.named_parameters(
        ("nonzero_first_bytes", bytes([1, 0, 8, 1]), "first two bytes"),
        ("float_type_code", bytes([0, 0, 0x0D, 1]), "0x0d"),
        ("unknown_type_code", bytes([0, 0, 0x42, 1]), "0x42"),
        ("zero_dims", bytes([0, 0, 8, 0]), "0 dimensions"),
    )
    def test_bad_magic(self, magic, regex):
        for compress in (False, True):
            path = self._write_bytes(f"bad-magic-{compress}", magic + struct.pack(">I", 3) + b"abc",
                                     compress)
            msg = self._assert_error_names(ValueError, path, idx.read_idx, path, regex=regex)
            self.assertIn(f"0x{magic.hex()}", msg)

    def test_too_short_for_header(self):
        path = self._write_bytes("short", b"\x00\x00")
        self._assert_error_names(ValueError, path, idx.read_idx, path, regex="too short")
        path = self._write_bytes("short-dims", bytes([0, 0, 8, 3]) + struct.pack(">I", 5))
        self._assert_error_names(ValueError, path, idx.read_idx, path, regex="header")

    @parameterized.parameters(False, True)
    def test_truncated_payload(self, compress):
        data = bytes([0, 0, 8, 2]) + struct.pack(">II", 4, 5) + bytes(19)
        path = self._write_bytes(f"truncated-{compress}", data, compress)
        self._assert_error_names(ValueError, path, idx.read_idx, path,
                                 regex=r"truncated.*20 bytes.*19 bytes")

    @parameterized.parameters(False, True)
    def test_trailing_bytes(self, compress):
        data = bytes([0, 0, 8, 1]) + struct.pack(">I", 6) + bytes(8)
        path = self._write_bytes(f"trailing-{compress}", data, compress)
        self._assert_error_names(ValueError, path, idx.read_idx, path,
                                 regex=r"trailing bytes.*6 bytes.*8 bytes")

    @parameterized.named_parameters(
        ("cut_stream", lambda gz: gz[:len(gz) // 2]),
        ("bad_crc", lambda gz: gz[:-8] + bytes(4) + gz[-4:]),
        ("garbage_body", lambda gz: gz[:10] + b"\xff" * 40),
        ("trailing_junk", lambda gz: gz + b"junk"),
    )
    def test_corrupt_gzip(self, corrupt):
        data = bytes([0, 0, 8, 1]) + struct.pack(">I", 1000) + bytes(range(250)) * 4
        path = self._write_bytes("corrupt.gz", corrupt(gzip.compress(data, mtime=0)))
        self._assert_error_names(ValueError, path, idx.read_idx, path, regex="gzip")

    def test_directory_is_not_a_file(self):
        path = self._path("a-directory")
        os.makedirs(path, exist_ok=True)
        self._assert_error_names(ValueError, path, idx.read_idx, path)

    # load_mnist_split.

    def _mnist_dir(self, name, images, labels, prefix="train", ext=".gz"):
        directory = self._path(name)
        os.makedirs(directory, exist_ok=True)
        idx.write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte{ext}"), images)
        idx.write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{ext}"), labels)
        return directory

    @parameterized.product(split=["train", "test"], ext=["", ".gz"])
    def test_load_split_raw_and_gz(self, split, ext):
        images = np.arange(3 * 28 * 28, dtype=np.int64).astype(np.uint8).reshape(3, 28, 28)
        labels = np.array([0, 9, 4], np.uint8)
        prefix = "train" if split == "train" else "t10k"
        directory = self._mnist_dir(f"ok-{split}{ext}", images, labels, prefix, ext)
        got_images, got_labels = idx.load_mnist_split(directory, split)
        self.assertAllEqual(got_images, images)
        self.assertAllEqual(got_labels, labels)

    def test_load_split_count_mismatch(self):
        directory = self._mnist_dir("mismatch", np.zeros((3, 28, 28), np.uint8),
                                    np.zeros(4, np.uint8))
        msg = self._assert_error_names(ValueError, "train-images-idx3-ubyte.gz",
                                       idx.load_mnist_split, directory, "train",
                                       regex="3 images.*4 labels")
        self.assertIn("train-labels-idx1-ubyte.gz", msg)

    def test_load_split_label_out_of_range(self):
        directory = self._mnist_dir("bad-label", np.zeros((3, 28, 28), np.uint8),
                                    np.array([1, 10, 2], np.uint8))
        self._assert_error_names(ValueError, "train-labels-idx1-ubyte.gz", idx.load_mnist_split,
                                 directory, "train", regex="10 at index 1")

    def test_load_split_wrong_image_shape(self):
        directory = self._mnist_dir("bad-shape", np.zeros((3, 32, 32), np.uint8),
                                    np.zeros(3, np.uint8))
        self._assert_error_names(ValueError, "train-images-idx3-ubyte.gz", idx.load_mnist_split,
                                 directory, "train", regex=r"\[3, 32, 32\]")

    def test_load_split_missing_files(self):
        directory = self._path("empty-dir")
        os.makedirs(directory, exist_ok=True)
        self._assert_error_names(FileNotFoundError, "t10k-images-idx3-ubyte.gz",
                                 idx.load_mnist_split, directory, "test")
        missing_dir = self._path("no-such-dir")
        self._assert_error_names(FileNotFoundError, missing_dir, idx.load_mnist_split,
                                 missing_dir, "test")

    def test_load_split_bad_split_name(self):
        with self.assertRaisesRegex(ValueError, "validation"):
            idx.load_mnist_split(idx.EMBEDDED_FASHION_MNIST_DIR, "validation")

    def test_load_split_names_corrupt_file(self):
        directory = self._mnist_dir("corrupt-in-split", np.zeros((2, 28, 28), np.uint8),
                                    np.zeros(2, np.uint8))
        labels_path = os.path.join(directory, "train-labels-idx1-ubyte.gz")
        with open(labels_path, "rb") as f:
            gz = f.read()
        with open(labels_path, "wb") as f:
            f.write(gz[:-3])
        self._assert_error_names(ValueError, labels_path, idx.load_mnist_split, directory, "train")


if __name__ == "__main__":
    tf.test.main()
