"""Per-layer deformation sensitivity and relative stability (docs/method.md#sensitivity).

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
of `batch_size` images (the result does not depend on the chunking).

How it runs (`RepresentationRunner`): one compiled function per chunk forwards the clean and
perturbed images and computes every per-layer measure inside the graph, each layer's under XLA
(`_layer_measures`), so the representations never come back as eager tensors: the paired
distances, the relative-stability sums and, when the chunk holds all N images, the N x N Gram
matrix of the clean rows (centred, see below). With several chunks, each returns its centred
clean rows instead and one XLA function computes the Gram matrices after the last chunk
(`_centred_gram`). numpy then takes the exact median of the N (N - 1) / 2 distances.
Cosine distances are half the squared Euclidean distances of the unit rows, so both distances
come from the Gram matrix of centred rows: with float32 products, centring keeps the error
proportional to the distances themselves (no cancellation against the rows' common component;
within ~1e-6 relative of a float64 computation on the paper's nets). Memory: with several chunks,
the centred clean rows of all N images are kept until the Gram matrices (N x sum of layer sizes
x 4 bytes per distance: ~72 MB for the full-width CIFAR-10 net at N = 128).

Results are plain dicts of Python lists and numbers (JSON-serializable).
"""

import numpy as np
import tensorflow as tf

from deform_tf import model_io

DISTANCES = ("cosine", "euclidean")


def _row_sum(values):
    """Sum over every axis but the first: [n, ...] -> [n].

    Reduces the representation in its own shape: XLA on CPU compiles the sum of a product over
    a flattened [n, F] tensor into a much slower kernel (~8x, measured on the CIFAR net).
    """
    return tf.reduce_sum(values, axis=list(range(1, values.shape.rank)))


def _per_row(values, rows):
    """[n] values broadcastable against the [n, ...] `rows`."""
    return tf.reshape(values, [-1] + [1] * (rows.shape.rank - 1))


def _norms(rows):
    """L2 norms [n] of the rows of [n, ...]."""
    return tf.sqrt(_row_sum(tf.square(rows)))


def _pair_norms(a, b):
    """L2 norms [n] of the rows of [n, ...] `a` and `b`, from one reduction (so equal rows get
    bitwise equal norms)."""
    both = tf.stack([a, b])
    norms = tf.sqrt(tf.reduce_sum(tf.square(both), axis=list(range(2, both.shape.rank))))
    return norms[0], norms[1]


def _paired_cosine(a, b, norm_a, norm_b):
    """|a/|a| - b/|b||^2 / 2 per row, from the `_pair_norms`.

    The rows are divided by their norms: XLA may contract products into fused multiply-adds,
    which round differently, and a == b must give exactly 0.
    """
    tiny = tf.constant(1e-30, a.dtype)
    return 0.5 * _row_sum(tf.square(a / _per_row(tf.maximum(norm_a, tiny), a)
                                    - b / _per_row(tf.maximum(norm_b, tiny), b)))


def paired_distance(a, b, distance):
    """Distances between matching rows of [n, ...] tensors -> [n] (float32).

    Cosine distance is computed as |a/|a| - b/|b||^2 / 2, which equals 1 - cos(a, b) and is exactly
    0 for a == b (the direct formula leaves rounding noise of ~1e-7).
    """
    a, b = tf.cast(a, tf.float32), tf.cast(b, tf.float32)
    if distance == "cosine":
        return _paired_cosine(a, b, *_pair_norms(a, b))
    return tf.sqrt(_row_sum(tf.square(a - b)))


def _centred_rows(clean, distance, norms=None):
    """The rows [n, F] whose pairwise Euclidean distances give `distance`, centred.

    Args:
      clean: [n, ...] float32 representations.
      distance: "cosine" (unit rows: 1 - cos(a, b) = |a/|a| - b/|b||^2 / 2) or "euclidean" (the
        rows themselves).
      norms: optional [n] L2 norms of the rows of `clean` (cosine), if already computed.

    Returns:
      (rows [n, F] minus a centre, the centre [F]). Any centre leaves the distances unchanged;
      one inside the rows' hull keeps the float32 products of the Gram matrix away from
      cancellation. Euclidean: the mean row. Cosine: sum_i r_i / sum_i |r_i|, the mean of the
      unit rows weighted by the norms, summed from the representations directly (the plain mean
      of the unit rows would make XLA store them). The unit rows are products with the
      reciprocal norms, cheap enough for XLA to recompute wherever they are used.
    """
    size = int(np.prod(clean.shape[1:]))
    if distance == "cosine":
        norms = _norms(clean) if norms is None else norms
        tiny = tf.constant(1e-30, clean.dtype)
        rows = clean * _per_row(1.0 / tf.maximum(norms, tiny), clean)
        centre = tf.reduce_sum(clean, axis=0) / tf.maximum(tf.reduce_sum(norms), tiny)
    else:
        rows = clean
        centre = tf.reduce_mean(clean, axis=0)
    return tf.reshape(rows - centre, [-1, size]), tf.reshape(centre, [size])


