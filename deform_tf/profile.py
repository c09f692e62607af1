"""Deformation-stability profile of any Keras model: every measure at every point, in one call.

`profile(model, images)` measures, at each point of the model (`deform_tf.representations`: by
default the input, every nonlinearity and downsampling output and the final output; the paper's
points for the VGG family), the deformation sensitivity with the cosine and the Euclidean
distance and Petrini et al.'s relative stability R_f = D_f / G_f (`deform_tf.sensitivity`;
definitions in `docs/method.md`, section sensitivity), from one pass of the clean, deformed and
noisy images. It returns one `ProfileRow` per point, with the point's relative depth, so that
profiles of different networks can be drawn on one axis. `launch.profile` is its command line:
both take the same layer selections (names, "re:<regex>", "class:<layer class>", callables),
the same input conventions (`PREPROCESS`) and the same default deformation (`Deformation`).

Nothing is guessed silently. The input convention (what the model expects of the pixels) is
given, or the model states it with a normalization layer at its input (`input_convention`);
otherwise `profile` refuses with the choices. The default deformation follows the paper's
settings for the image size (`default_tps`), so `profile(model, images)` with the defaults
measures what `launch.profile` does with its defaults (seed 0). A point whose output is the
same for every image has no scale to measure against (or one below float32 rounding,
`RESOLUTION`): its values are None and its row says why (`ProfileRow.note`), with an
`UndefinedPointWarning`; an input point whose sensitivity says the deformation moves an image
about as far as the distance between two images gets a `LargeDeformationWarning`.

Memory: the images go through the model in chunks of `batch_size` images per group (three
groups: clean, deformed, noisy); by default the chunk holds at most `DEFAULT_CHUNK_BYTES` of
measured outputs. The unit rows of the clean outputs of all N images are kept until the Gram
matrices of the exact pairwise medians are formed, one layer at a time: N x (sum over points of
height x width x channels) x 4 bytes (5.3 GiB for ResNet50 at 224 x 224 with N = 128).
"""

import dataclasses
import math
from typing import Callable, Optional
import warnings

import keras
import numpy as np
import tensorflow as tf

from deform_tf import deformation
from deform_tf import model_io
from deform_tf import representations
from deform_tf import sensitivity

DEFAULT_CHUNK_BYTES = 1 << 29  # measured outputs of one chunk (all groups), float32

# --- Input conventions --------------------------------------------------------------------------

# Named input conventions: what maps the pixels (0..255 on the command line) to the model's input.
PREPROCESS = {
    "none": "none: pixels as they are",
    "unit": "unit: pixels / 255 (the model was trained on [0, 1] images)",
    "caffe": "caffe: RGB -> BGR minus the ImageNet mean (keras.applications VGG, ResNet50/101)",
    "tf": "tf: pixels / 127.5 - 1, [-1, 1] (keras.applications MobileNet, Inception, ResNetV2)",
    "torch": "torch: pixels / 255 minus the ImageNet mean, over its std (keras.applications "
             "DenseNet)",
}
AUTO = "auto"
# How a user tells which convention a model was trained with.
PREPROCESS_ADVICE = (
    "Look at what the training pipeline did to the pixels before the model: nothing -> none; "
    "divided by 255 -> unit; a keras.applications family's preprocess_input -> its mode (caffe, "
    "tf or torch); anything else -> pass the function itself (Python API) or add it to the model "
    "as its first layer (e.g. keras.layers.Rescaling) and save it again.")


@dataclasses.dataclass(frozen=True)
class InputConvention:
    """What the model expects of the pixels.

    Attributes:
      name: a key of PREPROCESS, "model" (the model normalizes its own input), "custom" (a
        given callable) or "runner" (the one of a given `RepresentationRunner`).
      fn: callable mapping float32 pixels [n, H, W, C] to the model's input, or None (the pixels
        as they are).
      description: one line for people (summaries, profile.json).
    """

    name: str
    fn: Optional[Callable]
    description: str


