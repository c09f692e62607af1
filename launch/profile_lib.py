"""What `launch.profile` needs besides flags: models by name, images, deformations, outputs.

No flags here. Models: a `keras.applications` network by name (`APPLICATIONS`), one of the
paper's VGG nets (`vgg_<config>_<downsampling>`, built by `deform_tf.models.vgg`), a `.keras`
file or a launcher's checkpoint directory. Each comes with the input conventions it expects
(`Preprocess`), applied after the deformation to clean, deformed and noisy images alike. Images
are float32 pixels in 0..255 (the deformations act on them in pixel space): the embedded
Fashion-MNIST subset, a folder of JPEG/PNG files or ImageNet TFRecord shards.
"""

import csv
import dataclasses
import glob
import io
import json
import os
import re
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from deform_tf import diffeo
from deform_tf import model_io
from deform_tf import models
from deform_tf import profile
from deform_tf import tps
from deform_tf.figures import profile as profile_figure
from pipelines import cifar10
from pipelines import idx
from pipelines import imagenet
from pipelines import mnist
from pipelines import tfrecord


@dataclasses.dataclass(frozen=True)
class Application:
    """A keras.applications network: its constructor and the module of its preprocess_input."""

    constructor: str  # attribute of keras.applications, e.g. "ResNet50"
    family: str  # keras.applications module holding its preprocess_input, e.g. "resnet50"
    min_size: int = 32  # smallest input height and width it accepts


APPLICATIONS = {
    "vgg16": Application("VGG16", "vgg16"),
    "vgg19": Application("VGG19", "vgg19"),
    "resnet50": Application("ResNet50", "resnet50"),
    "resnet101": Application("ResNet101", "resnet"),
    "resnet152": Application("ResNet152", "resnet"),
    "resnet50_v2": Application("ResNet50V2", "resnet_v2"),
    "mobilenet": Application("MobileNet", "mobilenet"),
    "mobilenet_v2": Application("MobileNetV2", "mobilenet_v2"),
    "mobilenet_v3_small": Application("MobileNetV3Small", "mobilenet_v3"),
    "mobilenet_v3_large": Application("MobileNetV3Large", "mobilenet_v3"),
    "efficientnet_b0": Application("EfficientNetB0", "efficientnet"),
    "efficientnet_b1": Application("EfficientNetB1", "efficientnet"),
    "efficientnet_v2_b0": Application("EfficientNetV2B0", "efficientnet_v2"),
    "densenet121": Application("DenseNet121", "densenet"),
    "densenet169": Application("DenseNet169", "densenet"),
    "convnext_tiny": Application("ConvNeXtTiny", "convnext"),
    "convnext_small": Application("ConvNeXtSmall", "convnext"),
    "inception_v3": Application("InceptionV3", "inception_v3", min_size=75),
    "xception": Application("Xception", "xception", min_size=71),
}
PAPER_VGG = tuple(f"vgg_{config}_{downsampling}" for config in models.STAGES
                  for downsampling in models.DOWNSAMPLING)
WEIGHTS = ("none", "imagenet")  # or a path to a weights file
PREPROCESS = ("auto", "none", "unit", "caffe", "tf", "torch")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
EMBEDDED = "fashion_mnist"
# The pixel normalization of the paper's nets: the training pipeline's of their data set.
_DATA_NORMALIZATION = {
    "cifar10": cifar10.normalize,
    "imagenet": imagenet.normalize,
    "mnist": lambda x: mnist.normalize(x, "fashion_mnist"),
}


@dataclasses.dataclass(frozen=True)
class ProfiledModel:
    """A model ready to profile.

    Attributes:
      name: its name in the outputs (the --model entry).
      model: the built Keras model.
      preprocess: callable mapping float32 pixels 0..255 [n, H, W, C] to the model's input, or
        None (the pixels as they are).
      preprocess_name: what `preprocess` is, for the settings.
      image_shape: (height, width, channels) of its input.
    """

    name: str
    model: keras.Model
    preprocess: Optional[Callable]
    preprocess_name: str
    image_shape: tuple


