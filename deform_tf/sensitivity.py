"""Per-layer deformation sensitivity (SPEC §2) and Petrini et al.'s relative stability.

For representations r_l (flattened activations of layer l), N images x_i and one deformation
tau_i per image:

    sensitivity_l = mean_i d(r_l(x_i), r_l(tau_i x_i)) / median_{i<j} d(r_l(x_i), r_l(x_j))

with d the cosine distance 1 - <a, b> / (|a| |b|) (the paper's headline) or the Euclidean
distance. The median runs over all N (N - 1) / 2 pairs, exactly.

Relative stability (Petrini, Favero, Geiger, Wyart 2021): with eta_i isotropic Gaussian noise of
the same L2 norm as tau_i x_i - x_i,

    D_l = mean_i |r(tau x_i) - r(x_i)|^2 / mean_{i<j} |r(x_i) - r(x_j)|^2
    G_l = mean_i |r(x_i + eta_i) - r(x_i)|^2 / mean_{i<j} |r(x_i) - r(x_j)|^2
    R_l = D_l / G_l

Both run the clean and perturbed images of a chunk through one batched forward pass, in chunks
of `batch_size` images (the result does not depend on the chunking). Memory: the clean
representations of all N images are kept for the pairwise median (N x sum of layer sizes x 4
bytes: ~77 MB for the full-width CIFAR-10 net at N = 128).

Results are plain dicts of Python lists and numbers (JSON-serializable).
"""

import numpy as np
import tensorflow as tf

from deform_tf import model_io

DISTANCES = ("cosine", "euclidean")


def _flatten(rep):
    return tf.reshape(rep, [tf.shape(rep)[0], -1])


def _unit(rows):
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norm = tf.norm(rows, axis=1, keepdims=True)
    return rows / tf.maximum(norm, tf.constant(1e-30, rows.dtype))


def paired_distance(a, b, distance):
    """Distances between matching rows of [n, F] tensors -> [n] (float32).

    Cosine distance is computed as |a/|a| - b/|b||^2 / 2, which equals 1 - cos(a, b) and is exactly
    0 for a == b (the direct formula leaves rounding noise of ~1e-7).
    """
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    if distance == "cosine":
        return 0.5 * tf.reduce_sum(tf.square(_unit(a) - _unit(b)), axis=1)
    return tf.sqrt(tf.reduce_sum(tf.square(a - b), axis=1))


@tf.function(reduce_retracing=True)
def _paired_distances(clean, moved, distances):
    """{distance: [per layer [n]]} for lists of per-layer [n, F] representations (one graph)."""
    return {d: [paired_distance(c, m, d) for c, m in zip(clean, moved)] for d in distances}


def _gram(rows, distance):
    """Gram matrix [N, N] of unit rows (cosine) or of centred rows (Euclidean; centring leaves
    the distances unchanged and keeps the float32 products away from cancellation)."""
    rows = tf.cast(rows, tf.float32)
    rows = _unit(rows) if distance == "cosine" else rows - tf.reduce_mean(rows, 0, keepdims=True)
    return tf.matmul(rows, rows, transpose_b=True)


@tf.function(reduce_retracing=True)
def _grams(chunks_per_layer, distance):
    """Gram matrices of every layer: chunks_per_layer[l] is a list of [n, F_l] row chunks."""
    return [_gram(tf.concat(chunks, axis=0), distance) for chunks in chunks_per_layer]


def _distances_from_gram(gram, distance):
    gram = np.asarray(gram, np.float64)
    if distance == "cosine":
        return np.maximum(1.0 - gram, 0.0)
    sq = np.diag(gram)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0))


def _median_of_pairs(distances):
    return float(np.median(distances[np.triu_indices(distances.shape[0], k=1)]))


def pairwise_distances(rows, distance):
    """All pairwise distances among the rows of [N, F] -> [N, N] numpy float64."""
    return _distances_from_gram(_gram(rows, distance).numpy(), distance)


def median_pairwise_distance(rows, distance):
    """Exact median of d(r_i, r_j) over all pairs i < j of the rows of [N, F]."""
    return _median_of_pairs(pairwise_distances(rows, distance))


