"""Tests for pipelines.cifar10 on fake CIFAR-10 data in the real on-disk formats.

The fakes: the binary release (a few 3073-byte records per batch file), TFRecord shards written
by pipelines.convert, and a tensorflow-datasets `cifar10` prepared offline from the fake binary
release by the real TFDS builder (its download step is replaced by the fake directory).
"""

import os
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from pipelines import cifar10
from pipelines import convert
from pipelines import core

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


def _raw(dataset):
    """[(image uint8 HWC, label int)] of a raw-example dataset (image, label, example_id)."""
    return [(image, int(label)) for image, label, _ in dataset.as_numpy_iterator()]


def _context(num, index):
    return tf.distribute.InputContext(num_input_pipelines=num, input_pipeline_id=index)


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
        images, labels = self.data[split]
        raw = _raw(cifar10.examples(split, self.root))
        self.assertLen(raw, len(labels))
        for (image, label), want_image, want_label in zip(raw, images, labels):
            self.assertAllEqual(image, want_image)
            self.assertEqual(label, want_label)

    def test_binary_chw_to_hwc_by_hand(self):
        record = np.zeros(cifar10.RECORD_BYTES, np.uint8)
        record[0] = 7
        # Pixel (y=1, x=2): byte 1 + plane * 1024 + 1 * 32 + 2.
        record[1 + 0 * 1024 + 34], record[1 + 1 * 1024 + 34], record[1 + 2 * 1024 + 34] = 10, 20, 30
        image, label = cifar10.decode_binary_record(tf.constant(record.tobytes()), "f", 0)
        self.assertEqual(int(label), 7)
        self.assertAllEqual(image[1, 2], [10, 20, 30])
        self.assertEqual(int(tf.reduce_sum(tf.cast(image, tf.int32))), 60)

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

    def test_training_augmentation_is_pad_crop_flip(self):
        images, _ = self.data["train"]
        got = list(cifar10.load("train", self.root, training=True, repeat=False, seed=3)
                   .as_numpy_iterator())
        self.assertLen(got, len(images))
        for (image, _), original in zip(got, images):
            pixels = np.round(cifar10.denormalize(image).numpy() * 255.0).astype(np.int32)
            padded = np.pad(original.astype(np.int32), [(4, 4), (4, 4), (0, 0)])
            candidates = [c[:, ::-1] if flip else c
                          for y in range(9) for x in range(9) for flip in (False, True)
                          for c in [padded[y:y + 32, x:x + 32]]]
            self.assertTrue(any(np.array_equal(pixels, c) for c in candidates))

    def test_training_augmentation_deterministic(self):
        def first_epoch(seed):
            dataset = cifar10.load("train", self.root, training=True, repeat=False, seed=seed)
            return np.stack([image for image, _ in dataset.as_numpy_iterator()])

        a = first_epoch(1)
        self.assertAllEqual(a, first_epoch(1))
        self.assertNotAllClose(a, first_epoch(2))
        # Repeating: epoch 0 is the non-repeating stream, epoch 1 draws new augmentations.
        n = len(a)
        repeated = cifar10.load("train", self.root, training=True, seed=1).take(2 * n)
        stream = np.stack([image for image, _ in repeated.as_numpy_iterator()])
        self.assertAllEqual(stream[:n], a)
        self.assertNotAllClose(stream[n:], a)
        # The augmentation of an example does not depend on the sharding.
        sharded = [cifar10.load("train", self.root, training=True, repeat=False, seed=1,
                                input_context=_context(2, i)) for i in range(2)]
        sharded_images = [image for d in sharded for image, _ in d.as_numpy_iterator()]
        self.assertCountEqual([x.tobytes() for x in sharded_images], [x.tobytes() for x in a])

    def test_finish_batches(self):
        dataset = core.finish(cifar10.load("train", self.root, training=True, seed=0),
                              batch_size=4, training=True, seed=0, shuffle_buffer=8)
        images, labels = next(iter(dataset))
        self.assertEqual(images.shape, (4, 32, 32, 3))
        self.assertEqual(labels.dtype, tf.int32)

    @parameterized.named_parameters(
        ("file_level_train", "train", None),  # 5 files, 2 pipelines.
        ("data_level_test", "test", None),  # 1 file, 2 pipelines.
        ("data_level_max_examples", "train", 7),
    )
    def test_sharding_disjoint_and_complete(self, split, max_examples):
        whole = [e.tobytes() for e, _ in _raw(cifar10.examples(split, self.root,
                                                               max_examples=max_examples))]
        parts = [[e.tobytes() for e, _ in _raw(cifar10.examples(
            split, self.root, input_context=_context(2, i), max_examples=max_examples))]
            for i in range(2)]
        self.assertNotEmpty(parts[0])
        self.assertNotEmpty(parts[1])
        self.assertEmpty(set(parts[0]) & set(parts[1]))
        self.assertCountEqual(parts[0] + parts[1], whole)
        if max_examples:
            self.assertLen(whole, max_examples)

    def test_file_level_sharding_reads_whole_files(self):
        part = _raw(cifar10.examples("train", self.root, input_context=_context(2, 1)))
        images, _ = self.data["train"]
        n = _RECORDS_PER_FILE["train"]
        # Pipeline 1 of 2 reads files 1 and 3 (data_batch_2.bin, data_batch_4.bin).
        self.assertAllEqual(np.stack([e for e, _ in part]),
                            np.concatenate([images[n:2 * n], images[3 * n:4 * n]]))

    # Corrupt or missing binary input.

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
        dataset = cifar10.load("train", self.root)  # Built fine: found at the record.
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                    r"0\.\.9.*data_batch_2\.bin.*\[record\] \[2\].*\[10\]"):
            list(dataset.as_numpy_iterator())
        with self.assertRaisesRegex(ValueError, "data_batch_2.bin.*record 2"):
            cifar10.read_binary_split(self.batches, "train")

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
            got = _raw(cifar10.examples(split, out))
            images, labels = self.data[split]
            self.assertAllEqual(np.stack([e for e, _ in got]), images)
            self.assertAllEqual([label for _, label in got], labels)
        dataset = cifar10.load("test", out)
        self.assertEqual(dataset.element_spec[0], tf.TensorSpec([32, 32, 3], tf.float32))
        parts = [[e.tobytes() for e, _ in _raw(cifar10.examples(
            "train", out, input_context=_context(2, i)))] for i in range(2)]
        self.assertEmpty(set(parts[0]) & set(parts[1]))
        self.assertLen(parts[0] + parts[1], len(self.data["train"][1]))

    def test_tfrecord_truncated_and_corrupt(self):
        out = os.path.join(self.root, "tfrecord")
        convert.convert_cifar10_binary(self.batches, out, num_shards=2)
        shard = os.path.join(out, "train-00001-of-00002")
        with open(shard, "rb") as f:
            data = f.read()
        with open(shard, "wb") as f:
            f.write(data[:-10])
        with self.assertRaisesRegex(ValueError, "train-00001-of-00002.*truncated"):
            cifar10.load("train", out)
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF  # Inside a record's payload: data CRC mismatch.
        with open(shard, "wb") as f:
            f.write(bytes(flipped))
        dataset = cifar10.load("train", out)
        with self.assertRaisesRegex(tf.errors.DataLossError, "corrupted record"):
            list(dataset.as_numpy_iterator())

    # A prepared tensorflow-datasets copy.

    def test_tfds(self):
        data_dir = os.path.join(self.root, "tfds")
        os.makedirs(data_dir)
        with self.assertRaisesRegex(FileNotFoundError, "not prepared.*binary.*pipelines.convert"):
            cifar10.load("test", data_dir, source="tfds")
        _prepare_tfds(self.root, data_dir)
        self.assertEqual(cifar10.find_source(data_dir), ("tfds", data_dir))
        for split in cifar10.SPLITS:
            images, labels = self.data[split]
            got = _raw(cifar10.examples(split, data_dir))
            # TFDS stores the examples in its own (hashed) order.
            self.assertCountEqual([(e.tobytes(), label) for e, label in got],
                                  [(e.tobytes(), int(label)) for e, label in zip(images, labels)])
        parts = [_raw(cifar10.examples("test", data_dir, input_context=_context(2, i)))
                 for i in range(2)]
        self.assertCountEqual([e.tobytes() for part in parts for e, _ in part],
                              [e.tobytes() for e in self.data["test"][0]])
        self.assertLen(_raw(cifar10.examples("train", data_dir, max_examples=4)), 4)
        dataset = cifar10.load("train", data_dir, training=True, repeat=False, seed=5)
        first = [image for image, _ in dataset.as_numpy_iterator()]
        second = [image for image, _ in dataset.as_numpy_iterator()]
        self.assertAllEqual(first, second)


if __name__ == "__main__":
    tf.test.main()