def _keras_home():
    """Where Keras caches downloads (its default, or $KERAS_HOME)."""
    return os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))


def _imagenet_utils_preprocess(mode):
    """keras.applications' per-family input conventions, by mode, on 0..255 pixels."""
    return lambda x: keras.applications.imagenet_utils.preprocess_input(x, mode=mode)


def preprocess_for(kind, auto):
    """(callable or None, name) for a --preprocess value; `auto` is the model's own (pair)."""
    if kind == "auto":
        return auto
    if kind == "none":
        return None, "none"
    if kind == "unit":
        return (lambda x: x / 255.0), "unit (pixels / 255)"
    return _imagenet_utils_preprocess(kind), f"keras.applications mode {kind!r}"


def _application(name, app, weights, image_size, preprocess):
    size = image_size or 224
    if size < app.min_size:
        raise ValueError(f"{name} needs images of at least {app.min_size} pixels, got "
                         f"--image_size={size}.")
    constructor = getattr(keras.applications, app.constructor)
    if weights not in WEIGHTS and not os.path.isfile(weights):
        raise FileNotFoundError(f"--weights={weights!r}: no such weights file (or give "
                                f"{' / '.join(WEIGHTS)}).")
    try:
        model = constructor(weights=None if weights == "none" else weights,
                            input_shape=(size, size, 3), classifier_activation=None)
    except Exception as e:  # Keras raises several types for downloads and weight files.
        if weights == "imagenet":
            raise ValueError(
                f"Cannot get the ImageNet weights of {name}: they are not in the Keras cache "
                f"({os.path.join(_keras_home(), 'models')}) and could not be "
                f"downloaded ({str(e).splitlines()[0][:200]}). Download them on a machine with "
                "network access into that cache, or pass --weights=none (initialization) or "
                "--weights=PATH.") from None
        raise ValueError(f"Cannot build {name} with --weights={weights!r} at "
                         f"{size}x{size}: {str(e).splitlines()[0][:300]}") from None
    family = getattr(keras.applications, app.family)
    auto = (family.preprocess_input, f"keras.applications.{app.family}.preprocess_input")
    return ProfiledModel(name, model, *preprocess_for(preprocess, auto), (size, size, 3))


def _paper_vgg(name, weights, image_size, preprocess, seed):
    config, downsampling = next((c, d) for c in models.STAGES for d in models.DOWNSAMPLING
                                if name == f"vgg_{c}_{d}")
    height, _, channels = models.DEFAULT_INPUT_SHAPE[config]
    size = image_size or height
    model = models.vgg(config, downsampling, input_shape=(size, size, channels), seed=seed)
    if weights == "imagenet":
        raise ValueError(f"{name} has no ImageNet weights: pass --weights=none or a weights "
                         "file of this architecture.")
    if weights != "none":
        _load_weights(model, weights)
    auto = (lambda x: _DATA_NORMALIZATION[config](x / 255.0),
            f"the {config} training pipeline's normalization")
    return ProfiledModel(name, model, *preprocess_for(preprocess, auto), (size, size, channels))