class RepresentationRunner:
    """Runs a representation model on clean and perturbed images, chunk by chunk.

    Holds one compiled forward function per model, so repeated measurements (e.g. during
    training) do not rebuild the graph.
    """

    def __init__(self, model, jit_compile=False):
        self.rep_model, self.names = model_io.as_representation_model(model)
        input_shape = tuple(self.rep_model.inputs[0].shape[1:])
        self.input_shape = input_shape
        spec = tf.TensorSpec((None,) + input_shape, tf.float32)
        self._forward = tf.function(
            lambda x: [_flatten(r) for r in self.rep_model(x, training=False)],
            input_signature=[spec], jit_compile=jit_compile, reduce_retracing=True)

    def check_images(self, images, min_images=2):
        images = tf.convert_to_tensor(images)
        if images.shape.rank != 4 or tuple(images.shape[1:]) != self.input_shape:
            raise ValueError(
                f"`images` must have shape [N, {', '.join(map(str, self.input_shape))}] to match "
                f"the model's input, got {images.shape.as_list()}.")
        if images.shape[0] < min_images:
            raise ValueError(
                f"At least {min_images} images are needed (pairwise distances), got "
                f"{images.shape[0]}.")
        return tf.cast(images, tf.float32)

    def forward_groups(self, groups, batch_size):
        """Yields, per chunk, per group: a list of flattened reps [n, F] for every layer.

        `groups` are [N, ...] image tensors (e.g. clean, deformed); each chunk of all groups
        goes through the model as one batch.
        """
        total = int(groups[0].shape[0])
        batch_size = batch_size or total
        for start in range(0, total, batch_size):
            chunks = [g[start:start + batch_size] for g in groups]
            n = int(chunks[0].shape[0])
            reps = self._forward(tf.concat(chunks, axis=0))
            yield [[r[k * n:(k + 1) * n] for r in reps] for k in range(len(groups))]


def _check_distance(distance):
    if distance not in DISTANCES:
        raise ValueError(f"`distance` must be one of {DISTANCES}, got {distance!r}.")


def _deform(deform_fn, images):
    deformed = tf.cast(deform_fn(images), tf.float32)
    if deformed.shape != images.shape:
        raise ValueError(
            f"`deform_fn` must return images of the input's shape {images.shape.as_list()}, "
            f"got {deformed.shape.as_list()}.")
    return deformed


def measure_deformation(model, images, deform_fn, distances=DISTANCES, relative=True,
                        noise_seed=(0, 0), batch_size=None, runner=None):
    """Sensitivity for several distances and relative stability from one forward pass.

    Clean, deformed (and, for `relative`, noisy) images of each chunk go through the model as
    one batch; every requested measure is accumulated from those representations.

    Args:
      model, images, deform_fn, batch_size, runner: as in `deformation_sensitivity`.
      distances: the distances of the sensitivity results wanted (subset of DISTANCES).
      relative: also compute `relative_stability`.
      noise_seed: stateless seed [2] of the Gaussian noise of the relative stability.

    Returns:
      dict with "sensitivity_<distance>" for each distance (as `deformation_sensitivity`
      returns) and, if `relative`, "relative_stability" (as `relative_stability` returns).
    """
    for distance in distances:
        _check_distance(distance)
    runner = runner or RepresentationRunner(model)
    images = runner.check_images(images)
    deformed = _deform(deform_fn, images)
    groups = [images, deformed]
    if relative:
        groups.append(images + matched_gaussian_noise(images, deformed, noise_seed))
    num_layers, n_total = len(runner.names), int(images.shape[0])
    paired = {d: [[] for _ in range(num_layers)] for d in distances}
    clean_rows = [[] for _ in range(num_layers)]
    squares = np.zeros([3, num_layers])  # deformation, noise, clean sums of squares
    sums = [0.0] * num_layers
    for chunk in runner.forward_groups(groups, batch_size):
        chunk_paired = _paired_distances(chunk[0], chunk[1], tuple(distances))
        for layer in range(num_layers):
            clean, moved = chunk[0][layer], chunk[1][layer]
            for d in distances:
                paired[d][layer].append(chunk_paired[d][layer])
            if distances:
                clean_rows[layer].append(clean)
            if relative:
                c = tf.cast(clean, tf.float64)
                squares[0, layer] += float(tf.reduce_sum(tf.square(tf.cast(moved, tf.float64) - c)))
                squares[1, layer] += float(tf.reduce_sum(
                    tf.square(tf.cast(chunk[2][layer], tf.float64) - c)))
                squares[2, layer] += float(tf.reduce_sum(tf.square(c)))
                sums[layer] = sums[layer] + tf.reduce_sum(c, axis=0)
    result = {}
    for d in distances:
        grams = _grams(clean_rows, d)
        numerators, denominators = [], []
        for layer in range(num_layers):
            numerators.append(float(np.mean(np.concatenate(
                [p.numpy() for p in paired[d][layer]]).astype(np.float64))))
            denominators.append(_median_of_pairs(_distances_from_gram(grams[layer].numpy(), d)))
        result[f"sensitivity_{d}"] = {
            "layers": list(runner.names),
            "sensitivity": [n / m if m > 0 else float("nan")
                            for n, m in zip(numerators, denominators)],
            "numerator": numerators,
            "denominator": denominators,
            "distance": d,
            "num_images": n_total,
        }
    if relative:
        # sum_{i<j} |r_i - r_j|^2 = N sum_i |r_i|^2 - |sum_i r_i|^2, over N (N - 1) / 2 pairs.
        pair_mean = np.array([
            (n_total * squares[2, l] - float(tf.reduce_sum(tf.square(sums[l]))))
            / (n_total * (n_total - 1) / 2) for l in range(num_layers)])
        d_f = (squares[0] / n_total) / pair_mean
        g_f = (squares[1] / n_total) / pair_mean
        result["relative_stability"] = {
            "layers": list(runner.names),
            "relative_stability": (d_f / g_f).tolist(),
            "deformation_stability": d_f.tolist(),
            "noise_stability": g_f.tolist(),
            "pair_mean": pair_mean.tolist(),
            "num_images": n_total,
        }
    return result