def named_preprocess(name):
    """The `InputConvention` of a key of PREPROCESS (raises ValueError naming the choices)."""
    if name == "none":
        return InputConvention("none", None, PREPROCESS["none"])
    if name == "unit":
        return InputConvention("unit", lambda x: x / 255.0, PREPROCESS["unit"])
    if name in ("caffe", "tf", "torch"):
        return InputConvention(
            name, lambda x: keras.applications.imagenet_utils.preprocess_input(x, mode=name),
            PREPROCESS[name])
    raise ValueError(f"Unknown preprocess {name!r}: choose one of {', '.join(PREPROCESS)} "
                     f"({'; '.join(PREPROCESS.values())}). {PREPROCESS_ADVICE}")


def _first_layer(model):
    """The first layer a (nested) graph model applies to its input, or None."""
    layers = [layer for layer in getattr(model, "layers", [])
              if not isinstance(layer, keras.layers.InputLayer)]
    if not layers:
        return None
    first = layers[0]
    if isinstance(first, keras.Model):
        return _first_layer(first)
    return first


def leading_normalization(model):
    """The Rescaling or Normalization layer the model applies first to its input, or None.

    Such a model carries its own input convention (e.g. keras.applications EfficientNet and
    ConvNeXt, or `keras.Sequential([keras.layers.Rescaling(1 / 255), ...])`).
    """
    first = _first_layer(model)
    if isinstance(first, (keras.layers.Rescaling, keras.layers.Normalization)):
        return first
    return None


def _normalization_scale(layer):
    """The largest |mean| a Normalization layer subtracts (None if it is not known yet)."""
    mean = getattr(layer, "mean", None)
    if mean is None:
        return None
    return float(np.max(np.abs(keras.ops.convert_to_numpy(mean))))


def input_convention(model, preprocess=AUTO):
    """The `InputConvention` of `model` for `preprocess`.

    Args:
      model: a Keras model (or anything `deform_tf.model_io.as_representations` takes).
      preprocess: "auto" (the model's own: only a model that normalizes its input with a leading
        Rescaling or Normalization layer states it: pixels as they are), a key of PREPROCESS,
        None (= "none") or a callable (float32 pixels [n, H, W, C] -> model input).

    Raises:
      ValueError: "auto" on a model that does not state its convention, or a Normalization
        layer adapted to values within [-1, 1] (pixels scaled to [0, 1], or to 0..255?); the
        message names the choices and how to tell which one the model was trained with.
    """
    if preprocess is None:
        preprocess = "none"
    if callable(preprocess):
        name = getattr(preprocess, "__qualname__", None) or type(preprocess).__name__
        module = getattr(preprocess, "__module__", None)
        return InputConvention("custom", preprocess,
                               f"custom: {module + '.' if module else ''}{name}")
    if preprocess != AUTO:
        return named_preprocess(preprocess)
    keras_model = model.model if isinstance(model, representations.Representations) else (
        model[0] if isinstance(model, tuple) else model)
    layer = leading_normalization(keras_model)
    name = getattr(keras_model, "name", str(keras_model))
    choices = (f"preprocess= one of {', '.join(PREPROCESS)} (--preprocess on the command "
               "line) or a callable")
    if isinstance(layer, keras.layers.Normalization):
        scale = _normalization_scale(layer)
        if scale is not None and scale <= 1.0:
            raise ValueError(
                f"Model {name!r} normalizes its input with {layer.name!r}, adapted to values "
                f"within [-1, 1] (largest |mean| {scale:.3g}): it was probably trained on pixels "
                f"scaled to [0, 1], not 0..255. Say which: {choices}. {PREPROCESS_ADVICE}")
    if layer is not None:
        return InputConvention(
            "model", None, f"model: pixels as they are (0..255 on the command line); the "
            f"model's own {type(layer).__name__} layer {layer.name!r} normalizes them")
    raise ValueError(
        f"Model {name!r} does not say which input convention it was trained with (no "
        f"Rescaling or Normalization layer at its input), and a wrong one changes every "
        f"number: give {choices}: {'; '.join(PREPROCESS.values())}. {PREPROCESS_ADVICE}")


# --- Deformations: one spec for training, measurement and profiles (deform_tf.deformation) ----