def _load_weights(model, path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--weights={path!r}: no such weights file.")
    try:
        model.load_weights(path)
    except Exception as e:  # Keras raises several types for unreadable or mismatched files.
        raise ValueError(f"Cannot load weights {path!r} into {model.name}: "
                         f"{str(e).splitlines()[0][:300]}") from None


def _model_file(path, weights, image_size, preprocess):
    if weights != "none":
        raise ValueError(f"--weights applies to model names, not to the saved model {path!r} "
                         "(which has its own weights).")
    model = model_io.load_model(path)
    if not model.inputs or len(model.inputs[0].shape) != 4:
        raise ValueError(f"{path!r} is not a model with one image input [batch, height, width, "
                         "channels].")
    height, width, channels = model.inputs[0].shape[1:]
    if height is None or width is None:
        if not image_size:
            raise ValueError(f"{path!r} takes images of any size: give --image_size.")
        height = width = image_size
    elif image_size and (height, width) != (image_size, image_size):
        raise ValueError(f"{path!r} takes {height}x{width} images, not --image_size="
                         f"{image_size}.")
    auto = (None, "none (pixels 0..255)")
    config_path = os.path.join(path if os.path.isdir(path) else os.path.dirname(path),
                               model_io.MODEL_CONFIG_FILE)
    if not path.endswith((".keras", ".h5")) and os.path.isfile(config_path):
        with open(config_path) as f:
            config = json.load(f).get("config", "cifar10")
        auto = (lambda x: _DATA_NORMALIZATION[config](x / 255.0),
                f"the {config} training pipeline's normalization")
    return ProfiledModel(path, model, *preprocess_for(preprocess, auto),
                         (int(height), int(width), int(channels)))


def resolve_model(spec, weights="none", image_size=None, preprocess="auto", seed=0):
    """A `ProfiledModel` from a --model entry.

    Args:
      spec: a name of APPLICATIONS or PAPER_VGG, a `.keras` file or a checkpoint directory or
        prefix written by a launcher.
      weights: "none" (initialization), "imagenet" (keras.applications only; from the Keras cache
        or the network) or a weights file path.
      image_size: input height and width in pixels; None = the model's own (224 for
        keras.applications, the config's for the paper's nets, the file's input size).
      preprocess: one of PREPROCESS ("auto" = the model's own conventions).
      seed: initialization seed of the paper's nets.

    Raises:
      ValueError, FileNotFoundError: unknown name, unreadable file, unavailable weights; the
        message names the input and the fix.
    """
    if spec in APPLICATIONS:
        keras.utils.set_random_seed(seed)  # the initialization of weights=none
        return _application(spec, APPLICATIONS[spec], weights, image_size, preprocess)
    if spec in PAPER_VGG:
        return _paper_vgg(spec, weights, image_size, preprocess, seed)
    if os.path.exists(spec) or os.path.exists(spec + ".index"):
        return _model_file(spec, weights, image_size, preprocess)
    raise ValueError(f"Unknown model {spec!r}: give a keras.applications name "
                     f"({', '.join(APPLICATIONS)}), one of the paper's nets "
                     f"(vgg_<{'|'.join(models.STAGES)}>_<{'|'.join(models.DOWNSAMPLING)}>), a "
                     ".keras file or a checkpoint directory.")


def _fit(images, height, width, channels):
    """Resizes the shorter side to fit, centre-crops, sets channels: float32 0..255.

    `images` [..., h, w, c] (any h, w; c 1 or 3) -> [..., height, width, channels].
    """
    images = tf.cast(images, tf.float32)
    size = tf.cast(tf.shape(images)[-3:-1], tf.float32)
    target = tf.constant([height, width], tf.float32)
    resized = tf.maximum(target, tf.round(size * tf.reduce_max(target / size)))
    images = tf.image.resize(images, tf.cast(resized, tf.int32), method="bilinear",
                             antialias=True)
    images = tf.image.resize_with_crop_or_pad(images, height, width)
    if images.shape[-1] == 1 and channels == 3:
        images = tf.image.grayscale_to_rgb(images)
    elif images.shape[-1] == 3 and channels == 1:
        images = tf.image.rgb_to_grayscale(images)
    return tf.clip_by_value(images, 0.0, 255.0)


def _folder_files(folder):
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"No JPEG or PNG files ({', '.join(IMAGE_SUFFIXES)}) in the "
                                f"folder {folder!r}.")
    return files


def _decode(path):
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def _decode_problem(path):
    """What TensorFlow says when decoding the file alone (its message without the tf.data
    context)."""
    try:
        _decode(path)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
        message = re.sub(r"\{\{[^}]*\}\}\s*", "", e.message.splitlines()[0])
        return message.split(" [Op:")[0][:200]
    return "it decodes alone but not in the input pipeline"


