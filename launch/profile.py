r"""Deformation-stability profile of Keras models: per-layer sensitivity and relative stability.

Measures, at every point of each --model (by default the input, every nonlinearity and
downsampling output and the final output; the paper's points for its VGG nets; or --layers), the
deformation sensitivity with the cosine and the Euclidean distance and the relative stability
R_f = D_f / G_f, on --num_images images and one random deformation each (`deform_tf.profile`,
which the Python API calls too):

  python -m launch.profile --model=resnet50 --weights=none --images=DIR_OR_DATASET \
      --num_images=128 --output_dir=/tmp/prof

--model: comma-separated keras.applications names (vgg16, resnet50, mobilenet_v2,
efficientnet_b0, densenet121, convnext_tiny, ...; see `experiments.models.APPLICATIONS`), the
paper's nets (vgg_<cifar10|imagenet|mnist>_<downsampling>), .keras files, or the output or
checkpoint directory of a training run of any registered model (`launch.train`, the paper's
launchers; a module:function builder must be importable again). Each model's input convention
is applied after the deformation: the family's keras.applications `preprocess_input`, the
training pipeline's normalization for the paper's nets and for a training run (of the data set
it trained on), the pixels as they are for a model that normalizes its own input (a leading
Rescaling or Normalization layer); any other model needs --preprocess (the command says so and
exits). The deformation follows the paper's settings for the image size unless --grid_size /
--strength are given (`deform_tf.deformation.default_tps`); with --seed=s it is drawn from the
stateless seed [s, 1000003] and the noise from (s, 7), as a training run's measurements are
(`deform_tf.deformation`). --images: a folder
of JPEG/PNG files, an ImageNet TFRecord file or glob, or the embedded Fashion-MNIST subset (the
default). --layers: layer names, `re:<regex>` or `class:<keras layer class>`, comma-separated.

Prints a summary per model (input, most sensitive point, last feature map, output) and writes
into --output_dir: profile.csv (one row per model and point), profile.json (the rows and the
settings: weights, input convention and deformation per model, versions), profile.png (the
curves against relative depth) and summaries/ (TensorBoard). Bad flags, unreadable images, an
unknown model, no input convention, unavailable weights or an unusable --output_dir: one
message, exit status 2, before anything is computed or written. Existing outputs are kept: with
--overwrite they are moved into --output_dir/replaced-<time>/ (nothing is deleted).
"""

import importlib.metadata
import os
import platform
import subprocess
import sys
import time
import warnings

from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

from deform_tf import deformation as deformation_lib
from deform_tf import profile
from deform_tf import sensitivity
from launch import cli
from experiments import profiling as profile_lib

flags.DEFINE_string("output_dir", None, "Where profile.csv, profile.json, profile.png and "
                    "summaries/ are written. Required.")
flags.DEFINE_bool("overwrite", False, "Move existing outputs in --output_dir aside into "
                  "replaced-<time>/ (nothing is deleted) instead of refusing.")
flags.DEFINE_integer("seed", 0, "Seed of the initialization (model names), the deformations "
                     "([seed, 1000003]) and the noise ((seed, 7)), as in a training run.")
flags.DEFINE_list("model", None, "Comma-separated models: keras.applications names, the paper's "
                  "vgg_<config>_<downsampling> nets, .keras files, training runs' output or "
                  "checkpoint directories.")
flags.DEFINE_string("weights", "none", "none (initialization), imagenet (keras.applications; "
                    "from the Keras cache or the network) or a weights file.")
flags.DEFINE_integer("image_size", None, "Input height and width in pixels; default: each "
                     "model's own (224 for keras.applications).")
flags.DEFINE_multi_string("layers", None, "Points to measure: layer names, re:<regex>, "
                          "class:<keras layer class>, comma-separated; default: the input, every "
                          "nonlinearity and downsampling output and the final output.")
flags.DEFINE_string("images", None, "A folder of JPEG/PNG images, an ImageNet TFRecord file or "
                    "glob, or fashion_mnist (the embedded subset, the default).")
flags.DEFINE_integer("num_images", 128, "Images N (the median runs over all N(N-1)/2 pairs).")
flags.DEFINE_enum("deformation", "tps", ["tps", "diffeo"], "tps: random thin-plate spline "
                  "(--grid_size, --strength); diffeo: Petrini et al.'s random diffeomorphism "
                  "(--temperature, --cutoff).")
