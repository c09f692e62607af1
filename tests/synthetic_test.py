"""Tests for pipelines.synthetic on the real (embedded) Fashion-MNIST prototypes."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from pipelines import core
from pipelines import idx
from pipelines import labels
from pipelines import mnist
from pipelines import synthetic


def _context(num_pipelines, pipeline_id):
    return tf.distribute.InputContext(num_input_pipelines=num_pipelines,
                                      input_pipeline_id=pipeline_id,
                                      num_replicas_in_sync=num_pipelines)


def _collect(dataset, num_batches=None):
    if num_batches is not None:
        dataset = dataset.take(num_batches)
    images, batch_labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(images), np.concatenate(batch_labels)


def _correlations(images, prototypes):
    """Pearson correlation of every image with every prototype: [N, K]."""
    a = images.reshape(len(images), -1)
    b = prototypes.reshape(len(prototypes), -1)
    a = (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)
    b = (b - b.mean(1, keepdims=True)) / b.std(1, keepdims=True)
    return a @ b.T / a.shape[1]


class SyntheticTest(parameterized.TestCase, tf.test.TestCase):

    # tf.test.TestCase.test_session is a deprecated context manager, not a test.
    test_session = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.prototypes, _ = mnist.prototypes(data_dir=idx.EMBEDDED_FASHION_MNIST_DIR)
        # One shared stream (dataset builds cost ~1 s each): 400 examples, C = 2 px, seed 1.
        cls.stream_ds = synthetic.train(cls.prototypes, 2.0, 16, seed=1)
        cls.images, cls.ids = _collect(cls.stream_ds, 25)

    def _assert_deformed_prototypes(self, images, ids):
        corr = _correlations(mnist.denormalize(images).numpy(), self.prototypes)
        own = corr[np.arange(len(ids)), ids]
        self.assertGreater(own.mean(), 0.5)
        self.assertGreater(np.mean(np.argmax(corr, axis=1) == ids), 0.9)
        # Deformed, not copied: no example is exactly its prototype.
        self.assertLess(own.max(), 1.0 - 1e-6)

    def test_examples_are_deformed_prototypes(self):
        self.assertEqual(self.images.shape, (400, 32, 32, 1))
        self.assertEqual(self.images.dtype, np.float32)
        self.assertEqual(self.ids.dtype, np.int32)
        self._assert_deformed_prototypes(self.images, self.ids)  # C = 2
        self._assert_deformed_prototypes(
            *_collect(synthetic.train(self.prototypes, 1.0, 100, seed=0), 3))  # C = 1

    def test_strength_zero_gives_the_normalized_prototype(self):
        images, ids = _collect(synthetic.train(self.prototypes, 0.0, 64, seed=3), 2)
        self.assertAllEqual(images, mnist.normalize(self.prototypes[ids]))
        test_images, test_ids = _collect(synthetic.test(self.prototypes, 0.0, 30, 16,
                                                        dataset="mnist"))
        self.assertAllEqual(test_images, mnist.normalize(self.prototypes[test_ids], "mnist"))
        self.assertAllClose(test_images, (self.prototypes[test_ids] - 0.1307) / 0.3081,
                            atol=1e-5)

    def test_two_draws_of_a_class_differ(self):
        for c in range(10):
            same = self.images[self.ids == c]
            self.assertGreaterEqual(len(same), 2, msg=f"class {c}")
            flat = same.reshape(len(same), -1)
            differences = np.abs(flat[:, None] - flat[None]).max(axis=-1)
            np.fill_diagonal(differences, np.inf)
            self.assertGreater(differences.min(), 0.1, msg=f"class {c}")

    def test_labels_uniform_from_the_seed(self):
        expected = labels.random_labels_for_indices(tf.range(20_000), 10, 1,
                                                    tag=synthetic.TRAIN_LABEL_TAG).numpy()
        self.assertAllEqual(self.ids, expected[:400])
        counts = np.bincount(expected, minlength=10)
        self.assertBetween(int(counts.min()), 1800, 2200)
        self.assertBetween(int(counts.max()), 1800, 2200)
        # A label stream of its own: not the random-labels stream of the same seed.
        self.assertGreater(np.mean(expected != labels.random_label_array(20_000, 10, 1)), 0.8)

    def test_same_seed_same_stream_other_seed_differs(self):
        again = _collect(synthetic.train(self.prototypes, 2.0, 16, seed=1), 3)
        other = _collect(synthetic.train(self.prototypes, 2.0, 16, seed=2), 3)
        self.assertAllEqual(again[0], self.images[:48])
        self.assertAllEqual(again[1], self.ids[:48])
        self.assertGreater(np.mean(other[1] != self.ids[:48]), 0.5)
        self.assertNotAllClose(other[0], self.images[:48])

    def test_example_k_does_not_depend_on_batch_size_or_workers(self):
        # Worker w of 2 gets examples w, w + 2, ... of the single-worker stream, here in batches
        # of 7 instead of 16.
        for w in range(2):
            shard = _collect(synthetic.train(self.prototypes, 2.0, 7, seed=1,
                                             input_context=_context(2, w)), 4)
            self.assertAllClose(shard[0], self.images[w:56:2], atol=1e-5)
            self.assertAllEqual(shard[1], self.ids[w:56:2])

    def test_deformation_is_core_finish_deformation(self):
        source = tf.data.Dataset.from_tensor_slices((self.prototypes[self.ids[:32]],
                                                     self.ids[:32]))
        finished = core.finish(source, 16, training=False, seed=1,
                               deformation=core.Deformation("tps", 3, 2.0))
        expected, expected_ids = _collect(finished)
        self.assertAllEqual(expected_ids, self.ids[:32])
        self.assertAllClose(self.images[:32], mnist.normalize(expected), atol=1e-5)

    def test_infinite_stream_has_static_batches(self):
        spec = self.stream_ds.element_spec
        self.assertEqual(spec[0], tf.TensorSpec([16, 32, 32, 1], tf.float32))
        self.assertEqual(spec[1], tf.TensorSpec([16], tf.int32))
        self.assertEqual(int(self.stream_ds.cardinality()), int(tf.data.INFINITE_CARDINALITY))

    def test_finite_num_examples(self):
        ds = synthetic.train(self.prototypes, 1.0, 16, seed=1, num_examples=50)
        sizes, ids = zip(*[(int(y.shape[0]), y.numpy()) for _, y in ds])
        self.assertEqual(list(sizes), [16, 16, 16, 2])
        self.assertEqual(int(ds.cardinality()), 4)
        self.assertAllEqual(np.concatenate(ids), self.ids[:50])

    def test_test_set_is_fixed_balanced_and_disjoint_from_training(self):
        first_ds = synthetic.test(self.prototypes, 2.0, 400, 128, seed=1)
        first = _collect(first_ds)
        again = _collect(first_ds)  # second pass over the same (cached) dataset
        second = _collect(synthetic.test(self.prototypes, 2.0, 400, 128, seed=1))
        self.assertEqual(first[0].shape, (400, 32, 32, 1))
        self.assertAllEqual(first[0], second[0])
        self.assertAllEqual(first[1], second[1])
        self.assertAllEqual(first[0], again[0])
        self.assertAllEqual(first[1], np.arange(400) % 10)
        # Same seed as the shared training stream, yet no held-out image is a training image.
        train_set = {image.tobytes() for image in self.images}
        self.assertEmpty([k for k, image in enumerate(first[0]) if image.tobytes() in train_set])
        self.assertLen({image.tobytes() for image in first[0]}, 400)
        self._assert_deformed_prototypes(*first)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "strength"):
            synthetic.train(self.prototypes, -1.0, 8, seed=0)
        with self.assertRaisesRegex(ValueError, "prototype_images"):
            synthetic.train(self.prototypes[0], 1.0, 8, seed=0)
        with self.assertRaisesRegex(ValueError, "num_examples"):
            synthetic.train(self.prototypes, 1.0, 8, seed=0, num_examples=0)
        with self.assertRaisesRegex(ValueError, "batch_size"):
            synthetic.test(self.prototypes, 1.0, batch_size=0)
        with self.assertRaisesRegex(ValueError, "seed"):
            synthetic.test(self.prototypes, 1.0, seed=-1)


if __name__ == "__main__":
    tf.test.main()