def _read_folder(files, count, image_shape):
    dataset = tf.data.Dataset.from_tensor_slices(files[:count]).map(
        lambda path: _fit(_decode(path), *image_shape), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)
    images, iterator = [], iter(dataset)
    for path in files[:count]:
        try:
            images.append(next(iterator).numpy())
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            raise ValueError(f"Cannot read the image {path!r}: {_decode_problem(path)}") from None
    return np.stack(images)


def _read_tfrecords(pattern, count, image_shape):
    files = tfrecord.list_files(pattern)
    records = tfrecord.records_with_origin(files, max_examples=count, cycle_length=1)
    size = image_shape[0]
    dataset = records.map(
        lambda record, file_index, filename, record_index: _fit(255.0 * imagenet.preprocess_eval(
            imagenet.parse_record(record, filename, record_index)[0], image_size=size),
            *image_shape))
    try:
        return np.stack([image.numpy() for image in dataset])
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
        raise ValueError(f"Bad ImageNet TFRecord data in {pattern!r}: "
                         f"{e.message.splitlines()[0][:300]}") from None


def check_image_source(source):
    """Checks --images before anything is loaded; returns ("embedded"|"folder"|"tfrecord", x).

    Raises:
      FileNotFoundError: a folder without images, or a pattern matching no file.
    """
    if not source or source == EMBEDDED:
        return "embedded", None
    if os.path.isdir(source):
        return "folder", _folder_files(source)
    if glob.has_magic(source) or os.path.isfile(source):
        return "tfrecord", tfrecord.list_files(source)
    raise FileNotFoundError(
        f"--images={source!r} is neither a folder of JPEG/PNG files nor a TFRecord file or "
        f"glob (ImageNet format), nor {EMBEDDED!r} (the embedded Fashion-MNIST subset).")


def load_images(source, count, image_shape):
    """[n, height, width, channels] float32 pixels 0..255: the first `count` images.

    Args:
      source: None or EMBEDDED (the embedded Fashion-MNIST test subset, resized; grayscale
        broadcast to 3 channels where needed), a folder of JPEG/PNG files (sorted by name; the
        shorter side resized to fit, centre-cropped), or a file / glob of ImageNet TFRecord
        shards (`pipelines.imagenet` format, its evaluation crop).
      count: number of images (>= 2).
      image_shape: (height, width, channels), channels 1 or 3.

    Raises:
      ValueError: fewer than `count` images, unreadable image or record (named).
      FileNotFoundError: see `check_image_source`.
    """
    kind, files = check_image_source(source)
    if kind == "embedded":
        items, _ = idx.load_mnist_split(idx.EMBEDDED_FASHION_MNIST_DIR, "test")
        images = _fit(items[:count, :, :, None], *image_shape).numpy()
    elif kind == "folder":
        images = _read_folder(files, count, image_shape)
    else:
        images = _read_tfrecords(source, count, image_shape)
    if len(images) < count:
        raise ValueError(f"--images={source or EMBEDDED!r} holds {len(images)} images; "
                         f"--num_images={count} were asked for: lower --num_images.")
    return images.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Deformation:
    """The measured deformation: "tps" (grid_size, strength in pixels) or "diffeo"."""

    kind: str
    grid_size: int = 5
    strength: float = 10.0
    temperature: Optional[float] = None  # diffeo; None = match the TPS displacement
    cutoff: int = 3  # diffeo
    seed: int = 0

    def temperature_for(self, height, width):
        """The diffeo temperature: given, or the one whose RMS displacement matches the TPS
        deformation of (grid_size, strength) at this image size."""
        if self.temperature is not None:
            return float(self.temperature)
        return float(diffeo.temperature_matching_tps(height, width, self.grid_size,
                                                     self.strength, self.cutoff))

    def function(self, height, width):
        """The deformation of [N, height, width, C] images (stateless, seeded)."""
        seed = tf.constant([self.seed, 1], tf.int32)
        if self.kind == "tps":
            return lambda x: tps.random_tps_deformation(x, self.grid_size, self.strength, seed)
        temperature = self.temperature_for(height, width)
        return lambda x: diffeo.random_diffeo(x, temperature, self.cutoff, seed)


