"""Tests of the device- and XLA-independent stateless uniform and normal numbers."""

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


class StatelessNormalTest(parameterized.TestCase, tf.test.TestCase):

    def test_normal_distribution(self):
        values = stateless_random.normal([200000], [1, 2], tf.float64).numpy()
        n = len(values)
        self.assertAllClose(values.mean(), 0.0, atol=4 / np.sqrt(n))
        self.assertAllClose(values.var(), 1.0, atol=4 * np.sqrt(2 / n))
        self.assertGreater(stats.kstest(values, "norm").pvalue, 1e-3)
        self.assertLess(np.abs(values).max(), 5.78)  # sqrt(2 * 24 ln 2): the 24-bit tail cut

    def test_per_row_normality_and_independence(self):
        seeds = np.stack([np.full(4000, 7), np.arange(4000)], axis=1).astype(np.int64)
        values = stateless_random.normal([4000, 32], seeds).numpy()
        self.assertGreater(stats.kstest(values[:, 0], "norm").pvalue, 1e-3)
        self.assertLess(abs(np.corrcoef(values[:-1].ravel(), values[1:].ravel())[0, 1]), 0.01)
        self.assertLess(abs(np.corrcoef(values[:, :-1].ravel(), values[:, 1:].ravel())[0, 1]),
                        0.01)
        # Independent of `uniform` with the same seeds (its streams are not the normal's).
        uniforms = stateless_random.uniform([4000, 32], seeds).numpy()
        self.assertLess(abs(np.corrcoef(values.ravel(), uniforms.ravel())[0, 1]), 0.01)
        self.assertLess(abs(np.corrcoef(np.abs(values).ravel(), uniforms.ravel())[0, 1]), 0.01)

    def test_xla_and_graph_are_bit_identical_to_eager(self):
        seed = tf.constant([[3, 4], [5, 6]], tf.int64)
        for dtype in (tf.float32, tf.float64):
            eager = stateless_random.normal([2, 5000], seed, dtype).numpy()
            for jit in (False, True):
                got = tf.function(lambda s, dtype=dtype: stateless_random.normal(
                    [2, 5000], s, dtype), jit_compile=jit)(seed).numpy()
                np.testing.assert_array_equal(got, eager)

    def test_log_and_cos_are_accurate_and_bit_identical_under_xla(self):
        # A strided sweep of the 2^24 lattice plus its ends and quadrant boundaries.
        k = np.concatenate([np.arange(0, 1 << 24, 97), [1, 2, 1 << 21, 1 << 22, 1 << 23,
                                                          3 << 22, (1 << 24) - 1]])
        k = tf.constant(k, tf.int32)
        fn = lambda k: (stateless_random.log_of_lattice(k + 1),  # noqa: E731
                        stateless_random.cos_of_lattice(k))
        eager = fn(k)
        xla = tf.function(fn, jit_compile=True)(k)
        for a, b in zip(eager, xla):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        lattice = k.numpy().astype(np.float64)
        self.assertAllClose(eager[0], np.log((lattice + 1) / (1 << 24)), atol=1e-8, rtol=0)
        self.assertAllClose(eager[1], np.cos(2 * np.pi * lattice / (1 << 24)), atol=1e-8, rtol=0)
        self.assertEqual(stateless_random.log_of_lattice(tf.constant([1 << 24])).numpy()[0], 0.0)
        self.assertEqual(stateless_random.cos_of_lattice(tf.constant([0])).numpy()[0], 1.0)

    def test_rows_and_prefixes_do_not_depend_on_the_shape(self):
        seeds = tf.constant([[1, 1], [1, 2]])
        whole = stateless_random.normal([2, 6, 2], seeds).numpy()
        np.testing.assert_array_equal(stateless_random.normal([6, 2], seeds[1]).numpy(), whole[1])
        np.testing.assert_array_equal(stateless_random.normal([4], [1, 2]).numpy(),
                                      stateless_random.normal([10], [1, 2]).numpy()[:4])

    @parameterized.parameters(tf.float32, tf.float64)
    def test_dtype(self, dtype):
        values = stateless_random.normal([3], [0, 0], dtype)
        self.assertEqual(values.dtype, dtype)
        self.assertAllClose(values, stateless_random.normal([3], [0, 0], tf.float64), atol=1e-6)


if __name__ == "__main__":
    tf.test.main()
