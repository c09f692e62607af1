"""What `launch.profile` needs besides flags: models by name, images, outputs.

No flags here. Models: a `keras.applications` network by name or one of the paper's VGG nets
(`vgg_<config>_<downsampling>`), both from the model registry (`experiments.models`), a
`.keras` file or a launcher's checkpoint directory. Each comes with the input convention it
expects (`deform_tf.profile.InputConvention`), applied after the deformation to clean, deformed and
noisy images alike: the family's `preprocess_input` for keras.applications names, the training
pipeline's normalization for the paper's nets (by name, or a checkpoint's model_config.json);
any other model must state it (`deform_tf.profile.input_convention`) or be given one. Images are
float32 pixels in 0..255 (the deformations act on them in pixel space): the embedded
Fashion-MNIST subset, a folder of JPEG/PNG files or ImageNet TFRecord shards. Layer selections,
input conventions and deformations are `deform_tf.profile`'s, as in the Python API.
"""

import csv
import dataclasses
import glob
import io
import json
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf

from deform_tf import model_io
from deform_tf import models
from deform_tf import profile
from deform_tf.figures import profile as profile_figure
from experiments import models as registry
from experiments import runs
from pipelines import idx
from pipelines import imagenet
from pipelines import tfrecord


WEIGHTS = ("none", "imagenet")  # or a path to a weights file
PREPROCESS = (profile.AUTO,) + tuple(profile.PREPROCESS)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
EMBEDDED = "fashion_mnist"


# What the message on a model file with Python code (a Lambda layer) tells the command's user.
UNSAFE_HINT = ("if you trust the file, pass `unsafe_load=True` (it runs the file's Python code)")


@dataclasses.dataclass(frozen=True)
class ProfiledModel:
    """A model ready to profile.

    Attributes:
      name: its name in the outputs (the --model entry).
      model: the built Keras model.
      convention: its `deform_tf.profile.InputConvention` (float32 pixels 0..255 [n, H, W, C]
        -> the model's input).
      image_shape: (height, width, channels) of its input.
      weights: where its weights come from, for the settings: "none (initialization, seed S)",
        "imagenet", "file PATH" or "checkpoint PREFIX".
    """

    name: str
    model: keras.Model
    convention: profile.InputConvention
    image_shape: tuple
    weights: str

    @property
    def preprocess(self):
        """The callable of the convention, or None (the pixels as they are)."""
        return self.convention.fn


def _keras_home():
    """Where Keras caches downloads (its default, or $KERAS_HOME)."""
    return os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))


def preprocess_for(kind, auto):
    """The `InputConvention` of a `preprocess` value; `auto` gives the model's own (a callable
    returning it, which may raise ValueError when the model does not state one)."""
    if kind == profile.AUTO:
        return auto()
    return profile.named_preprocess(kind)


def _weights_source(weights, seed):
    if weights == "none":
        return f"none (initialization, seed {seed})"
    return weights if weights == "imagenet" else f"file {os.path.abspath(weights)}"


def _application(name, weights, image_size, preprocess, seed):
    entry = registry.MODELS[name]
    size = image_size or entry.default_input_shape[0]
    if size < entry.min_size:
        raise ValueError(f"{name} needs images of at least {entry.min_size} pixels, got "
                         f"`image_size={size}`.")
    if weights not in WEIGHTS and not os.path.isfile(weights):
        raise FileNotFoundError(f"`weights={weights!r}`: no such weights file (or give "
                                f"{' / '.join(WEIGHTS)}).")
    try:  # seeds Keras' global generators (the initialization of weights=none)
        model = entry.build((size, size, 3), seed=seed,
                            weights=None if weights == "none" else weights)
    except Exception as e:  # Keras raises several types for downloads and weight files.
        if weights == "imagenet":
            raise ValueError(
                f"Cannot get the ImageNet weights of {name}: they are not in the Keras cache "
                f"({os.path.join(_keras_home(), 'models')}) and could not be "
                f"downloaded ({str(e).splitlines()[0][:200]}). Download them on a machine with "
                "network access into that cache, or pass `weights=none` (initialization) or "
                "`weights=PATH`.") from None
        raise ValueError(f"Cannot build {name} with `weights={weights!r}` at "
                         f"{size}x{size}: {str(e).splitlines()[0][:300]}") from None
    return ProfiledModel(name, model, preprocess_for(preprocess, entry.input_convention),
                         (size, size, 3), _weights_source(weights, seed))


