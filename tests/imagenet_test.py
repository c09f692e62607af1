"""Tests for pipelines.imagenet on fake TFRecord shards in the standard ImageNet layout.

The fake shards hold real JPEG-encoded smooth synthetic images of several sizes, with the
features of the standard conversion scripts (`image/encoded`, 1-based `image/class/label`, plus
the usual height / width / format features that the reader ignores). Tests use image_size 32 and
resize_size 36 in place of 224 and 256.
"""

import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from pipelines import imagenet
from pipelines import order
from pipelines import tfrecord

_SIZES = ((40, 48), (48, 40), (36, 36), (50, 62), (37, 45), (60, 38))
_IMAGE_SIZE = 32
_RESIZE_SIZE = 36


def _smooth_image(height, width, phase):
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([
        128 + 90 * np.sin(x / 9.0 + phase),
        128 + 90 * np.cos(y / 7.0 - phase),
        128 + 60 * np.sin((x + y) / 13.0 + 2 * phase),
    ], axis=-1)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _example(encoded, label, height=0, width=0):
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tfrecord.bytes_feature(encoded),
        "image/class/label": tfrecord.int64_feature(label),
        "image/height": tfrecord.int64_feature(height),
        "image/width": tfrecord.int64_feature(width),
        "image/format": tfrecord.bytes_feature(b"JPEG"),
    })).SerializeToString()


def _context(num, index):
    return tf.distribute.InputContext(num_input_pipelines=num, input_pipeline_id=index)