PAPER_TPS = deformation.PAPER_TPS
default_tps = deformation.default_tps
Deformation = deformation.Deformation


# --- Layer selections ---------------------------------------------------------------------------


def parse_layers(values):
    """The layer selection of command-line values, or None (the default points).

    Each value is a comma-separated list of items: a layer name, `class:<Keras layer class>`
    (e.g. class:ReLU), or `re:<regular expression>` (the rest of the value, commas included).
    Returns a list of names, compiled expressions and classes (`representations.parse_selector`).
    """
    if not values:
        return None
    if isinstance(values, str):
        values = [values]
    selection = []
    for value in values:
        if value.startswith(representations.REGEX_PREFIX):
            selection.append(representations.parse_selector(value))
            continue
        selection += [representations.parse_selector(item)
                      for item in filter(None, (v.strip() for v in value.split(",")))]
    return selection


# --- The profile --------------------------------------------------------------------------------


class UndefinedPointWarning(UserWarning):
    """A point whose output is the same for every image: its measures are undefined."""


class LargeDeformationWarning(UserWarning):
    """The deformation moves an image about as far as the distance between two images."""


# The input's cosine sensitivity from which a deformation counts as about as large as the
# difference between images (`LargeDeformationWarning`): a deformed image is on average at least
# half as far from its original as the median pair of images is from each other.
LARGE_INPUT_SENSITIVITY = 0.5

# Below this, a median pairwise cosine distance or a G_f is float32 rounding, not a scale: unit
# representations that differ by ~1e-5 (about a hundred float32 steps) or less. The cosine
# sensitivity, resp. R_f = D_f / G_f, of such a point is undefined (a ratio of rounding errors).
RESOLUTION = 1e-10

MEASURES = ("sensitivity_cosine", "sensitivity_euclidean", "relative_stability",
            "deformation_stability", "noise_stability")


@dataclasses.dataclass(frozen=True)
class ProfileRow:
    """The measures at one point of one model.

    Attributes:
      model: the model's name.
      point: the point measured (`deform_tf.representations.Point`: its name, index, relative
        depth, size and layer type).
      sensitivity_cosine, sensitivity_euclidean: mean clean-vs-deformed distance over the
        median pairwise clean distance.
      relative_stability: R_f = D_f / G_f.
      deformation_stability, noise_stability: D_f and G_f.
      note: why a measure is undefined (None), else "".
    """

    model: str
    point: representations.Point
    sensitivity_cosine: Optional[float]
    sensitivity_euclidean: Optional[float]
    relative_stability: Optional[float]
    deformation_stability: Optional[float]
    noise_stability: Optional[float]
    note: str = ""

    def record(self):
        """The row as one flat dict, keys in `COLUMNS` order: the point's fields inline, its
        name under "layer" (a row of profile.csv and profile.json)."""
        point = dataclasses.asdict(self.point)
        return {"model": self.model, "layer": point.pop("name"), **point,
                **{key: getattr(self, key) for key in MEASURES}, "note": self.note}


# The columns of a profile's table: the model, the point (its name as "layer"), the measures,
# the note.
COLUMNS = (("model",) + tuple("layer" if f.name == "name" else f.name
                              for f in dataclasses.fields(representations.Point))
           + MEASURES + ("note",))


