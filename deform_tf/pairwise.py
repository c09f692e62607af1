"""Distances between representations, exactly and in float32 (docs/method.md#sensitivity).

The building blocks of `deform_tf.sensitivity`, public for anyone who measures representations
their own way (and for the benchmarks). Rows are [n, ...] tensors, one representation per image;
norms are L2 norms over every axis but the first.

Paired distances (row i of a against row i of b) come from |a - b|^2 and the norms
(`cosine_from_sums`). Pairwise distances (every i < j) come from the Gram matrix of the unit rows
after centring (`centred_unit_rows`, `gram_matrix`, `gram_matrix_by_halves`, `gram_matrix_numpy`,
`distances_from_gram`): with float32 products, centring keeps the rounding error proportional to
the distances themselves; numpy then takes exact medians over all N (N - 1) / 2 pairs
(`medians_of_pairs`).
"""

import numpy as np
import tensorflow as tf


def row_sum(values):
    """Sum over every axis but the first: [n, ...] -> [n].

    Reduces the representation in its own shape: XLA on CPU compiles the sum of a product over
    a flattened [n, F] tensor into a much slower kernel (~8x, measured on the CIFAR net).
    """
    return tf.reduce_sum(values, axis=list(range(1, values.shape.rank)))


def per_row(values, rows):
    """[n] values broadcastable against the [n, ...] `rows`."""
    return tf.reshape(values, [-1] + [1] * (rows.shape.rank - 1))


def row_norms(rows):
    """L2 norms [n] of the rows of [n, ...]."""
    return tf.sqrt(row_sum(tf.square(rows)))


def row_norms_one_pass(rows):
    """`row_norms` by TF's EuclideanNorm kernel: one pass, no squared copy of the rows (no XLA
    kernel: for graph mode only)."""
    return tf.math.reduce_euclidean_norm(rows, axis=list(range(1, rows.shape.rank)))


def cosine_from_sums(diff_sq, norm_a, norm_b):
    """1 - cos(a, b) per row from |a - b|^2 [n] and the norms [n] of the rows.

    1 - cos = (|a - b|^2 - (|a| - |b|)^2) / (2 |a| |b|): no further pass over the rows, and
    exactly 0 for a == b (then |a - b|^2 = 0 and the norms are equal). As |a/|a| - b/|b||^2 / 2,
    a zero row is at distance 0.5 from any other row and 0 from a zero row.
    """
    tiny = tf.constant(1e-30, diff_sq.dtype)
    product = norm_a * norm_b
    cosine = 0.5 * tf.maximum(diff_sq - tf.square(norm_a - norm_b), 0.0) / tf.maximum(
        product, tiny)
    one_zero = tf.where(norm_a + norm_b > 0, tf.constant(0.5, diff_sq.dtype), 0.0)
    return tf.where(product > 0, cosine, one_zero)


def paired_distance(a, b, distance):
    """Distances between matching rows of [n, ...] tensors -> [n] (float32).

    `distance` is "cosine" or "euclidean" (anything else: ValueError). The cosine distance
    1 - cos(a, b) comes from |a - b|^2 and the norms (`cosine_from_sums`), exactly 0 for a == b.
    """
    if distance not in ("cosine", "euclidean"):
        raise ValueError(f"`distance` must be 'cosine' or 'euclidean', got {distance!r}.")
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    diff_sq = row_sum(tf.math.squared_difference(b, a))
    if distance == "cosine":
        return cosine_from_sums(diff_sq, row_norms(a), row_norms(b))
    return tf.sqrt(diff_sq)


def unit_rows(clean, norms):
    """The rows of [n, ...] `clean` divided by their [n] `row_norms` (a zero row stays zero)."""
    tiny = tf.constant(1e-30, clean.dtype)
    return clean * per_row(1.0 / tf.maximum(norms, tiny), clean)


def centred_unit_rows(clean, norms):
    """The unit rows of one chunk [n, F], centred, and their centre [F].

    Args:
      clean: [n, ...] float32 representations.
      norms: [n] L2 norms of the rows of `clean`.

    Returns:
      (unit rows minus the centre [n, F], the centre [F]). Any centre leaves the distances
      unchanged; one inside the rows' hull keeps the float32 products of the Gram matrix away
      from cancellation: sum_i r_i / sum_i |r_i|, the mean of the unit rows weighted by the
      norms, summed from the representations directly (the plain mean of the unit rows would
      make XLA store them). The unit rows are products with the reciprocal norms, cheap enough
      for XLA to recompute wherever they are used.
    """
    size = int(np.prod(clean.shape[1:]))
    centre = unit_centre(clean, norms)
    return (tf.reshape(unit_rows(clean, norms) - centre, [-1, size]),
            tf.reshape(centre, [size]))