class ImagenetTest(parameterized.TestCase, tf.test.TestCase):

    test_session = None

    def setUp(self):
        super().setUp()
        self.dir = os.path.join(self.get_temp_dir(), self.id().split(".")[-1])
        os.makedirs(self.dir)

    def _write(self, split, num_shards, examples_per_shard=3, labels=None):
        """Writes shards; returns [(image uint8, jpeg bytes, 1-based label)] in file order."""
        written = []
        k = 0
        for shard in range(num_shards):
            path = os.path.join(self.dir, f"{split}-{shard:05d}-of-{num_shards:05d}")
            with tf.io.TFRecordWriter(path) as writer:
                for _ in range(examples_per_shard):
                    height, width = _SIZES[k % len(_SIZES)]
                    image = _smooth_image(height, width, phase=0.3 * k)
                    encoded = tf.io.encode_jpeg(image, quality=95).numpy()
                    label = labels[k] if labels is not None else 1 + (k * 37) % 1000
                    writer.write(_example(encoded, label, height, width))
                    written.append((image, encoded, label))
                    k += 1
        return written

    def _load(self, split="validation", **kwargs):
        kwargs.setdefault("image_size", _IMAGE_SIZE)
        kwargs.setdefault("resize_size", _RESIZE_SIZE)
        return imagenet.load(split, self.dir, **kwargs)

    def test_eval_shapes_labels_and_pixels(self):
        written = self._write("validation", 2, labels=[1, 1000, 2, 999, 500, 7])
        dataset = self._load()
        self.assertEqual(dataset.element_spec, (
            tf.TensorSpec([_IMAGE_SIZE, _IMAGE_SIZE, 3], tf.float32), tf.TensorSpec([], tf.int32)))
        got = list(dataset.as_numpy_iterator())
        # Two shards interleaved one record at a time.
        order = [0, 3, 1, 4, 2, 5]
        self.assertEqual([label for _, label in got], [written[i][2] - 1 for i in order])
        for (image, _), i in zip(got, order):
            _, encoded, _ = written[i]
            decoded = tf.io.decode_jpeg(encoded, channels=3)
            height, width = decoded.shape[:2]
            scale = _RESIZE_SIZE / min(height, width)
            new_height = max(int(round(height * scale)), _RESIZE_SIZE)
            new_width = max(int(round(width * scale)), _RESIZE_SIZE)
            self.assertEqual(min(new_height, new_width), _RESIZE_SIZE)
            resized = tf.image.resize(decoded, (new_height, new_width), antialias=True)
            top, left = (new_height - _IMAGE_SIZE) // 2, (new_width - _IMAGE_SIZE) // 2
            want = resized[top:top + _IMAGE_SIZE, left:left + _IMAGE_SIZE] / 255.0
            self.assertAllClose(image, imagenet.normalize(want), atol=1e-5)

    def test_eval_pixels_within_jpeg_tolerance(self):
        written = self._write("validation", 1, examples_per_shard=3)
        image, label = list(self._load().as_numpy_iterator())[2]  # The 36x36 one: no resize.
        original, _, want_label = written[2]
        self.assertEqual(original.shape, (36, 36, 3))
        self.assertEqual(label, want_label - 1)
        pixels = imagenet.denormalize(image).numpy() * 255.0
        self.assertLess(np.abs(pixels - original[2:34, 2:34]).mean(), 3.0)

    def test_default_sizes(self):
        self.assertEqual(imagenet.default_resize_size(224), 256)
        self._write("validation", 1, examples_per_shard=1)
        image, _ = next(iter(imagenet.load("validation", self.dir)))
        self.assertEqual(image.shape, (224, 224, 3))

    def test_train_augmentation(self):
        self._write("train", 2)

        def epoch(seed, **kwargs):
            dataset = self._load("train", training=True, repeat=False, seed=seed, **kwargs)
            return {int(label): image for image, label in dataset.as_numpy_iterator()}

        a = epoch(1)
        self.assertLen(a, 6)
        for image in a.values():
            self.assertEqual(image.shape, (_IMAGE_SIZE, _IMAGE_SIZE, 3))
            pixels = imagenet.denormalize(image).numpy()
            self.assertBetween(pixels.min(), -1e-4, 1 + 1e-4)
            self.assertBetween(pixels.max(), -1e-4, 1 + 1e-4)
        b = epoch(1)
        for label in a:
            self.assertAllEqual(a[label], b[label])
        c = epoch(2)
        self.assertNotAllClose(np.stack(list(a.values())), np.stack([c[k] for k in a]))
        # Per-example seeds: the same augmentation when sharded over two pipelines.
        for index in range(2):
            for label, image in epoch(1, input_context=_context(2, index)).items():
                self.assertAllEqual(image, a[label])
        # A new augmentation in the next epoch.
        stream = list(self._load("train", training=True, seed=1).take(12).as_numpy_iterator())
        second = {int(label): image for image, label in stream[6:]}
        self.assertEqual(sorted(second), sorted(a))
        self.assertNotAllClose(np.stack([second[k] for k in a]), np.stack(list(a.values())))

    def test_train_crop_matches_reference(self):
        _, encoded, _ = self._write("train", 1, examples_per_shard=1)[0]
        key = tf.constant([4, 9], tf.int64)
        image = imagenet.preprocess_train(tf.constant(encoded), key, _IMAGE_SIZE)
        # Reference: full decode, crop the sampled box, resize, flip.
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.io.extract_jpeg_shape(encoded), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=tf.random.experimental.stateless_fold_in(key, 0), min_object_covered=0.1,
            aspect_ratio_range=(0.75, 4 / 3), area_range=(0.08, 1.0), max_attempts=10)
        crop = tf.io.decode_jpeg(encoded, channels=3)[
            begin[0]:begin[0] + size[0], begin[1]:begin[1] + size[1]]
        want = tf.image.resize(crop, (_IMAGE_SIZE, _IMAGE_SIZE), antialias=True) / 255.0
        want = tf.image.stateless_random_flip_left_right(
            want, seed=tf.random.experimental.stateless_fold_in(key, 1))
        self.assertAllClose(image, want, atol=1e-5)

    @parameterized.named_parameters(("file_level", 4), ("data_level", 1))
    def test_sharding_disjoint_and_complete(self, num_shards):
        self._write("validation", num_shards, examples_per_shard=4,
                    labels=list(range(1, 4 * num_shards + 1)))
        parts = [[int(label) for _, label in self._load(input_context=_context(2, i))
                  .as_numpy_iterator()] for i in range(2)]
        self.assertNotEmpty(parts[0])
        self.assertNotEmpty(parts[1])
        self.assertEmpty(set(parts[0]) & set(parts[1]))
        self.assertCountEqual(parts[0] + parts[1], range(4 * num_shards))
        if num_shards == 4:  # Pipeline 0 reads shards 0 and 2.
            self.assertCountEqual(parts[0], [0, 1, 2, 3, 8, 9, 10, 11])

    def test_max_examples(self):
        self._write("validation", 2)
        self.assertLen(list(self._load(max_examples=4).as_numpy_iterator()), 4)
        with self.assertRaisesRegex(ValueError, "max_examples"):
            self._load(max_examples=0)

    # Missing or corrupt input.

    def test_missing_directory_or_shards(self):
        missing = os.path.join(self.dir, "missing")
        with self.assertRaises(FileNotFoundError) as cm:
            imagenet.load("train", missing)
        self.assertIn(os.path.join(missing, "train-*-of-*"), str(cm.exception))
        self._write("train", 1)
        with self.assertRaises(FileNotFoundError) as cm:
            imagenet.load("validation", self.dir)
        self.assertIn(os.path.join(self.dir, "validation-*-of-*"), str(cm.exception))
        with self.assertRaisesRegex(ValueError, "split"):
            imagenet.load("test", self.dir)
        with self.assertRaisesRegex(ValueError, "resize_size"):
            self._load("train", image_size=40)

    @parameterized.parameters(0, 1001, -5)
    def test_label_out_of_range(self, bad_label):
        self._write("validation", 1, labels=[3, bad_label, 4])
        dataset = self._load()
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                    r"1\.\.1000.*validation-00000-of-00001.*\[record\] \[1\]"):
            list(dataset.as_numpy_iterator())

    @parameterized.parameters(True, False)
    def test_corrupt_jpeg(self, training):
        _, encoded, _ = self._write("train", 1, examples_per_shard=1)[0]
        path = os.path.join(self.dir, "train-00000-of-00001")
        with tf.io.TFRecordWriter(path) as writer:
            writer.write(_example(encoded, 5))
            writer.write(_example(encoded[:len(encoded) // 2], 6))  # Truncated JPEG.
        dataset = self._load("train", training=training, repeat=False)
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "Invalid JPEG data"):
            list(dataset.as_numpy_iterator())

    @parameterized.parameters(True, False)
    def test_not_jpeg(self, training):
        png = tf.io.encode_png(_smooth_image(8, 8, 0.0)).numpy()
        path = os.path.join(self.dir, "train-00000-of-00001")
        with tf.io.TFRecordWriter(path) as writer:
            writer.write(_example(png, 5))
        dataset = self._load("train", training=training, repeat=False)
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                    "not JPEG data.*train-00000-of-00001"):
            list(dataset.as_numpy_iterator())

    def test_truncated_and_corrupt_shard(self):
        self._write("validation", 2)
        path = os.path.join(self.dir, "validation-00001-of-00002")
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:-100])
        with self.assertRaisesRegex(ValueError, "validation-00001-of-00002.*truncated"):
            self._load()  # Every record header is read when the shards are counted.
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF
        with open(path, "wb") as f:
            f.write(bytes(flipped))
        dataset = self._load()
        with self.assertRaisesRegex(tf.errors.DataLossError, "corrupted record"):
            list(dataset.as_numpy_iterator())
        with open(path, "wb") as f:
            f.write(b"")
        with self.assertRaisesRegex(ValueError, "validation-00001-of-00002.*empty"):
            self._load()
        with open(path, "wb") as f:
            f.write(b"\xff\xd8\xff" + data[3:])  # Not a TFRecord file (bad length checksum).
        with self.assertRaisesRegex(ValueError, "validation-00001-of-00002.*corrupt"):
            self._load()

    def test_find_bad_record_names_shard_and_record(self):
        self._write("train", 2, examples_per_shard=3)
        paths = imagenet.list_shards(self.dir, "train").paths
        self.assertIsNone(imagenet.find_bad_record(paths))
        with open(paths[1], "rb") as f:
            data = f.read()
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0xFF  # In the payload of record 1 of 3 (similar sizes).
        with open(paths[1], "wb") as f:
            f.write(bytes(flipped))
        path, record, message = imagenet.find_bad_record(paths)
        self.assertEqual((path, record), (paths[1], 1))
        self.assertIn("corrupted record", message)
        _, encoded, _ = self._write("train", 1, examples_per_shard=1)[0]
        path = os.path.join(self.dir, "train-00000-of-00001")
        with tf.io.TFRecordWriter(path) as writer:
            writer.write(_example(encoded, 5))
            writer.write(_example(encoded[:len(encoded) // 2], 6))  # Truncated JPEG.
        self.assertEqual(imagenet.find_bad_record([path])[:2], (path, 1))

    def test_training_stream_restarts_exactly_at_any_position(self):
        self._write("train", 3, examples_per_shard=4)
        files = imagenet.list_shards(self.dir, "train")
        self.assertEqual(files.counts, (4, 4, 4))

        def stream(first_position=0, input_context=None):
            order_ = order.RecordOrder(files, seed=7, cycle_length=2, window=3,
                                       input_context=input_context)
            return imagenet.read(order_, training=True, first_position=first_position,
                                 image_size=_IMAGE_SIZE)

        full = list(stream().take(30).as_numpy_iterator())
        # Each epoch visits every example once, in a new order and with new crops.
        self.assertCountEqual([label for _, label in full[:12]],
                              [label for _, label in full[12:24]])
        self.assertNotEqual([label for _, label in full[:12]],
                            [label for _, label in full[12:24]])
        for position in (5, 12, 17):
            resumed = list(stream(position).take(30 - position).as_numpy_iterator())
            for (image, label), (want_image, want_label) in zip(resumed, full[position:]):
                self.assertEqual(label, want_label)
                self.assertAllEqual(image, want_image)


if __name__ == "__main__":
    tf.test.main()