flags.DEFINE_integer("grid_size", None, "TPS control grid (n x n points, border included); "
                     "default: the paper's for the image size (3 at 32 px, 5 at 224 px).")
flags.DEFINE_float("strength", None, "TPS strength C in pixels (offsets uniform in [-C, C]); "
                   "default: the paper's for the image size (2 at 32 px, 10 at 224 px, scaled "
                   "between and beyond).")
flags.DEFINE_float("temperature", None, "Diffeo temperature T; default: the T whose RMS "
                   "displacement equals the TPS deformation's (--grid_size, --strength).")
flags.DEFINE_integer("cutoff", 3, "Diffeo cutoff: the highest sine mode per axis.")
flags.DEFINE_integer("chunk_size", None, "Images per group (clean, deformed, noisy) and forward "
                     "chunk; default: what keeps a chunk's measured outputs under 512 MiB.")
flags.DEFINE_enum("preprocess", "auto", list(profile_lib.PREPROCESS), "Input convention: auto "
                  "(each model's own; a model file that does not state one is refused), none "
                  "(pixels 0..255 as they are), unit (pixels / 255), or a keras.applications "
                  "mode (caffe, tf, torch).")
flags.DEFINE_bool("unsafe_load", False, "Load .keras files holding Python code (Lambda layers): "
                  "runs that code, only for files you trust.")

flags.register_validator("num_images", lambda v: v >= 2,
                         message="--num_images must be >= 2 (pairwise distances).")
flags.register_validator("image_size", lambda v: v is None or v >= 2,
                         message="--image_size must be >= 2 pixels.")
flags.register_validator("grid_size", lambda v: v is None or v >= 2,
                         message="--grid_size must be >= 2.")
flags.register_validator("strength", lambda v: v is None or v >= 0,
                         message="--strength must be >= 0 pixels.")
flags.register_validator("temperature", lambda v: v is None or v >= 0,
                         message="--temperature must be >= 0.")
flags.register_validator("cutoff", lambda v: v >= 1, message="--cutoff must be >= 1.")
flags.register_validator("chunk_size", lambda v: v is None or v >= 1,
                         message="--chunk_size must be a positive integer.")

FLAGS = flags.FLAGS


def _check_flags():
    if not FLAGS.model:
        raise cli.usage_error("--model is required: keras.applications names, the paper's "
                              "vgg_<config>_<downsampling>, .keras files or training runs.")
    if len(set(FLAGS.model)) != len(FLAGS.model):
        raise cli.usage_error(f"--model lists a model twice: {FLAGS.model}.")
    if not FLAGS.output_dir:
        raise cli.usage_error("--output_dir is required: where the profile is written.")
    try:
        profile_lib.check_output_dir(FLAGS.output_dir)
    except ValueError as e:
        raise cli.usage_error(str(e)) from None
    existing = profile_lib.existing_outputs(FLAGS.output_dir)
    if existing and not FLAGS.overwrite:
        raise cli.usage_error(f"{FLAGS.output_dir} already holds {', '.join(existing)}; pass "
                              "--overwrite to move them aside or choose another --output_dir.")


class _Progress:
    """Forward passes of one model on stderr: rewritten in place on a terminal, else a plain
    line at about every tenth of the way (no control characters in redirected logs)."""

    def __init__(self, name, stream=None):
        self.name, self.stream = name, stream or sys.stderr
        self.start, self.shown = time.perf_counter(), 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, done, total):
        elapsed = time.perf_counter() - self.start
        left = elapsed * (total - done) / done if done else 0.0
        line = (f"{self.name}: forward passes {done}/{total} images, {elapsed:.1f} s"
                + (f", ~{left:.0f} s left" if done < total else ""))
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done >= total else ""))
        elif done >= total or done - self.shown >= total / 10:
            self.stream.write(line + "\n")
            self.shown = done
        self.stream.flush()


def _deformation():
    return profile.Deformation(FLAGS.deformation, FLAGS.grid_size, FLAGS.strength,
                               FLAGS.temperature, FLAGS.cutoff, FLAGS.seed)


