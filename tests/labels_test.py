"""Tests for pipelines.labels: fixed random labels, the same across epochs, workers, shuffles."""

import os

from absl.testing import parameterized
import numpy as np
from scipy import stats
import tensorflow as tf

from pipelines import core
from pipelines import idx
from pipelines import labels
from pipelines import mnist
from pipelines import order


def _context(num_pipelines, pipeline_id):
    return tf.distribute.InputContext(num_input_pipelines=num_pipelines,
                                      input_pipeline_id=pipeline_id,
                                      num_replicas_in_sync=num_pipelines)


def _source(num_examples):
    """Examples whose 'image' is its own index (to identify it after shuffling/sharding)."""
    images = np.arange(num_examples, dtype=np.float32)[:, None, None, None] * np.ones([1, 2, 2, 1],
                                                                                     np.float32)
    return tf.data.Dataset.from_tensor_slices((images, np.zeros([num_examples], np.int32)))


def _index_to_label(dataset):
    result = {}
    for image, label in dataset.unbatch() if len(dataset.element_spec[1].shape) else dataset:
        result[int(image.numpy()[0, 0, 0])] = int(label.numpy())
    return result


class RandomLabelsTest(parameterized.TestCase, tf.test.TestCase):

    # tf.test.TestCase.test_session is a deprecated context manager, not a test.
    test_session = None

    @parameterized.parameters((10, 0), (10, 7), (3, 123456), (100, 2**32 - 1))
    def test_dataset_labels_equal_random_label_array(self, num_classes, seed):
        ds = labels.with_random_labels(_source(300), num_classes, seed)
        self.assertEqual(ds.element_spec[1], tf.TensorSpec([], tf.int32))
        self.assertEqual(int(ds.cardinality()), 300)
        mapping = _index_to_label(ds)
        expected = labels.random_label_array(300, num_classes, seed)
        self.assertEqual(expected.dtype, np.int32)
        self.assertAllEqual([mapping[k] for k in range(300)], expected)
        self.assertBetween(int(expected.min()), 0, num_classes - 1)
        self.assertBetween(int(expected.max()), 0, num_classes - 1)

    def test_fixed_across_epochs_and_shuffles(self):
        ds = labels.with_random_labels(_source(200), 10, 5)
        shuffled = ds.shuffle(200, seed=1, reshuffle_each_iteration=True)
        epochs = [_index_to_label(shuffled) for _ in range(2)]
        self.assertEqual(epochs[0], epochs[1])
        self.assertEqual(epochs[0], _index_to_label(ds))
        # As the launchers train them: the label array through two epochs of a training stream.
        images = np.arange(200, dtype=np.float32)[:, None, None, None]
        stream = order.array_stream(images, labels.random_label_array(200, 10, 5), seed=3,
                                    preprocess=lambda image, label, index, epoch: (image, label))
        finished = core.finish(stream, batch_size=50, training=True, seed=3)
        seen = {}
        for batch_images, batch_labels in finished.take(8):  # two epochs of 200
            for image, label in zip(batch_images.numpy(), batch_labels.numpy()):
                seen.setdefault(int(image[0, 0, 0]), set()).add(int(label))
        self.assertEqual(len(seen), 200)
        self.assertEqual({k: v.pop() for k, v in seen.items() if len(v) == 1}, epochs[0])

    def test_same_labels_on_every_worker(self):
        full = _index_to_label(labels.with_random_labels(_source(101), 10, 9))
        shards = [_index_to_label(labels.with_random_labels(_source(101), 10, 9, _context(2, i)))
                  for i in range(2)]
        self.assertEmpty(set(shards[0]) & set(shards[1]))
        self.assertEqual(sorted(shards[0]), list(range(0, 101, 2)))
        self.assertEqual({**shards[0], **shards[1]}, full)

    def test_prefix_independent(self):
        self.assertAllEqual(labels.random_label_array(1000, 10, 4)[:37],
                            labels.random_label_array(37, 10, 4))
        self.assertEmpty(labels.random_label_array(0, 10, 4))

    def test_roughly_uniform_and_independent(self):
        values = labels.random_label_array(100_000, 10, 0)
        counts = np.bincount(values, minlength=10)
        self.assertGreater(stats.chisquare(counts).pvalue, 1e-3)
        # Consecutive examples are independent: the pair counts are uniform too.
        pairs = np.bincount(values[:-1] * 10 + values[1:], minlength=100)
        self.assertGreater(stats.chisquare(pairs).pvalue, 1e-3)
        self.assertAllEqual(labels.random_label_array(50, 1, 0), np.zeros(50))

    def test_different_seeds_differ(self):
        a = labels.random_label_array(10_000, 10, 0)
        b = labels.random_label_array(10_000, 10, 1)
        self.assertBetween(float(np.mean(a == b)), 0.08, 0.12)

    def test_not_the_original_labels(self):
        images = np.zeros([28, 28], np.uint8)
        directory = os.path.join(self.get_temp_dir(), "fake")
        os.makedirs(directory, exist_ok=True)
        for prefix, n in (("train", 40), ("t10k", 10)):
            idx.write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte"),
                          np.tile(images, [n, 1, 1]))
            idx.write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte"),
                          np.full([n], 3, np.uint8))
        ds = labels.with_random_labels(mnist.load("train", data_dir=directory), 10, 2)
        relabelled = np.array([int(label) for _, label in ds])
        self.assertAllEqual(relabelled, labels.random_label_array(40, 10, 2))
        self.assertGreater(len(set(relabelled.tolist())), 5)

    @parameterized.parameters(-1, 2**32, 1.5, "0", True)
    def test_bad_seed(self, seed):
        with self.assertRaisesRegex(ValueError, "seed"):
            labels.random_label_array(10, 10, seed)

    def test_bad_num_classes(self):
        with self.assertRaisesRegex(ValueError, "num_classes"):
            labels.with_random_labels(_source(3), 0, 0)


if __name__ == "__main__":
    tf.test.main()
