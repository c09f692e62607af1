"""Tests for pipelines.cifar10 on fake CIFAR-10 data in the real on-disk formats.

The fakes: the binary release (a few 3073-byte records per batch file), TFRecord shards written
by launch.convert, and a tensorflow-datasets `cifar10` prepared offline from the fake binary
release by the real TFDS builder (its download step is replaced by the fake directory).
"""

import os
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from launch import convert
from pipelines import cifar10
from pipelines import core
from pipelines import order
from pipelines import tfrecord

_RECORDS_PER_FILE = {"train": 3, "test": 5}


def _write_binary_release(root, seed=0):
    """Writes a fake cifar-10-batches-bin under `root`; returns {split: (images HWC, labels)}."""
    batches = os.path.join(root, cifar10.BINARY_DIR_NAME)
    os.makedirs(batches, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = {}
    for split, names in cifar10.BINARY_FILES.items():
        images, labels = [], []
        for name in names:
            n = _RECORDS_PER_FILE[split]
            chw = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
            lab = rng.integers(0, 10, (n,), dtype=np.uint8)
            records = np.concatenate([lab[:, None], chw.reshape(n, -1)], axis=1)
            with open(os.path.join(batches, name), "wb") as f:
                f.write(records.tobytes())
            images.append(chw.transpose(0, 2, 3, 1))
            labels.append(lab)
        data[split] = (np.concatenate(images), np.concatenate(labels))
    with open(os.path.join(batches, "batches.meta.txt"), "w") as f:
        f.write("\n".join(f"class{i}" for i in range(10)) + "\n")
    return data


def _prepare_tfds(binary_root, data_dir):
    """Prepares tensorflow-datasets cifar10 in `data_dir` from a fake binary release, offline."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("cifar10", data_dir=data_dir)
    download_manager = mock.MagicMock()
    download_manager.download_and_extract.return_value = binary_root
    with mock.patch.object(tfds.core.DatasetBuilder, "_make_download_manager",
                           return_value=download_manager):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
            compute_stats=tfds.download.ComputeStatsMode.SKIP))


def _context(num, index):
    return tf.distribute.InputContext(num_input_pipelines=num, input_pipeline_id=index)


def _pixels(normalized):
    """uint8-valued int32 pixels of normalized images (inverse of cifar10.normalize)."""
    return np.round(cifar10.denormalize(normalized).numpy() * 255.0).astype(np.int32)


class Cifar10Test(parameterized.TestCase, tf.test.TestCase):

    test_session = None

    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.get_temp_dir(), self.id().split(".")[-1])
        self.data = _write_binary_release(self.root)
        self.batches = os.path.join(self.root, cifar10.BINARY_DIR_NAME)

    # Sources.

    def test_find_source(self):
        self.assertEqual(cifar10.find_source(self.root), ("binary", self.batches))
        self.assertEqual(cifar10.find_source(self.batches), ("binary", self.batches))
        out = os.path.join(self.root, "tfrecord")
        convert.convert_cifar10_binary(self.root, out, num_shards=2)
        self.assertEqual(cifar10.find_source(out), ("tfrecord", out))

    def test_find_source_errors(self):
        with self.assertRaisesRegex(FileNotFoundError, "nowhere.*does not exist"):
            cifar10.find_source(os.path.join(self.root, "nowhere"))
        empty = os.path.join(self.root, "empty")
        os.makedirs(empty)
        with self.assertRaises(FileNotFoundError) as cm:
            cifar10.find_source(empty)
        for looked_for in ("cifar-10-batches-bin", "train-*-of-*", "dataset_info.json"):
            self.assertIn(looked_for, str(cm.exception))

    # Binary release.

    @parameterized.parameters("train", "test")
    def test_binary_exact_pixels_and_labels(self, split):
        images, labels = cifar10.load_arrays(split, self.root)
        self.assertEqual(images.dtype, np.uint8)
        self.assertEqual(labels.dtype, np.int32)
        self.assertAllEqual(images, self.data[split][0])
        self.assertAllEqual(labels, self.data[split][1])
        got, _ = cifar10.load_arrays(split, self.root, max_examples=4)
        self.assertAllEqual(got, self.data[split][0][:4])

    def test_binary_chw_to_hwc_by_hand(self):
        batches = os.path.join(self.root, "by_hand")
        os.makedirs(batches)
        record = np.zeros(cifar10.RECORD_BYTES, np.uint8)
        record[0] = 7
        # Pixel (y=1, x=2): byte 1 + plane * 1024 + 1 * 32 + 2.
        record[1 + 0 * 1024 + 34], record[1 + 1 * 1024 + 34], record[1 + 2 * 1024 + 34] = 10, 20, 30
        with open(os.path.join(batches, "test_batch.bin"), "wb") as f:
            f.write(record.tobytes())
        images, labels = cifar10.read_binary_split(batches, "test")
        self.assertEqual(int(labels[0]), 7)
        self.assertAllEqual(images[0, 1, 2], [10, 20, 30])
        self.assertEqual(int(images.astype(np.int32).sum()), 60)

    def test_load_eval_normalized(self):
        dataset = cifar10.load("test", self.root)
        self.assertEqual(dataset.element_spec, (
            tf.TensorSpec([32, 32, 3], tf.float32), tf.TensorSpec([], tf.int32)))
        images, labels = self.data["test"]
        got = list(dataset.as_numpy_iterator())
        self.assertLen(got, len(labels))
        for (image, label), want_image, want_label in zip(got, images, labels):
            want = (want_image / 255.0 - np.array(cifar10.MEAN)) / np.array(cifar10.STD)
            self.assertAllClose(image, want, atol=1e-5)
            self.assertAllClose(cifar10.denormalize(image) * 255.0, want_image, atol=1e-3)
            self.assertEqual(label, want_label)

    def test_normalize_constants(self):
        self.assertAllClose(cifar10.normalize(tf.constant(cifar10.MEAN)), [0.0, 0.0, 0.0])
        pixels = tf.constant([[[0, 128, 255]]], tf.uint8)
        self.assertAllClose(cifar10.denormalize(cifar10.normalize(pixels)) * 255.0,
                            [[[0.0, 128.0, 255.0]]], atol=1e-4)

    def test_training_stream_is_epoch_permutation_of_pad_crop_flip(self):
        images, labels = self.data["train"]
        n = len(labels)
        stream = cifar10.train_stream(images, labels.astype(np.int32), seed=3)
        got = list(stream.take(2 * n).as_numpy_iterator())
        for epoch in range(2):
            permutation = order.epoch_permutation(n, 3, epoch).numpy()
            for k, index in enumerate(permutation):
                image, label = got[epoch * n + k]
                self.assertEqual(label, labels[index])
                padded = np.pad(images[index].astype(np.int32), [(4, 4), (4, 4), (0, 0)])
                candidates = [c[:, ::-1] if flip else c
                              for y in range(9) for x in range(9) for flip in (False, True)
                              for c in [padded[y:y + 32, x:x + 32]]]
                self.assertTrue(any(np.array_equal(_pixels(image), c) for c in candidates))
        # Random labels: no augmentation, the images themselves.
        plain = cifar10.train_stream(images, labels.astype(np.int32), seed=3,
                                     augment_images=False)
        permutation = order.epoch_permutation(n, 3, 0).numpy()
        for (image, _), index in zip(plain.take(n).as_numpy_iterator(), permutation):
            self.assertAllEqual(_pixels(image), images[index])

    def test_training_stream_deterministic_resumable_and_sharded(self):
        images, labels = self.data["train"]
        labels = labels.astype(np.int32)
        n = len(labels)

        def take(count, **kwargs):
            stream = cifar10.train_stream(images, labels, **kwargs).take(count)
            return np.stack([image for image, _ in stream.as_numpy_iterator()])

        full = take(3 * n, seed=1)
        self.assertAllEqual(full, take(3 * n, seed=1))
        self.assertNotAllClose(full[:n], take(n, seed=2))
        # Every epoch draws new augmentations (and a new order).
        self.assertNotAllClose(np.sort(full[:n].reshape(n, -1), axis=0),
                               np.sort(full[n:2 * n].reshape(n, -1), axis=0))
        # Restarting at any position (a resumed run) continues the same stream exactly.
        for position in (4, n, n + 6):
            self.assertAllEqual(take(3 * n - position, seed=1, first_position=position),
                                full[position:])
        # Pipeline w of 2 yields positions w, w + 2, ... of the same stream, also when resumed.
        resumed_at = 2 * (n // 2 + 2)  # an even position in the second epoch
        for w in range(2):
            self.assertAllEqual(take(n, seed=1, input_context=_context(2, w)), full[w:2 * n:2])
            self.assertAllEqual(
                take(4, seed=1, input_context=_context(2, w), first_position=resumed_at),
                full[resumed_at + w:resumed_at + 8:2])
        with self.assertRaisesRegex(ValueError, "multiple of the 2 input pipelines"):
            take(1, seed=1, input_context=_context(2, 0), first_position=3)

    def test_finish_batches(self):
        dataset = core.finish(cifar10.load("train", self.root, training=True, seed=0),
                              batch_size=4, training=True, seed=0)
        images, labels = next(iter(dataset))
        self.assertEqual(images.shape, (4, 32, 32, 3))
        self.assertEqual(labels.dtype, tf.int32)

    def test_eval_sharding_disjoint_and_complete(self):
        images, labels = self.data["test"]
        parts = [[_pixels(image).tobytes() for image, _ in cifar10.examples(
            images, labels, input_context=_context(2, i)).as_numpy_iterator()] for i in range(2)]
        self.assertLen(parts[0], 3)
        self.assertLen(parts[1], 2)
        self.assertCountEqual(parts[0] + parts[1], [x.astype(np.int32).tobytes() for x in images])

    # Corrupt or missing binary input: found when the split is read, before any training.

    def test_missing_directory(self):
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            cifar10.load("train", os.path.join(self.root, "missing"))
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            cifar10.load("train", os.path.join(self.root, "missing"), source="binary")

    def test_missing_file(self):
        os.remove(os.path.join(self.batches, "data_batch_3.bin"))
        with self.assertRaisesRegex(FileNotFoundError, "data_batch_3.bin"):
            cifar10.load("train", self.root)
        cifar10.load("test", self.root)  # The test split is complete.

    @parameterized.named_parameters(
        ("truncated", lambda data: data[:-1]),
        ("trailing_bytes", lambda data: data + b"x" * 100),
        ("empty", lambda data: b""),
    )
    def test_truncated_or_empty_file(self, corrupt):
        path = os.path.join(self.batches, "data_batch_2.bin")
        with open(path, "rb") as f:
            data = corrupt(f.read())
        with open(path, "wb") as f:
            f.write(data)
        with self.assertRaises(ValueError) as cm:
            cifar10.load("train", self.root)
        message = str(cm.exception)
        self.assertIn("data_batch_2.bin", message)
        self.assertIn(f"has {len(data)} bytes", message)
        self.assertIn("truncated or corrupt", message)

    def test_label_out_of_range(self):
        path = os.path.join(self.batches, "data_batch_2.bin")
        with open(path, "r+b") as f:
            f.seek(2 * cifar10.RECORD_BYTES)
            f.write(bytes([10]))
        with self.assertRaisesRegex(ValueError, "data_batch_2.bin.*record 2 \\(value 10\\)"):
            cifar10.load_arrays("train", self.root)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "split"):
            cifar10.load("validation", self.root)
        with self.assertRaisesRegex(ValueError, "source"):
            cifar10.load("test", self.root, source="pickle")
        with self.assertRaisesRegex(ValueError, "max_examples"):
            cifar10.load("test", self.root, max_examples=0)

    # TFRecord shards.

    def test_tfrecord_equals_binary(self):
        out = os.path.join(self.root, "tfrecord")
        convert.convert_cifar10_binary(self.batches, out, num_shards=4)
        for split in cifar10.SPLITS:
            self.assertTrue(os.path.exists(os.path.join(out, f"{split}-00000-of-00004")))
            images, labels = cifar10.load_arrays(split, out)
            self.assertAllEqual(images, self.data[split][0])
            self.assertAllEqual(labels, self.data[split][1])

    def test_tfrecord_truncated_and_corrupt(self):
        out = os.path.join(self.root, "tfrecord")
        convert.convert_cifar10_binary(self.batches, out, num_shards=2)
        shard = os.path.join(out, "train-00001-of-00002")
        with open(shard, "rb") as f:
            data = f.read()
        with open(shard, "wb") as f:
            f.write(data[:-10])
        with self.assertRaisesRegex(ValueError, "train-00001-of-00002.*truncated"):
            cifar10.load_arrays("train", out)
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF  # Inside a record's payload: data CRC mismatch.
        with open(shard, "wb") as f:
            f.write(bytes(flipped))
        with self.assertRaisesRegex(ValueError, "train-00001-of-00002.*corrupted record at"):
            cifar10.load_arrays("train", out)
        with open(shard, "wb") as f:
            f.write(data)
        bad_label = tfrecord.serialize_image_example(self.data["train"][0][0], 10)
        with tf.io.TFRecordWriter(shard) as writer:
            writer.write(bad_label)
        with self.assertRaisesRegex(
                ValueError, r"train-00001-of-00002.*0\.\.9.*\[record\] \[0\].*\[10\]"):
            cifar10.load_arrays("train", out)

    # A prepared tensorflow-datasets copy.

    def test_tfds(self):
        data_dir = os.path.join(self.root, "tfds")
        os.makedirs(data_dir)
        with self.assertRaisesRegex(FileNotFoundError, "not prepared.*binary.*launch.convert"):
            cifar10.load("test", data_dir, source="tfds")
        _prepare_tfds(self.root, data_dir)
        self.assertEqual(cifar10.find_source(data_dir), ("tfds", data_dir))
        for split in cifar10.SPLITS:
            images, labels = self.data[split]
            got_images, got_labels = cifar10.load_arrays(split, data_dir)
            # TFDS stores the examples in its own (hashed) order, the same on every read.
            self.assertCountEqual([(e.tobytes(), int(label)) for e, label in zip(got_images,
                                                                                 got_labels)],
                                  [(e.tobytes(), int(label)) for e, label in zip(images, labels)])
            self.assertAllEqual(cifar10.load_arrays(split, data_dir)[0], got_images)
        self.assertLen(cifar10.load_arrays("train", data_dir, max_examples=4)[1], 4)


if __name__ == "__main__":
    tf.test.main()