def _paper_vgg(name, weights, image_size, preprocess, seed):
    entry = registry.MODELS[name]
    height, _, channels = entry.default_input_shape
    size = image_size or height
    model = entry.build((size, size, channels), seed=seed)
    if weights == "imagenet":
        raise ValueError(f"{name} has no ImageNet weights: pass `weights=none` or a weights "
                         "file of this architecture.")
    if weights != "none":
        _load_weights(model, weights)
    return ProfiledModel(name, model, preprocess_for(preprocess, entry.input_convention),
                         (size, size, channels), _weights_source(weights, seed))


def _load_weights(model, path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`weights={path!r}`: no such weights file.")
    try:
        model.load_weights(path)
    except Exception as e:  # Keras raises several types for unreadable or mismatched files.
        raise ValueError(f"Cannot load weights {path!r} into {model.name}: "
                         f"{str(e).splitlines()[0][:300]}") from None


def _paper_config(model):
    """The config of one of the paper's nets read from a file (its layout and the builder's
    name vgg_<config>_<downsampling>), or None."""
    match = re.fullmatch(r"vgg_([a-z0-9]+)_[a-z_]+", model.name)
    if match and match.group(1) in models.STAGES and models.vgg_layout_layers(model):
        return match.group(1)
    return None


def _model_file(path, weights, image_size, preprocess, safe_mode):
    if weights != "none":
        raise ValueError(f"`weights` applies to model names, not to the saved model {path!r} "
                         "(which has its own weights).")
    model = runs.load_model(path, safe_mode=safe_mode, unsafe_hint=UNSAFE_HINT)
    if not model.inputs or len(model.inputs[0].shape) != 4:
        raise ValueError(f"{path!r} is not a model with one image input [batch, height, width, "
                         "channels].")
    height, width, channels = model.inputs[0].shape[1:]
    if height is None or width is None:
        if not image_size:
            raise ValueError(f"{path!r} takes images of any size: give `image_size`.")
        height = width = image_size
    elif image_size and (height, width) != (image_size, image_size):
        raise ValueError(f"{path!r} takes {height}x{width} images, not "
                         f"`image_size={image_size}`.")
    if path.endswith((".keras", ".h5")):
        config = _paper_config(model)
        auto = (lambda: registry.pipeline_convention(config)) if config else (
            lambda: profile.input_convention(model, profile.AUTO))
        source = f"file {os.path.abspath(path)} (its own weights)"
    else:
        auto = _run_convention(runs.read_fields(path))
        prefix = model_io.latest_checkpoint(path) if os.path.isdir(path) else path
        source = f"checkpoint {os.path.abspath(prefix)}"
    try:
        convention = preprocess_for(preprocess, auto)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return ProfiledModel(path, model, convention, (int(height), int(width), int(channels)),
                         source)


def _run_convention(fields):
    """fn() -> the input convention of a trained run's model (its model_config.json): the
    normalization of the data set it trained on (older runs of the paper's nets: their
    config's)."""
    dataset = runs.trained_dataset(fields)
    if dataset is not None:
        return lambda: registry.dataset_convention(dataset)
    config = fields.get("vgg", fields).get("config", "cifar10")
    return lambda: registry.pipeline_convention(config)


def resolve_model(spec, weights="none", image_size=None, preprocess="auto", seed=0,
                  safe_mode=True):
    """A `ProfiledModel` from a `model` entry.

    Args:
      spec: a name of `experiments.models.APPLICATIONS` or `PAPER_VGG`, a `.keras` file, a
        training run's directory, or a checkpoint directory or prefix written by a launcher
        (a run of any registered model: rebuilt by `experiments.runs`).
      weights: "none" (initialization), "imagenet" (keras.applications only; from the Keras cache
        or the network) or a weights file path.
      image_size: input height and width in pixels; None = the model's own (224 for
        keras.applications, the config's for the paper's nets, the file's input size).
      preprocess: one of PREPROCESS ("auto" = the model's own conventions: the family's
        preprocess_input, the paper's pipeline normalization, or what the model states itself;
        a model file that states none is refused).
      seed: initialization seed (keras.applications and the paper's nets).
      safe_mode: Keras' safe_mode for .keras files (False runs their Python code).

    Raises:
      ValueError, FileNotFoundError: unknown name, unreadable file, unavailable weights, no
        known input convention; the message names the input and the fix.
    """
    if spec in registry.APPLICATIONS:
        return _application(spec, weights, image_size, preprocess, seed)
    if spec in registry.PAPER_VGG:
        return _paper_vgg(spec, weights, image_size, preprocess, seed)
    checkpoints = runs.checkpoint_path(spec)
    if checkpoints != spec:  # a training run's directory: its checkpoints, under the name given
        return dataclasses.replace(
            _model_file(checkpoints, weights, image_size, preprocess, safe_mode), name=spec)
    if os.path.exists(spec) or os.path.exists(spec + ".index"):
        return _model_file(spec, weights, image_size, preprocess, safe_mode)
    raise ValueError(f"Unknown model {spec!r}: give a keras.applications name "
                     f"({', '.join(registry.APPLICATIONS)}), one of the paper's nets "
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
    """Checks `images` before anything is loaded; returns ("embedded"|"folder"|"tfrecord", x).

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
        f"`images={source!r}` is neither a folder of JPEG/PNG files nor a TFRecord file or "
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
        raise ValueError(f"`images={source or EMBEDDED!r}` holds {len(images)} images; "
                         f"`num_images={count}` were asked for: lower `num_images`.")
    return images.astype(np.float32)


OUTPUT_FILES = ("profile.csv", "profile.json", "profile.png")
SUMMARY_DIR = "summaries"


def check_output_dir(output_dir):
    """Raises ValueError unless `output_dir` is a folder, or can be made one (its nearest
    existing ancestor is a writable folder): checked before anything is computed."""
    if tf.io.gfile.exists(output_dir) and not tf.io.gfile.isdir(output_dir):
        raise ValueError(f"`output_dir={output_dir!r}` is a file, not a folder: choose a folder "
                         "(it is created if missing).")
    if "://" in output_dir:  # a remote file system: its own permissions apply
        return
    ancestor = os.path.abspath(output_dir)
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ValueError(f"`output_dir={output_dir!r}` cannot be created: {ancestor!r} is a "
                         "file.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"`output_dir={output_dir!r}`: cannot write into {ancestor!r} "
                         "(permission denied).")


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


def summary_tag(model):
    """A TensorBoard tag prefix for a `model` entry: a file's base name without its suffix,
    characters other than letters, digits, "_", "." and "-" replaced by "_"."""
    name = os.path.basename(os.path.normpath(model))
    name = re.sub(r"\.(keras|h5)$", "", name) or model
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _write_summaries(directory, rows, figure_png):
    """TensorBoard: per model and measure a curve over the points (step = point index; no
    value at undefined points), the figure, and the table as text."""
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
        for row in rows:
            for key in ("sensitivity_cosine", "sensitivity_euclidean", "relative_stability"):
                if getattr(row, key) is not None:
                    tf.summary.scalar(f"{summary_tag(row.model)}/{key}", getattr(row, key),
                                      step=row.point.index)
        tf.summary.image("profile", tf.io.decode_png(figure_png)[None], step=0)
        lines = ["| " + " | ".join(profile.COLUMNS) + " |",
                 "|" + "---|" * len(profile.COLUMNS)]
        lines += ["| " + " | ".join("" if value is None else str(value)
                                    for value in r.record().values()) + " |" for r in rows]
        tf.summary.text("profile", "\n".join(lines), step=0)
    writer.close()


def write_outputs(output_dir, rows, settings):
    """Writes OUTPUT_FILES and the TensorBoard summaries; returns the paths written.

    Undefined measures (None) are empty cells in profile.csv and null in profile.json, with the
    row's note; profile.json is strict JSON (no NaN or Infinity tokens).

    Args:
      output_dir: created if missing.
      rows: list of `deform_tf.profile.ProfileRow`.
      settings: JSON-serializable dict stored in profile.json beside the rows; its
        "deformation_text" titles the figure.
    """
    tf.io.gfile.makedirs(output_dir)
    paths = [os.path.join(output_dir, name) for name in OUTPUT_FILES]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=profile.COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(r.record() for r in rows)
    with tf.io.gfile.GFile(paths[0], "w") as f:
        f.write(text.getvalue())
    saved = json.dumps({"settings": settings, "rows": [r.record() for r in rows]},
                       indent=1, allow_nan=False)
    with tf.io.gfile.GFile(paths[1], "w") as f:
        f.write(saved)
    figure = profile_figure.plot_profiles(
        rows, title=f"Deformation stability profile ({settings.get('deformation_text', '')})")
    png = io.BytesIO()
    figure.savefig(png, format="png", dpi=120)
    with tf.io.gfile.GFile(paths[2], "wb") as f:
        f.write(png.getvalue())
    _write_summaries(os.path.join(output_dir, SUMMARY_DIR), rows, png.getvalue())
    return paths