def deformation_sensitivity(model, images, deform_fn, distance="cosine", batch_size=None,
                            runner=None):
    """Per-layer normalized deformation sensitivity (the paper's Fig. 3, 4, 7 measure).

    Args:
      model: a classifier built by `deform_tf.models.vgg`, a `(rep_model, names)` pair from
        `representation_model`, or a path to a saved `.keras` model or a checkpoint directory
        (see `deform_tf.model_io.load_model`).
      images: [N, height, width, channels] float images, N >= 2 (paper: N = 128).
      deform_fn: callable mapping the [N, ...] images to one deformation of each (e.g.
        `lambda x: random_tps_deformation(x, 3, 2.0, seed)`); called once on all N images.
      distance: "cosine" or "euclidean".
      batch_size: images per forward chunk (each chunk forwards 2 x batch_size images);
        None = all at once. The result does not depend on it.
      runner: optional `RepresentationRunner` to reuse a compiled forward pass.

    Returns:
      dict with "layers" (names, layer 0 = "input"), "sensitivity", "numerator" (mean clean vs
      deformed distance), "denominator" (median pairwise clean distance), "distance",
      "num_images".
    """
    _check_distance(distance)
    return measure_deformation(model, images, deform_fn, (distance,), relative=False,
                               batch_size=batch_size, runner=runner)[f"sensitivity_{distance}"]


def matched_gaussian_noise(images, deformed, seed):
    """Isotropic Gaussian noise with the per-image L2 norm of `deformed - images`."""
    delta_norm = tf.norm(tf.reshape(deformed - images, [tf.shape(images)[0], -1]), axis=1)
    noise = tf.random.stateless_normal(tf.shape(images), seed, dtype=images.dtype)
    noise_norm = tf.norm(tf.reshape(noise, [tf.shape(images)[0], -1]), axis=1)
    scale = delta_norm / tf.maximum(noise_norm, 1e-30)
    return noise * scale[:, None, None, None]


def relative_stability(model, images, deform_fn, noise_seed=(0, 0), batch_size=None,
                       runner=None):
    """Per-layer D_f, G_f and R_f = D_f / G_f of Petrini et al. 2021.

    Args:
      model, images, deform_fn, batch_size, runner: as in `deformation_sensitivity`.
      noise_seed: stateless seed [2] for the Gaussian noise.

    Returns:
      dict with "layers", "relative_stability" (R_f), "deformation_stability" (D_f),
      "noise_stability" (G_f), "pair_mean" (mean squared distance over clean pairs),
      "num_images".
    """
    return measure_deformation(model, images, deform_fn, (), relative=True,
                               noise_seed=noise_seed, batch_size=batch_size,
                               runner=runner)["relative_stability"]
