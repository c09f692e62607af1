"""Tests of the device- and XLA-independent stateless uniform numbers."""

from absl.testing import parameterized
import numpy as np
from scipy import stats
import tensorflow as tf

from deform_tf import stateless_random


class StatelessUniformTest(parameterized.TestCase, tf.test.TestCase):

    def test_uniform_distribution(self):
        values = stateless_random.uniform([200000], [1, 2]).numpy()
        self.assertGreaterEqual(values.min(), 0.0)
        self.assertLess(values.max(), 1.0)
        self.assertGreater(stats.kstest(values, "uniform").pvalue, 1e-3)

    def test_neighbouring_seeds_and_elements_are_independent(self):
        seeds = np.stack([np.zeros(2000), np.arange(2000)], axis=1).astype(np.int64)
        values = stateless_random.uniform([2000, 64], seeds).numpy()
        # Adjacent seeds (rows) and adjacent counters (columns) are uncorrelated.
        self.assertLess(abs(np.corrcoef(values[:-1].ravel(), values[1:].ravel())[0, 1]), 0.01)
        self.assertLess(abs(np.corrcoef(values[:, :-1].ravel(), values[:, 1:].ravel())[0, 1]),
                        0.01)
        # Every row is uniform too, not just the pooled values.
        self.assertGreater(stats.kstest(values[:, 0], "uniform").pvalue, 1e-3)

    def test_high_seed_bits_matter(self):
        a = stateless_random.uniform([8], tf.constant([1, 2], tf.int64))
        b = stateless_random.uniform([8], tf.constant([1 + (1 << 32), 2], tf.int64))
        self.assertNotAllClose(a, b)

    def test_xla_and_graph_are_bit_identical_to_eager(self):
        seed = tf.constant([[3, 4], [5, 6]], tf.int64)
        eager = stateless_random.uniform([2, 7, 2], seed).numpy()
        for jit in (False, True):
            got = tf.function(lambda s: stateless_random.uniform([2, 7, 2], s),
                              jit_compile=jit)(seed).numpy()
            np.testing.assert_array_equal(got, eager)

    def test_rows_and_prefixes_do_not_depend_on_the_shape(self):
        seeds = tf.constant([[1, 1], [1, 2], [9, 9]])
        whole = stateless_random.uniform([3, 10], seeds).numpy()
        for i in range(3):
            np.testing.assert_array_equal(
                stateless_random.uniform([10], seeds[i]).numpy(), whole[i])
        np.testing.assert_array_equal(
            stateless_random.uniform([4], [1, 2]).numpy(),
            stateless_random.uniform([10], [1, 2]).numpy()[:4])

    @parameterized.parameters(tf.float32, tf.float64)
    def test_dtype(self, dtype):
        self.assertEqual(stateless_random.uniform([3], [0, 0], dtype).dtype, dtype)


if __name__ == "__main__":
    tf.test.main()
