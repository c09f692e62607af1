"""Tests of `pairwise.paired_distance` against scipy.spatial.distance in float64."""

from absl.testing import parameterized
import numpy as np
from scipy.spatial import distance as scipy_distance
import tensorflow as tf

from deform_tf import pairwise


def _rows(rng, shape, dtype=np.float32):
    return rng.normal(size=shape).astype(dtype)


class PairedDistanceTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        ("cosine", (5, 3, 4, 2)), ("euclidean", (5, 3, 4, 2)), ("cosine", (7, 10)),
        ("euclidean", (7, 10)), ("cosine", (3, 2, 2, 2, 64)))
    def test_matches_scipy_row_by_row(self, distance, shape):
        rng = np.random.default_rng(len(shape))
        a, b = _rows(rng, shape), _rows(rng, shape)
        got = pairwise.paired_distance(a, b, distance)
        self.assertEqual(got.dtype, tf.float32)
        self.assertEqual(got.shape, (shape[0],))
        oracle = scipy_distance.cosine if distance == "cosine" else scipy_distance.euclidean
        expected = [oracle(x.ravel().astype(np.float64), y.ravel().astype(np.float64))
                    for x, y in zip(a, b)]
        self.assertAllClose(got, expected, rtol=1e-5, atol=1e-6)

    @parameterized.parameters("cosine", "euclidean")
    def test_close_rows_keep_their_small_distances(self, distance):
        # b = a + a small perturbation: the cosine distance is ~1e-7, where float32 rounding of
        # the norms would dominate a formula without the direct |a - b|^2.
        rng = np.random.default_rng(5)
        a = _rows(rng, (6, 50))
        b = (a + 1e-3 * _rows(rng, (6, 50))).astype(np.float32)
        got = pairwise.paired_distance(a, b, distance).numpy()
        oracle = scipy_distance.cosine if distance == "cosine" else scipy_distance.euclidean
        expected = np.array([oracle(x.astype(np.float64), y.astype(np.float64))
                             for x, y in zip(a, b)])
        self.assertAllClose(got, expected, rtol=1e-4 if distance == "cosine" else 1e-5, atol=0)

    @parameterized.parameters("cosine", "euclidean")
    def test_equal_rows_are_at_distance_zero_exactly(self, distance):
        a = _rows(np.random.default_rng(6), (4, 3, 5))
        np.testing.assert_array_equal(pairwise.paired_distance(a, a.copy(), distance).numpy(),
                                      np.zeros(4, np.float32))

    def test_cosine_convention_for_zero_rows(self):
        # scipy's cosine distance is undefined (NaN) with a zero row; the documented convention
        # is |a/|a| - b/|b||^2 / 2 with 0/0 = 0: 0.5 to a non-zero row, 0 between zero rows.
        a = np.zeros([3, 4], np.float32)
        b = np.array([[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0]], np.float32)
        a[2] = [-1, 0, 2, 0]
        np.testing.assert_array_equal(
            pairwise.paired_distance(a, b, "cosine").numpy(), [0.0, 0.5, 0.5])

    def test_float64_and_integer_rows_are_computed_in_float32(self):
        rng = np.random.default_rng(7)
        a, b = _rows(rng, (3, 8), np.float64), rng.integers(-5, 5, size=(3, 8))
        got = pairwise.paired_distance(a, b, "euclidean")
        self.assertEqual(got.dtype, tf.float32)
        self.assertAllClose(got, np.linalg.norm(a - b, axis=1), rtol=1e-6)

    @parameterized.parameters("cosin", "Euclidean", None)
    def test_unknown_distance_is_refused(self, distance):
        with self.assertRaisesRegex(ValueError, "cosine.*euclidean"):
            pairwise.paired_distance(np.ones((2, 3)), np.zeros((2, 3)), distance)


if __name__ == "__main__":
    tf.test.main()