def parse_layers(values):
    """The layer selection of --layers values, or None (the default points).

    Each value is a comma-separated list of items: a layer name, `re:<regular expression>` (the
    rest of the value, commas included), or `class:<Keras layer class>` (e.g. class:ReLU).
    """
    if not values:
        return None
    selection = []
    for value in values:
        if value.startswith("re:"):
            try:
                selection.append(re.compile(value[3:]))
            except re.error as e:
                raise ValueError(f"--layers={value!r}: bad regular expression: {e}.") from None
            continue
        for item in filter(None, (v.strip() for v in value.split(","))):
            if item.startswith("class:"):
                cls = getattr(keras.layers, item[6:], None)
                if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
                    raise ValueError(f"--layers: {item[6:]!r} is not a keras.layers class.")
                selection.append(cls)
            else:
                selection.append(item)
    return selection


OUTPUT_FILES = ("profile.csv", "profile.json", "profile.png")
SUMMARY_DIR = "summaries"


def existing_outputs(output_dir):
    """The outputs already in `output_dir` (a rerun must not replace them silently)."""
    return [name for name in OUTPUT_FILES + (SUMMARY_DIR,)
            if tf.io.gfile.exists(os.path.join(output_dir, name))]


def move_aside(output_dir):
    """Moves the existing outputs into output_dir/replaced-<time>/; returns it (or None)."""
    existing = existing_outputs(output_dir)
    if not existing:
        return None
    target = os.path.join(output_dir, time.strftime("replaced-%Y%m%d-%H%M%S"))
    tf.io.gfile.makedirs(target)
    for name in existing:
        tf.io.gfile.rename(os.path.join(output_dir, name), os.path.join(target, name))
    return target


def _write_summaries(directory, rows, figure_png):
    """TensorBoard: per model and measure a curve over the points (step = point index), the
    figure, and the table as text."""
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
        for row in rows:
            for key in ("sensitivity_cosine", "sensitivity_euclidean", "relative_stability"):
                tf.summary.scalar(f"{row.model}/{key}", getattr(row, key), step=row.index)
        tf.summary.image("profile", tf.io.decode_png(figure_png)[None], step=0)
        lines = ["| " + " | ".join(profile.COLUMNS) + " |",
                 "|" + "---|" * len(profile.COLUMNS)]
        lines += ["| " + " | ".join(str(getattr(r, c)) for c in profile.COLUMNS) + " |"
                  for r in rows]
        tf.summary.text("profile", "\n".join(lines), step=0)
    writer.close()


def write_outputs(output_dir, rows, settings):
    """Writes OUTPUT_FILES and the TensorBoard summaries; returns the paths written.

    Args:
      output_dir: created if missing.
      rows: list of `deform_tf.profile.ProfileRow`.
      settings: JSON-serializable dict stored in profile.json beside the rows.
    """
    tf.io.gfile.makedirs(output_dir)
    paths = [os.path.join(output_dir, name) for name in OUTPUT_FILES]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=profile.COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(dataclasses.asdict(r) for r in rows)
    with tf.io.gfile.GFile(paths[0], "w") as f:
        f.write(text.getvalue())
    with tf.io.gfile.GFile(paths[1], "w") as f:
        json.dump({"settings": settings, "rows": [dataclasses.asdict(r) for r in rows]}, f,
                  indent=1)
    figure = profile_figure.plot_profiles(
        rows, title=f"Deformation stability profile ({settings.get('deformation_text', '')})")
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=120)
    with tf.io.gfile.GFile(paths[2], "wb") as f:
        f.write(png.getvalue())
    _write_summaries(os.path.join(output_dir, SUMMARY_DIR), rows, png.getvalue())
    return paths
