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
of `batch_size` images (the result does not depend on the chunking). What is measured: the
points of `deform_tf.representations` (the paper's 13 / 19 for the VGG family; for any other
model the input, every nonlinearity and downsampling output and the final output, or an explicit
`layers` selection), after an optional `preprocess` of the clean, deformed and noisy images.

How it runs (`RepresentationRunner`): one compiled function per chunk forwards the clean and
perturbed images and computes every per-layer measure in the graph (`layer_measures`: TF's
multithreaded row reductions, which ran several times faster on CPU than XLA's for large
layers), so the representations never come back as eager tensors: per image the norm of the
clean representation, |moved - clean|^2 (the Euclidean distance, D_f's sum) and the cosine
distance derived from them, and |noisy - clean|^2. The pairwise distances come from the Gram
matrix of the clean representations' unit rows, centred (`deform_tf.pairwise`): cosine
distances are half the squared distances of the unit rows, Euclidean distances follow from
those and the norms, and the mean squared pairwise distance of the relative stability too
(within ~1e-6 relative of a float64 computation on the paper's nets). When the chunk holds all N
images, the Gram matrix is formed inside the chunk's call (under XLA); with several chunks, each
writes the unit rows of its clean images, minus the first chunk's centre, into one variable per
layer (`row_buffers`), and the Gram matrices are formed after the last chunk, layer by layer, by
numpy's BLAS (`pairwise.gram_matrix_numpy`: a symmetric rank-k update, half the products).
numpy then takes the exact median of the N (N - 1) / 2 distances. Memory with several chunks:
N x (sum of the layers' sizes) x 4 bytes of unit rows (~72 MB for the full-width CIFAR-10 net
at N = 128, 5.3 GiB for ResNet50 at 224 px), plus one chunk's forward pass.

Results are plain dicts of Python lists and numbers (JSON-serializable).
"""

import typing
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from deform_tf import model_io
from deform_tf import pairwise

DISTANCES = ("cosine", "euclidean")


def _centred_unit_gram(clean, norms):
    """Gram matrix [n, n] of the centred unit rows of [n, ...] `clean` (under XLA)."""
    return pairwise.gram_matrix(pairwise.centred_unit_rows(clean, norms)[0])


_centred_unit_gram_xla = tf.function(_centred_unit_gram, jit_compile=True)


class LayerMeasures(typing.NamedTuple):
    """Every per-chunk measure of one layer, for the n images of a chunk (float32 tensors).

    Fields that a measurement does not need are None.
    """

    norms: tf.Tensor  # [n] |clean|
    moved_sq: tf.Tensor  # [n] |moved - clean|^2
    paired_cosine: tf.Tensor  # [n] 1 - cos(clean, moved)
    paired_euclidean: tf.Tensor  # [n] |moved - clean|
    noise_sq: Optional[tf.Tensor] = None  # [n] |noisy - clean|^2, for the relative stability
    gram: Optional[tf.Tensor] = None  # [n, n] Gram matrix of the centred unit rows (one chunk)
    centred_rows: Optional[tf.Tensor] = None  # [n, ...] unit rows minus `centre` (several chunks)
    centre: Optional[tf.Tensor] = None  # [...] the first chunk's `pairwise.unit_centre`

    def paired(self, distance):
        """[n] clean vs deformed distances for `distance` (one of DISTANCES)."""
        return self.paired_cosine if distance == "cosine" else self.paired_euclidean


def layer_measures(clean, moved, noisy, whole, norms_fn=pairwise.row_norms, first=None,
                   centre=None):
    """The `LayerMeasures` of one layer in one chunk, in graph mode (TF's multithreaded
    reductions).

    Args:
      clean, moved: [n, ...] float32 representations of the clean and deformed images.
      noisy: [n, ...] representations of the noisy images for the relative stability, or None.
      whole: the chunk holds all N images: compute the Gram matrix here (under XLA), else the
        centred rows and the centre.
      norms_fn: maps [n, ...] rows to their [n] norms (`pairwise.row_norms`, or
        `pairwise.row_norms_one_pass` outside XLA).
      first, centre: with several chunks (not `whole`): a bool scalar tensor, true for the first
        chunk, and the centre [...] of the unit rows from the first chunk (ignored for it). Any
        centre inside the rows' hull keeps the Gram matrix of all chunks accurate.
    """
    norms = norms_fn(clean)
    moved_sq = pairwise.row_sum(tf.math.squared_difference(moved, clean))
    measures = LayerMeasures(
        norms=norms, moved_sq=moved_sq, paired_euclidean=tf.sqrt(moved_sq),
        paired_cosine=pairwise.cosine_from_sums(moved_sq, norms, norms_fn(moved)))
    if noisy is not None:
        measures = measures._replace(
            noise_sq=pairwise.row_sum(tf.math.squared_difference(noisy, clean)))
    if whole:
        return measures._replace(gram=_centred_unit_gram_xla(clean, norms))
    centre = tf.cond(first, lambda: pairwise.unit_centre(clean, norms), lambda: centre)
    return measures._replace(centre=centre,
                             centred_rows=pairwise.unit_rows(clean, norms) - centre)


class RepresentationRunner:
    """Runs a representation model on clean and perturbed images and measures every layer.

    Holds the compiled functions of one model (one per set of measures, built on first use), so
    repeated measurements (e.g. during training) do not rebuild or recompile the graphs.

    Args:
      model: as in `deformation_sensitivity`.
      jit_compile: compile each chunk's whole call (forward and measures) with XLA. Off by
        default: on the CIFAR-10 net, the whole call compiled with XLA was slower on the
        benchmark CPU (bench/README.md, bench.metrics).
      layers: which outputs to measure (see `deform_tf.representations`); None = the model's
        declared points (the VGG family) or the default of any network.
      preprocess: None, or a callable mapping a float32 image batch [n, H, W, C] to the model's
        input (e.g. a `keras.applications` family's `preprocess_input`); applied to the clean,
        deformed and noisy images alike, after the deformation, inside the compiled call.
      input_shape: (height, width, channels), for models whose input size is undefined.

    Attributes:
      rep_model: the `keras.Model` from images to the measured outputs.
      points: tuple of `deform_tf.representations.Point`, one per output.
      names: the points' names.
    """

    def __init__(self, model, jit_compile=False, layers=None, preprocess=None,
                 input_shape=None):
        if preprocess is not None and not callable(preprocess):
            raise ValueError(
                f"`preprocess` must be None or a callable, got {preprocess!r}; for a named "
                "convention use deform_tf.profile.named_preprocess(name).fn (or "
                "deform_tf.profile.profile, which takes names).")
        reps = model_io.as_representations(model, layers, input_shape)
        self.rep_model, self.points, self.names = reps.model, reps.points, reps.names
        self.input_shape = tuple(self.rep_model.inputs[0].shape[1:])
        self.jit_compile = jit_compile
        self.preprocess = preprocess
        # (num_groups, relative, whole) -> compiled chunk function
        self._chunk_fns = {}

    @property
    def feature_count(self):
        """Values per image summed over all measured outputs (sum of height x width x channels)."""
        return sum(p.height * p.width * p.channels for p in self.points)

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

    def _chunk_fn(self, num_groups, relative, whole):
        key = (num_groups, relative, whole)
        if key not in self._chunk_fns:
            # XLA has no kernel for the one-pass norm.
            norms_fn = pairwise.row_norms if self.jit_compile else pairwise.row_norms_one_pass

            def chunk(x, first, centres):
                if self.preprocess is not None:
                    x = tf.cast(self.preprocess(x), tf.float32)
                results = []
                outputs = keras.tree.flatten(self.rep_model(x, training=False))
                for rep, centre in zip(outputs, centres or [None] * len(outputs)):
                    # A split along the batch is a view of the forward's output.
                    groups = tf.split(tf.cast(rep, tf.float32), num_groups)
                    results.append(layer_measures(
                        groups[0], groups[1], groups[2] if relative else None, whole,
                        norms_fn, first, centre))
                return results

            self._chunk_fns[key] = tf.function(chunk, jit_compile=self.jit_compile)
        return self._chunk_fns[key]

    def row_buffers(self, num_images):
        """One float32 variable [num_images, height, width, channels] per point, for the centred
        unit rows of the clean images when they go through the model in several chunks."""
        return [tf.Variable(tf.zeros((num_images,) + tuple(o.shape[1:])), trainable=False)
                for o in self.rep_model.outputs]

    def measure_groups(self, groups, batch_size, relative, progress=None, buffers=None):
        """Yields, per chunk, a list (per layer) of `LayerMeasures`.

        Args:
          groups: [N, ...] float32 image tensors: clean, deformed (, noisy for `relative`). Each
            chunk of all groups goes through the model as one batch, in one compiled call.
          batch_size: images per group and chunk; None = all N at once (then the Gram matrices
            come with the chunk's measures, as "gram").
          relative: also measure the noisy images (the third group).
          progress: None, or a callable(images forwarded so far, images to forward) called
            after each chunk.
          buffers: with several chunks, `row_buffers(N)`, which receive the centred unit rows
            of the clean images (for `gram_of_rows` after the last chunk).
        """
        total = int(groups[0].shape[0])
        batch_size = min(batch_size or total, total)
        whole = batch_size == total
        if not whole and buffers is None:
            raise ValueError("Measuring in several chunks needs `buffers` (row_buffers(N)).")
        chunk_fn = self._chunk_fn(len(groups), relative, whole)
        # With several chunks, the first chunk's centres (zeros as placeholders for itself).
        centres = None if whole else [tf.zeros(b.shape[1:]) for b in buffers]
        for start in range(0, total, batch_size):
            end = min(start + batch_size, total)
            measured = chunk_fn(tf.concat([g[start:end] for g in groups], axis=0),
                                tf.constant(start == 0), centres)
            if not whole:
                centres = [layer.centre for layer in measured]
                # Eagerly, not inside the compiled call: a tf.function keeps the variables of
                # its first call alive.
                rows = tf.range(start, end)
                for buffer, layer in zip(buffers, measured):
                    # A scatter of whole rows: ~20x faster than a slice assignment here.
                    buffer.scatter_update(tf.IndexedSlices(layer.centred_rows, rows))
                # The rows are in the buffers now: the chunk's copies can go.
                measured = [layer._replace(centre=None, centred_rows=None) for layer in measured]
            if progress is not None:
                progress(end * len(groups), total * len(groups))
            yield measured

    @staticmethod
    def gram_of_rows(centred_rows):
        """The Gram matrix [N, N] (numpy float32) of one layer's centred unit rows (a
        `row_buffers` variable), by `pairwise.gram_matrix_numpy`."""
        # np.asarray shares the variable's memory; `.numpy()` would copy it.
        return pairwise.gram_matrix_numpy(np.asarray(centred_rows.value()))


def ratio(numerators, denominators):
    """numerators / denominators (float64 arrays), NaN where a denominator is not positive.

    An undefined point: a layer whose output is the same for every image has no pairwise
    distance to normalize by (and an undeformed image no noise). No numpy warning is raised;
    every defined ratio is the plain quotient.
    """
    numerators = np.asarray(numerators, np.float64)
    denominators = np.asarray(denominators, np.float64)
    defined = denominators > 0
    return np.divide(numerators, np.where(defined, denominators, 1.0),
                     out=np.full(np.broadcast(numerators, denominators).shape, np.nan),
                     where=defined)


def check_distance(distance):
    """Raises a ValueError naming `distance` unless it is one of DISTANCES."""
    if distance not in DISTANCES:
        raise ValueError(f"`distance` must be one of {DISTANCES}, got {distance!r}.")


def apply_deformation(deform_fn, images):
    """`deform_fn(images)` as float32, checked to keep the images' [N, H, W, C] shape."""
    deformed = tf.cast(deform_fn(images), tf.float32)
    if deformed.shape != images.shape:
        raise ValueError(
            f"`deform_fn` must return images of the input's shape {images.shape.as_list()}, "
            f"got {deformed.shape.as_list()}.")
    return deformed


def make_runner(model, images, layers=None, preprocess=None, runner=None):
    """The runner to measure `model` on `images`: `runner` if given, else a new one.

    A new runner gets `layers` and `preprocess`, and the images' size for a model whose input
    size is undefined. With a `runner`, `layers` and `preprocess` must be None (the runner has
    its own).
    """
    if runner is not None:
        if layers is not None or preprocess is not None:
            raise ValueError("Pass `layers` and `preprocess` to the RepresentationRunner, not "
                             "with `runner=`.")
        return runner
    if not isinstance(model, tuple):
        model = model_io.load_model(model)
        shape = getattr(images, "shape", None)
        if (isinstance(model, keras.Model) and model.inputs
                and None in tuple(model.inputs[0].shape[1:]) and shape is not None):
            return RepresentationRunner(model, layers=layers, preprocess=preprocess,
                                        input_shape=tuple(shape[1:]))
    return RepresentationRunner(model, layers=layers, preprocess=preprocess)


def measure_deformation(model, images, deform_fn, distances=DISTANCES, relative=True,
                        noise_seed=(0, 0), batch_size=None, runner=None, layers=None,
                        preprocess=None, progress=None):
    """Sensitivity for several distances and relative stability from one forward pass.

    Clean, deformed (and, for `relative`, noisy) images of each chunk go through the model as
    one batch; every requested measure is computed from those representations in the same
    compiled call (see the module docstring).

    Args:
      model, images, deform_fn, batch_size, runner, layers, preprocess: as in
        `deformation_sensitivity`.
      distances: the distances of the sensitivity results wanted (subset of DISTANCES).
      relative: also compute `relative_stability`.
      noise_seed: stateless seed [2] of the Gaussian noise of the relative stability.
      progress: None, or a callable(images forwarded so far, images to forward), called after
        each chunk (e.g. to update a progress bar).

    Returns:
      dict with "sensitivity_<distance>" for each distance (as `deformation_sensitivity`
      returns) and, if `relative`, "relative_stability" (as `relative_stability` returns).
      A value without a scale is NaN (undefined), without a numpy warning: a sensitivity whose
      median pairwise distance is 0, D_f and G_f when every clean output of the point is the
      same, R_f also when G_f is 0 (`ratio`).
    """
    distances = tuple(distances)
    for distance in distances:
        check_distance(distance)
    runner = make_runner(model, images, layers, preprocess, runner)
    images = runner.check_images(images)
    deformed = apply_deformation(deform_fn, images)
    groups = [images, deformed]
    if relative:
        groups.append(images + matched_gaussian_noise(images, deformed, noise_seed))
    n_total = int(images.shape[0])
    whole = (batch_size or n_total) >= n_total
    buffers = None if whole else runner.row_buffers(n_total)
    chunks = list(runner.measure_groups(groups, batch_size, relative, progress, buffers))
    del groups, deformed
    num_layers = len(runner.names)

    def gathered(field):
        """[layers, N] float64 per-row values of all chunks; `field` maps a `LayerMeasures` to
        its [n] values."""
        return np.stack([np.concatenate([np.asarray(field(c[l])) for c in chunks])
                         for l in range(num_layers)]).astype(np.float64)

    if whole:
        grams = [layer.gram.numpy() for layer in chunks[0]]
    else:
        grams = []
        for l in range(num_layers):
            grams.append(runner.gram_of_rows(buffers[l]))
            buffers[l] = None  # frees the rows of this layer
    grams, norms = np.stack(grams), gathered(lambda m: m.norms)
    result = {}
    for d in distances:
        numerators = np.mean(gathered(lambda m: m.paired(d)), axis=1).tolist()
        denominators = pairwise.medians_of_pairs(
            pairwise.distances_from_gram(grams, d, norms)).tolist()
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
        upper = np.triu_indices(n_total, k=1)
        pair_mean = np.mean(np.square(pairwise.distances_from_gram(grams, "euclidean", norms))[
            :, upper[0], upper[1]], axis=-1)
        d_f = ratio(np.mean(gathered(lambda m: m.moved_sq), axis=1), pair_mean)
        g_f = ratio(np.mean(gathered(lambda m: m.noise_sq), axis=1), pair_mean)
        result["relative_stability"] = {
            "layers": list(runner.names),
            "relative_stability": ratio(d_f, g_f).tolist(),
            "deformation_stability": d_f.tolist(),
            "noise_stability": g_f.tolist(),
            "pair_mean": pair_mean.tolist(),
            "num_images": n_total,
        }
    return result


def deformation_sensitivity(model, images, deform_fn, distance="cosine", batch_size=None,
                            runner=None, layers=None, preprocess=None):
    """Per-layer normalized deformation sensitivity (the paper's Fig. 3, 4, 7 measure).

    Args:
      model: a built Keras model with one image input (functional, Sequential, or nesting such
        models; see `deform_tf.representations`), a path to a saved `.keras` model or a
        checkpoint directory (see `deform_tf.model_io.load_model`), or a `(rep_model, names)`
        pair / `deform_tf.representations.Representations` naming the outputs to measure.
      images: [N, height, width, channels] float images, N >= 2 (paper: N = 128), in the pixel
        space of the deformation (before `preprocess`).
      deform_fn: callable mapping the [N, ...] images to one deformation of each (e.g.
        `lambda x: random_tps_deformation(x, 3, 2.0, seed)`); called once on all N images.
      distance: "cosine" or "euclidean".
      batch_size: images per forward chunk (each chunk forwards 2 x batch_size images);
        None = all at once. The result does not depend on it.
      runner: optional `RepresentationRunner` to reuse a compiled forward pass (it then holds
        the layer selection and preprocessing).
      layers: which outputs to measure (see `deform_tf.representations`); None = the model's
        declared points (the VGG family: 13 / 19 points) or the default of any network.
      preprocess: None, or a callable applied to the clean and deformed images alike, after
        the deformation, to make the model's input (e.g. a keras.applications
        `preprocess_input`).

    Returns:
      dict with "layers" (names, layer 0 = "input"), "sensitivity", "numerator" (mean clean vs
      deformed distance), "denominator" (median pairwise clean distance), "distance",
      "num_images".
    """
    check_distance(distance)
    return measure_deformation(model, images, deform_fn, (distance,), relative=False,
                               batch_size=batch_size, runner=runner, layers=layers,
                               preprocess=preprocess)[f"sensitivity_{distance}"]


def matched_gaussian_noise(images, deformed, seed):
    """Isotropic Gaussian noise with the per-image L2 norm of `deformed - images`."""
    delta_norm = tf.norm(tf.reshape(deformed - images, [tf.shape(images)[0], -1]), axis=1)
    noise = tf.random.stateless_normal(tf.shape(images), seed, dtype=images.dtype)
    noise_norm = tf.norm(tf.reshape(noise, [tf.shape(images)[0], -1]), axis=1)
    scale = delta_norm / tf.maximum(noise_norm, 1e-30)
    return noise * scale[:, None, None, None]


def relative_stability(model, images, deform_fn, noise_seed=(0, 0), batch_size=None,
                       runner=None, layers=None, preprocess=None):
    """Per-layer D_f, G_f and R_f = D_f / G_f of Petrini et al. 2021.

    Args:
      model, images, deform_fn, batch_size, runner, layers, preprocess: as in
        `deformation_sensitivity` (the noise is added before `preprocess`).
      noise_seed: stateless seed [2] for the Gaussian noise.

    Returns:
      dict with "layers", "relative_stability" (R_f), "deformation_stability" (D_f),
      "noise_stability" (G_f), "pair_mean" (mean squared distance over clean pairs),
      "num_images".
    """
    return measure_deformation(model, images, deform_fn, (), relative=True,
                               noise_seed=noise_seed, batch_size=batch_size,
                               runner=runner, layers=layers,
                               preprocess=preprocess)["relative_stability"]