def chunk_size(runner, num_images, num_groups=3, max_bytes=DEFAULT_CHUNK_BYTES):
    """Images per group and chunk whose measured float32 outputs fit in `max_bytes`."""
    per_image = num_groups * runner.feature_count * 4
    return int(max(1, min(num_images, max_bytes // per_image)))


def _undefined_note(values, num_images):
    """Why some of a point's measures are NaN, or "" (values: {measure: float}, NaN where
    undefined)."""
    nan = {key for key, value in values.items() if math.isnan(value)}
    if not nan:
        return ""
    if {"sensitivity_euclidean", "deformation_stability"} <= nan:
        return (f"undefined: the output is the same for all {num_images} images (every "
                "pairwise distance is 0)")
    notes = []
    if "sensitivity_cosine" in nan:
        notes.append("cosine sensitivity undefined: the outputs of most image pairs point the "
                     f"same way (median pairwise cosine distance below {RESOLUTION:g})")
    if "sensitivity_euclidean" in nan:
        notes.append("Euclidean sensitivity undefined: most image pairs give the same output "
                     "(median pairwise distance 0)")
    if "relative_stability" in nan and "deformation_stability" not in nan:
        notes.append(f"R_f undefined: G_f below {RESOLUTION:g} (the noise, of the norm of the "
                     "deformation's displacement, moved no output beyond float32 rounding: the "
                     "deformation left the images unchanged)")
    return "; ".join(notes)


def _check_distinct(images):
    if bool(tf.reduce_all(tf.equal(images, images[:1]))):
        raise ValueError(f"The {int(images.shape[0])} images are all the same: there is no "
                         "distance between images to measure a deformation against. Give "
                         "different images.")


def _prepare(model, images, layers, preprocess, runner):
    """(runner, InputConvention) for `profile`."""
    if runner is not None:
        if layers is not None or preprocess not in (AUTO, None):
            raise ValueError("Pass `layers` and `preprocess` to the RepresentationRunner, not "
                             "with `runner=`.")
        return runner, InputConvention("runner", runner.preprocess,
                                       "the RepresentationRunner's preprocess")
    if not isinstance(model, (tuple, representations.Representations)):
        model = model_io.load_model(model)
    convention = input_convention(model, preprocess)
    return sensitivity.make_runner(model, images, layers, convention.fn), convention


def profile(model, images, deform_fn=None, layers=None, preprocess=AUTO,
            noise_seed=deformation.noise_seed(0),
            batch_size=None, runner=None, name=None, progress=None):
    """Sensitivity (cosine, Euclidean) and relative stability at every point of a model.

    Args:
      model, images, runner: as in `deform_tf.sensitivity.deformation_sensitivity` (images
        [N, H, W, C] in the deformation's pixel space, N >= 2, not all the same).
      deform_fn: the deformation of the [N, ...] images; None = `Deformation()` at the images'
        size (TPS, `default_tps`).
      layers: the selection (`deform_tf.representations`: names, "re:<regex>",
        "class:<layer class>", compiled expressions, classes, callables, or a list of them);
        None = the default points.
      preprocess: the input convention, applied after the deformation to clean, deformed and
        noisy images alike (`input_convention`): "auto" (the default: the model must state its
        own, else ValueError with the choices), a key of PREPROCESS, None (= "none") or a
        callable. With `runner`, the runner's (leave "auto").
      noise_seed: stateless seed [2] of the Gaussian noise of the relative stability; the
        default is `deform_tf.deformation.noise_seed(0)`, the seed-0 measurement's.
      batch_size: images per group and chunk; None = as many as fit in DEFAULT_CHUNK_BYTES.
        The result does not depend on it.
      name: the model's name in the rows; defaults to the Keras model's name (or the path).
      progress: None, or a callable(images forwarded so far, images to forward).

    Returns:
      list of `ProfileRow`, one per point, in topological order. Undefined measures are None
      (with the row's `note`, and an `UndefinedPointWarning` naming the point).

    Raises:
      ValueError: no input convention, bad selection, images of the wrong shape or all the same.
    """
    if name is None:
        name = str(model) if isinstance(model, str) else getattr(model, "name", None) or str(
            model)
    runner, _ = _prepare(model, images, layers, preprocess, runner)
    images = runner.check_images(images)
    _check_distinct(images)
    if deform_fn is None:
        deform_fn = Deformation().function(*runner.input_shape[:2])
    batch_size = batch_size or chunk_size(runner, int(images.shape[0]))
    result = sensitivity.measure_deformation(
        None, images, deform_fn, noise_seed=noise_seed, batch_size=batch_size, runner=runner,
        progress=progress)
    columns = {
        "sensitivity_cosine": result["sensitivity_cosine"]["sensitivity"],
        "sensitivity_euclidean": result["sensitivity_euclidean"]["sensitivity"],
        "relative_stability": result["relative_stability"]["relative_stability"],
        "deformation_stability": result["relative_stability"]["deformation_stability"],
        "noise_stability": result["relative_stability"]["noise_stability"],
    }
    cosine_scale = result["sensitivity_cosine"]["denominator"]
    rows = []
    for k, p in enumerate(runner.points):
        values = {key: float(columns[key][k]) for key in MEASURES}
        if cosine_scale[k] < RESOLUTION:
            values["sensitivity_cosine"] = math.nan
        if not values["noise_stability"] >= RESOLUTION:
            values["relative_stability"] = math.nan
        note = _undefined_note(values, int(images.shape[0]))
        if note:
            warnings.warn(f"{name}: point {p.name!r} (index {k}): {note}.",
                          UndefinedPointWarning, stacklevel=2)
        rows.append(ProfileRow(
            model=name, point=p, note=note,
            **{key: None if math.isnan(v) else v for key, v in values.items()}))
    first = rows[0]
    if (first.point.layer_type == "InputLayer" and first.sensitivity_cosine is not None
            and first.sensitivity_cosine >= LARGE_INPUT_SENSITIVITY):
        warnings.warn(
            f"{name}: at the input, the cosine sensitivity is {first.sensitivity_cosine:.2f}: "
            "a deformed image is about as far from its original as two different images are "
            "from each other, so the deformation is too large to measure stability against "
            "(lower its strength, e.g. the paper's settings for the image size, "
            "`default_tps`).", LargeDeformationWarning, stacklevel=2)
    return rows


# --- Reading a profile --------------------------------------------------------------------------

HOW_TO_READ = (
    "How to read: cosine sensitivity = mean distance between an image's representation and its "
    "deformed image's, over the median distance between two images' (0 = the deformation "
    "changes nothing, 1 = it moves an image as far as another image is); R_f = D_f / G_f, how "
    "much more the deformation moves the representation than Gaussian noise of the same norm "
    "(1 at the input; < 1 = more stable to deformations than to noise). Lower = more stable.")


def _is_feature_map(row):
    point = row.point
    return point.layer_type != "InputLayer" and (point.height > 1 or point.width > 1)


def summary(rows):
    """{model: [(what, row)]}: per model its input, the point of largest cosine sensitivity,
    its last feature map (the last point of more than one pixel) and its output (the last
    point, when it is not that feature map), when present."""
    by_model = {}
    for row in rows:
        by_model.setdefault(row.model, []).append(row)
    result = {}
    for model, model_rows in by_model.items():
        model_rows = sorted(model_rows, key=lambda r: r.point.index)
        picked = []
        if model_rows[0].point.layer_type == "InputLayer":
            picked.append(("input", model_rows[0]))
        defined = [r for r in model_rows if r.sensitivity_cosine is not None]
        if defined:
            picked.append(("largest", max(defined, key=lambda r: r.sensitivity_cosine)))
        maps = [r for r in model_rows if _is_feature_map(r)]
        if maps:
            picked.append(("last feature map", maps[-1]))
        if not maps or maps[-1] is not model_rows[-1]:
            picked.append(("output", model_rows[-1]))
        result[model] = picked
    return result


def _number(value):
    return "undefined" if value is None else f"{value:.3g}"


def format_summary(rows, details=None):
    """The summary of `summary(rows)` as a text table, with HOW_TO_READ.

    Args:
      rows: `ProfileRow`s of one or more models.
      details: optional {model: one line} (e.g. its input convention and deformation), printed
        under the model's name.
    """
    lines = []
    for model, picked in summary(rows).items():
        lines.append(f"{model}" + (f"  ({details[model]})" if details and model in details
                                   else ""))
        table = [("", "point", "size", "cosine sensitivity", "R_f")]
        for what, row in picked:
            p = row.point
            table.append((what, p.name, f"{p.height}x{p.width}x{p.channels}",
                          _number(row.sensitivity_cosine), _number(row.relative_stability)))
        widths = [max(len(r[c]) for r in table) for c in range(len(table[0]))]
        for r in table:
            lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        lines += [f"  note: {row.point.name}: {row.note}" for row in
                  sorted({r.point.index: r for _, r in picked if r.note}.values(),
                         key=lambda r: r.point.index)]
    lines.append(HOW_TO_READ)
    return "\n".join(lines)