def _centred_gram(chunks, centres):
    """Gram matrix [N, N] of the rows of all chunks, on one common centre.

    Args:
      chunks: list of [n_k, F] row chunks, each centred on its own centre (`_centred_rows`).
      centres: list of the [F] chunk centres. With several chunks, each is moved to the
        count-weighted mean of the centres (exact for the distances; the shifts are small).
    """
    if len(chunks) == 1:
        rows = chunks[0]
    else:
        counts = [tf.cast(tf.shape(c)[0], tf.float32) for c in chunks]
        common = tf.add_n([k * m for k, m in zip(counts, centres)]) / tf.add_n(counts)
        rows = tf.concat([c + (m - common) for c, m in zip(chunks, centres)], axis=0)
    return tf.matmul(rows, rows, transpose_b=True)


def _grams(chunks, centres):
    """`_centred_gram` of every layer: chunks[l] and centres[l] are the lists of layer l."""
    return [_centred_gram(c, m) for c, m in zip(chunks, centres)]


def _distances_from_gram(gram, distance):
    """Pairwise distances [..., N, N] (numpy float64) from [..., N, N] Gram matrices of centred
    rows (`_centred_rows`)."""
    gram = np.asarray(gram, np.float64)
    sq = np.diagonal(gram, axis1=-2, axis2=-1)
    squared = np.maximum(sq[..., :, None] + sq[..., None, :] - 2.0 * gram, 0.0)
    return 0.5 * squared if distance == "cosine" else np.sqrt(squared)


def _medians_of_pairs(distances):
    """Medians over the pairs i < j of [..., N, N] distance matrices -> [...] (float64)."""
    upper = np.triu_indices(distances.shape[-1], k=1)
    return np.median(distances[..., upper[0], upper[1]], axis=-1)


def pairwise_distances(rows, distance):
    """All pairwise distances among the rows of [N, ...] -> [N, N] numpy float64."""
    centred, centre = _centred_rows(tf.cast(rows, tf.float32), distance)
    return _distances_from_gram(_centred_gram([centred], [centre]).numpy(), distance)


def median_pairwise_distance(rows, distance):
    """Exact median of d(r_i, r_j) over all pairs i < j of the rows of [N, ...]."""
    return float(_medians_of_pairs(pairwise_distances(rows, distance)))


def _layer_measures(clean, moved, noisy, distances, whole):
    """Every measure of one layer on one chunk (compiled by XLA inside the runner's forward).

    Args:
      clean, moved: [n, ...] float32 representations of the clean and deformed images.
      noisy: [n, ...] representations of the noisy images for the relative stability, or None.
      distances: tuple of the distances of the sensitivity (subset of DISTANCES).
      whole: the chunk holds all N images: compute the Gram matrices here.

    Returns:
      dict with, for each distance d, "paired_<d>" [n] (clean vs deformed) and either, if
      `whole`, "gram_<d>" [n, n] (the Gram matrix of the centred rows, `_centred_gram`) or
      "rows_<d>" [n, F] and "centre_<d>" [F] (the centred rows and their centre,
      `_centred_rows`, for `_centred_gram` over all chunks); with `noisy`, the float64 sums over
      the chunk "deform_sq" = sum |moved - clean|^2, "noise_sq" = sum |noisy - clean|^2,
      "clean_sq" = sum |clean|^2 (scalars) and "clean_sum" [F] = sum_i clean_i.
    """
    out = {}
    for d in distances:
        if d == "cosine":
            norm_clean, norm_moved = _pair_norms(clean, moved)
            out["paired_cosine"] = _paired_cosine(clean, moved, norm_clean, norm_moved)
            rows, centre = _centred_rows(clean, d, norm_clean)
        else:
            out["paired_euclidean"] = paired_distance(clean, moved, d)
            rows, centre = _centred_rows(clean, d)
        if whole:
            out[f"gram_{d}"] = _centred_gram([rows], [centre])
        else:
            out[f"rows_{d}"], out[f"centre_{d}"] = rows, centre
    if noisy is not None:
        c = tf.cast(clean, tf.float64)
        out["deform_sq"] = tf.reduce_sum(tf.square(tf.cast(moved, tf.float64) - c))
        out["noise_sq"] = tf.reduce_sum(tf.square(tf.cast(noisy, tf.float64) - c))
        out["clean_sq"] = tf.reduce_sum(tf.square(c))
        out["clean_sum"] = tf.reshape(tf.reduce_sum(c, axis=0), [-1])
    return out