def unit_centre(clean, norms):
    """sum_i r_i / sum_i |r_i| [...] of the rows of [n, ...] `clean` with norms [n]."""
    tiny = tf.constant(1e-30, clean.dtype)
    return tf.reduce_sum(clean, axis=0) / tf.maximum(tf.reduce_sum(norms), tiny)


def gram_matrix(rows):
    """Gram matrix [n, n] of [n, F] rows."""
    return tf.matmul(rows, rows, transpose_b=True)


def gram_matrix_by_halves(rows):
    """Gram matrix [n, n] of [n, F] rows from three products of halves (3/4 of the products of
    `gram_matrix`): [[A A', (B A')'], [B A', B B']] for rows [A; B]."""
    half = rows.shape[0] // 2
    top, bottom = rows[:half], rows[half:]
    cross = tf.matmul(bottom, top, transpose_b=True)
    return tf.concat([tf.concat([gram_matrix(top), tf.transpose(cross)], axis=1),
                      tf.concat([cross, gram_matrix(bottom)], axis=1)], axis=0)


def gram_matrix_numpy(rows):
    """Gram matrix [n, n] (numpy) of [n, ...] numpy rows, flattened, by numpy's BLAS.

    numpy computes `a @ a.T` as one symmetric rank-k update (BLAS syrk): half the products of
    a general matrix product. On the project's quiet 2-core CPU that ran 1.3x-1.5x faster than
    TF's matmul by halves for ResNet50's and MobileNetV2's layers at N = 128; with another job
    on the cores it ran 1.7x slower (its threads busy-wait; bench/README.md, bench.profile).
    """
    rows = np.reshape(rows, (rows.shape[0], -1))
    return rows @ rows.T


def distances_from_gram(gram, distance, norms=None):
    """Pairwise distances [..., N, N] (numpy float64) from the Gram matrices of centred unit rows.

    Args:
      gram: [..., N, N] Gram matrices of centred unit rows (`centred_unit_rows`).
      distance: "cosine": |u_i - u_j|^2 / 2 = 1 - cos(r_i, r_j). "euclidean": |r_i - r_j| =
        sqrt((n_i - n_j)^2 + n_i n_j |u_i - u_j|^2) with n the norms (exact for unit rows; the
        rounding error scales with the distances, as for centred rows).
      norms: [..., N] L2 norms of the rows (float64), for "euclidean".
    """
    gram = np.asarray(gram, np.float64)
    sq = np.diagonal(gram, axis1=-2, axis2=-1)
    unit_squared = np.maximum(sq[..., :, None] + sq[..., None, :] - 2.0 * gram, 0.0)
    if distance == "cosine":
        return 0.5 * unit_squared
    norms = np.asarray(norms, np.float64)
    a, b = norms[..., :, None], norms[..., None, :]
    return np.sqrt(np.square(a - b) + a * b * unit_squared)


def medians_of_pairs(distances):
    """Medians over the pairs i < j of [..., N, N] distance matrices -> [...] (float64)."""
    upper = np.triu_indices(distances.shape[-1], k=1)
    return np.median(distances[..., upper[0], upper[1]], axis=-1)


def row_norms64(rows):
    """L2 norms [n] (float64) of the rows of [n, ...]."""
    return tf.sqrt(row_sum(tf.square(tf.cast(rows, tf.float64))))


def pairwise_distances(rows, distance):
    """All pairwise distances among the rows of [N, ...] -> [N, N] numpy float64."""
    rows = tf.cast(rows, tf.float32)
    centred, _ = centred_unit_rows(rows, row_norms(rows))
    return distances_from_gram(gram_matrix(centred).numpy(), distance, row_norms64(rows).numpy())


def median_pairwise_distance(rows, distance):
    """Exact median of d(r_i, r_j) over all pairs i < j of the rows of [N, ...]."""
    return float(medians_of_pairs(pairwise_distances(rows, distance)))
