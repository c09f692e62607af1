"""Deformation-stability profile of any Keras model: every measure at every point, in one call.

`profile(model, images, deform_fn)` measures, at each point of the model
(`deform_tf.representations`: by default the input, every nonlinearity and downsampling output
and the final output; the paper's points for the VGG family), the deformation sensitivity with
the cosine and the Euclidean distance and Petrini et al.'s relative stability R_f = D_f / G_f
(`deform_tf.sensitivity`; definitions in `docs/method.md`, section sensitivity), from one pass
of the clean, deformed and noisy images. It returns one `ProfileRow` per point, with the point's
relative depth, so that profiles of different networks can be drawn on one axis.

Memory: the images go through the model in chunks of `batch_size` images per group (three
groups: clean, deformed, noisy); by default the chunk holds at most `DEFAULT_CHUNK_BYTES` of
measured outputs. The unit rows of the clean outputs of all N images are kept until the Gram
matrices of the exact pairwise medians are formed, one layer at a time: N x (sum over points of
height x width x channels) x 4 bytes (5.3 GiB for ResNet50 at 224 x 224 with N = 128).
"""

import dataclasses

from deform_tf import sensitivity

DEFAULT_CHUNK_BYTES = 1 << 29  # measured outputs of one chunk (all groups), float32


@dataclasses.dataclass(frozen=True)
class ProfileRow:
    """The measures at one point of one model.

    Attributes:
      model: the model's name.
      layer, index, relative_depth, height, width, channels, layer_type: the point
        (`deform_tf.representations.Point`).
      sensitivity_cosine, sensitivity_euclidean: mean clean-vs-deformed distance over the
        median pairwise clean distance.
      relative_stability: R_f = D_f / G_f.
      deformation_stability, noise_stability: D_f and G_f.
    """

    model: str
    layer: str
    index: int
    relative_depth: float
    height: int
    width: int
    channels: int
    layer_type: str
    sensitivity_cosine: float
    sensitivity_euclidean: float
    relative_stability: float
    deformation_stability: float
    noise_stability: float


COLUMNS = tuple(field.name for field in dataclasses.fields(ProfileRow))


def chunk_size(runner, num_images, num_groups=3, max_bytes=DEFAULT_CHUNK_BYTES):
    """Images per group and chunk whose measured float32 outputs fit in `max_bytes`."""
    per_image = num_groups * runner.feature_count * 4
    return int(max(1, min(num_images, max_bytes // per_image)))


def profile(model, images, deform_fn, layers=None, preprocess=None, noise_seed=(0, 0),
            batch_size=None, runner=None, name=None, progress=None):
    """Sensitivity (cosine, Euclidean) and relative stability at every point of a model.

    Args:
      model, images, deform_fn, layers, preprocess, runner: as in
        `deform_tf.sensitivity.deformation_sensitivity` (images in the deformation's pixel
        space; `preprocess` makes the model's input from clean, deformed and noisy images).
      noise_seed: stateless seed [2] of the Gaussian noise of the relative stability.
      batch_size: images per group and chunk; None = as many as fit in DEFAULT_CHUNK_BYTES.
        The result does not depend on it.
      name: the model's name in the rows; defaults to the Keras model's name (or the path).
      progress: None, or a callable(images forwarded so far, images to forward).

    Returns:
      list of `ProfileRow`, one per point, in topological order.
    """
    runner = sensitivity.make_runner(model, images, layers, preprocess, runner)
    images = runner.check_images(images)
    batch_size = batch_size or chunk_size(runner, int(images.shape[0]))
    result = sensitivity.measure_deformation(
        None, images, deform_fn, noise_seed=noise_seed, batch_size=batch_size, runner=runner,
        progress=progress)
    if name is None:
        name = getattr(model, "name", None) or str(model)
    cosine, euclidean = result["sensitivity_cosine"], result["sensitivity_euclidean"]
    relative = result["relative_stability"]
    return [ProfileRow(
        model=name, layer=p.name, index=p.index, relative_depth=p.relative_depth,
        height=p.height, width=p.width, channels=p.channels, layer_type=p.layer_type,
        sensitivity_cosine=cosine["sensitivity"][k],
        sensitivity_euclidean=euclidean["sensitivity"][k],
        relative_stability=relative["relative_stability"][k],
        deformation_stability=relative["deformation_stability"][k],
        noise_stability=relative["noise_stability"][k]) for k, p in enumerate(runner.points)]