class RepresentationRunner:
    """Runs a representation model on clean and perturbed images and measures every layer.

    Holds the compiled functions of one model (one per set of measures, built on first use), so
    repeated measurements (e.g. during training) do not rebuild or recompile the graphs.

    Args:
      model: as in `deformation_sensitivity`.
      jit_compile: compile the forward pass with XLA too (the per-layer measures and the Gram
        matrices always are). Off by default: on the CIFAR-10 net, the whole call compiled with
        XLA was slower on the benchmark CPU (bench/README.md, bench.metrics).
    """

    def __init__(self, model, jit_compile=False):
        self.rep_model, self.names = model_io.as_representation_model(model)
        self.input_shape = tuple(self.rep_model.inputs[0].shape[1:])
        self.jit_compile = jit_compile
        # (num_groups, distances, relative, whole) -> compiled chunk function
        self._chunk_fns = {}
        self._grams_fn = tf.function(_grams, jit_compile=True, reduce_retracing=True)

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

    def _chunk_fn(self, num_groups, distances, relative, whole):
        key = (num_groups, distances, relative, whole)
        if key not in self._chunk_fns:
            measures = tf.function(_layer_measures, jit_compile=True)

            def chunk(x):
                results = []
                for rep in self.rep_model(x, training=False):
                    # Split outside XLA: a slice along the batch is a view of the forward's
                    # output; XLA would copy it for the column sums.
                    groups = tf.split(rep, num_groups)
                    results.append(measures(groups[0], groups[1],
                                            groups[2] if relative else None, distances, whole))
                return results

            spec = tf.TensorSpec((None,) + self.input_shape, tf.float32)
            self._chunk_fns[key] = tf.function(chunk, input_signature=[spec],
                                               jit_compile=self.jit_compile)
        return self._chunk_fns[key]

    def measure_groups(self, groups, batch_size, distances, relative):
        """Yields, per chunk, a list (per layer) of the `_layer_measures` dicts.

        Args:
          groups: [N, ...] float32 image tensors: clean, deformed (, noisy for `relative`). Each
            chunk of all groups goes through the model as one batch, in one compiled call.
          batch_size: images per group and chunk; None = all N at once (then the Gram matrices
            come with the chunk's measures, as "gram_<d>").
          distances: tuple of the distances of the sensitivity (subset of DISTANCES).
          relative: also compute the relative-stability sums.
        """
        total = int(groups[0].shape[0])
        batch_size = min(batch_size or total, total)
        chunk_fn = self._chunk_fn(len(groups), tuple(distances), relative, batch_size == total)
        for start in range(0, total, batch_size):
            yield chunk_fn(tf.concat([g[start:start + batch_size] for g in groups], axis=0))

    def grams(self, chunks, centres):
        """Per layer, the Gram matrix [N, N] of its centred rows (`_centred_gram`), under XLA.

        Args:
          chunks: per layer, the list of its [n_k, F] centred row chunks ("rows_<d>").
          centres: per layer, the list of the [F] chunk centres ("centre_<d>").
        """
        return self._grams_fn(chunks, centres)


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
    one batch; every requested measure is computed from those representations in the same
    compiled call (see the module docstring).

    Args:
      model, images, deform_fn, batch_size, runner: as in `deformation_sensitivity`.
      distances: the distances of the sensitivity results wanted (subset of DISTANCES).
      relative: also compute `relative_stability`.
      noise_seed: stateless seed [2] of the Gaussian noise of the relative stability.

    Returns:
      dict with "sensitivity_<distance>" for each distance (as `deformation_sensitivity`
      returns) and, if `relative`, "relative_stability" (as `relative_stability` returns).
    """
    distances = tuple(distances)
    for distance in distances:
        _check_distance(distance)
    runner = runner or RepresentationRunner(model)
    images = runner.check_images(images)
    deformed = _deform(deform_fn, images)
    groups = [images, deformed]
    if relative:
        groups.append(images + matched_gaussian_noise(images, deformed, noise_seed))
    n_total = int(images.shape[0])
    chunks = list(runner.measure_groups(groups, batch_size, distances, relative))
    layers = range(len(runner.names))
    result = {}
    for d in distances:
        if len(chunks) == 1:
            grams = [chunks[0][l][f"gram_{d}"] for l in layers]
        else:
            grams = runner.grams([[c[l][f"rows_{d}"] for c in chunks] for l in layers],
                                 [[c[l][f"centre_{d}"] for c in chunks] for l in layers])
        numerators = [float(np.mean(np.concatenate(
            [c[l][f"paired_{d}"].numpy() for c in chunks]).astype(np.float64))) for l in layers]
        denominators = _medians_of_pairs(
            _distances_from_gram(np.stack([g.numpy() for g in grams]), d)).tolist()
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
        def chunk_total(key):
            return np.array([sum(float(c[l][key]) for c in chunks) for l in layers])

        # sum_{i<j} |r_i - r_j|^2 = N sum_i |r_i|^2 - |sum_i r_i|^2, over N (N - 1) / 2 pairs.
        sum_sq = np.array([float(tf.reduce_sum(tf.square(tf.add_n(
            [c[l]["clean_sum"] for c in chunks])))) for l in layers])
        pair_mean = ((n_total * chunk_total("clean_sq") - sum_sq)
                     / (n_total * (n_total - 1) / 2))
        d_f = (chunk_total("deform_sq") / n_total) / pair_mean
        g_f = (chunk_total("noise_sq") / n_total) / pair_mean
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