def _settings(models, deformation, seconds):
    per_model = {}
    for m in models:
        per_model[m.name] = {
            "weights": m.weights,
            "preprocess": {"name": m.convention.name, "description": m.convention.description},
            "image_shape": list(m.image_shape),
            "deformation": deformation.settings(*m.image_shape[:2]),
            "seconds": seconds[m.name],
        }
    return {
        "models": per_model,
        "layers": FLAGS.layers,
        "images": FLAGS.images or profile_lib.EMBEDDED,
        "num_images": FLAGS.num_images,
        "seed": FLAGS.seed,
        "noise_seed": list(deformation_lib.noise_seed(FLAGS.seed)),
        "deformation_seed": [FLAGS.seed, deformation_lib.MEASUREMENT_STREAM],
        "chunk_size": FLAGS.chunk_size,
        "deformation_text": "; ".join(sorted({
            deformation.settings(*m.image_shape[:2])["text"] for m in models})),
        "versions": _versions(),
    }


def _versions():
    """The versions of what measured: Python, numpy, TF, Keras, deform_tf and its git commit
    (when run from a checkout)."""
    try:
        package = importlib.metadata.version("deform-tf")
    except importlib.metadata.PackageNotFoundError:
        package = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
            capture_output=True, text=True, check=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "numpy": np.__version__,
            "tensorflow": tf.__version__, "keras": keras.__version__, "deform_tf": package,
            "deform_tf_commit": commit}


def _log_warnings(caught):
    for warning in caught:
        logging.warning("%s", warning.message)


def _prepare():
    """(models, images by shape, runners, deformation functions); bad input -> usage error."""
    deformation = _deformation()
    try:
        layers = profile.parse_layers(FLAGS.layers)
        profile_lib.check_image_source(FLAGS.images)
        models = [profile_lib.resolve_model(spec, FLAGS.weights, FLAGS.image_size,
                                            FLAGS.preprocess, FLAGS.seed,
                                            safe_mode=not FLAGS.unsafe_load)
                  for spec in FLAGS.model]
        images = {}
        for m in models:
            if m.image_shape not in images:
                images[m.image_shape] = profile_lib.load_images(FLAGS.images, FLAGS.num_images,
                                                                m.image_shape)
        runners = []
        for m in models:
            try:
                runners.append(sensitivity.RepresentationRunner(
                    m.model, layers=layers, preprocess=m.preprocess))
            except ValueError as e:
                raise ValueError(f"{m.name}: {e}") from None
        # Every deformation is built before the first measurement (bad parameters fail here).
        deform_fns = [deformation.function(*m.image_shape[:2]) for m in models]
    except (FileNotFoundError, ValueError) as e:
        raise cli.usage_error(str(e)) from None
    return deformation, models, images, runners, deform_fns


def main(argv):
    if len(argv) > 1:
        raise cli.usage_error(f"Unexpected arguments: {' '.join(argv[1:])}")
    _check_flags()
    logging.set_verbosity(logging.INFO)
    deformation, models, images, runners, deform_fns = _prepare()
    rows, seconds = [], {}
    for m, runner, deform_fn in zip(models, runners, deform_fns):
        text = deformation.settings(*m.image_shape[:2])["text"]
        logging.info("Profiling %s: %d points, %s images, preprocess %s, %s", m.name,
                     len(runner.points), "x".join(map(str, m.image_shape)),
                     m.convention.description, text)
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                rows += profile.profile(
                    None, images[m.image_shape], deform_fn, runner=runner, name=m.name,
                    noise_seed=deformation_lib.noise_seed(FLAGS.seed),
                    batch_size=FLAGS.chunk_size,
                    progress=_Progress(m.name))
            except ValueError as e:
                raise cli.usage_error(f"{m.name}: {e}") from None
        _log_warnings(caught)
        seconds[m.name] = round(time.perf_counter() - start, 1)
        logging.info("%s: %.1f s", m.name, seconds[m.name])
    settings = _settings(models, deformation, seconds)
    moved = profile_lib.move_aside(FLAGS.output_dir)
    if moved:
        logging.info("Moved the previous outputs to %s", moved)
    for path in profile_lib.write_outputs(FLAGS.output_dir, rows, settings):
        logging.info("Wrote %s", path)
    details = {m.name: f"weights {m.weights}; preprocess {m.convention.description}; "
               f"{deformation.settings(*m.image_shape[:2])['text']}" for m in models}
    print(profile.format_summary(rows, details))


if __name__ == "__main__":
    cli.run(main)
