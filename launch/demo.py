r"""Draws the paper's deformation pictures (Fig. 1 and Fig. 2) with the library's own deformation.

Writes three PNGs into --output_dir (and nothing else; existing files of these names are
replaced):

  fig2_photo.png     how a deformation is built (control grid and random sources, thin-plate
                     interpolation, field over the image, result) on matplotlib's sample photo
                     (grace_hopper.jpg) resized and centre-cropped to 224x224, strength
                     --strength_photo (the paper's ImageNet C = 10 px);
  fig2_digit.png     the same on a Fashion-MNIST item of the embedded subset, padded to 32x32 as
                     the synthetic-MNIST task (SPEC section 4), strength --strength_digit;
  fig1_examples.png  originals beside deformed copies: the photo with two seeds at
                     --strength_photo and four Fashion-MNIST items at --strength_digit.

All three use a --grid_size x --grid_size control grid (4 as in the paper's Fig. 2).

  python3 -m launch.demo --output_dir=out/demo
"""

import math
import os

from absl import app
from absl import flags
from absl import logging
import matplotlib
import numpy as np
import tensorflow as tf

from deform_tf.figures import deformation
from pipelines import idx

flags.DEFINE_string("output_dir", "out/demo",
                    "Directory for fig2_photo.png, fig2_digit.png and fig1_examples.png "
                    "(created if missing).")
flags.DEFINE_integer("grid_size", 4, "Control grid of the Fig. 2 pictures: n x n points, n >= 2.")
flags.DEFINE_float("strength_photo", 10.0,
                   "Deformation strength C (px) for the 224x224 photo (paper's ImageNet C).")
flags.DEFINE_float("strength_digit", 3.0,
                   "Deformation strength C (px) for the 32x32 Fashion-MNIST items "
                   "(synthetic-MNIST C in {1, 2, 3, 4}).")
flags.DEFINE_integer("seed", 0, "Seed of the random deformations (stateless; same seed, same "
                     "figures).")

flags.register_validator("output_dir", lambda v: bool(v and v.strip()),
                         message="--output_dir must be a non-empty path.")
flags.register_validator("grid_size", lambda v: v is not None and v >= 2,
                         message="--grid_size must be >= 2 (a thin-plate spline needs a grid "
                         "spanning the image).")
for _name in ("strength_photo", "strength_digit"):
    flags.register_validator(
        _name, lambda v: v is not None and math.isfinite(v) and v >= 0,
        message=f"--{_name} is a maximal offset in pixels and must be a finite number >= 0.")

FLAGS = flags.FLAGS

PHOTO_SIZE = 224  # The paper's ImageNet resolution.
DIGIT_SIZE = 32  # Synthetic MNIST: 28x28 items padded to 32x32 (SPEC section 4).
FIG1_PHOTO_SEEDS = 2  # The photo, deformed with this many different seeds in Fig. 1.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
FIG2_DIGIT_CLASS = 9  # Ankle boot: an outline with corners, where the deformation shows well.
FIG1_DIGIT_CLASSES = (0, 1, 7, 8)  # T-shirt, trouser, sneaker, bag.
OUTPUT_NAMES = ("fig2_photo.png", "fig2_digit.png", "fig1_examples.png")


def sample_photo_path():
    """matplotlib's bundled sample photo (Grace Hopper), 600x512 RGB JPEG."""
    return os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")


def load_photo(path, size=PHOTO_SIZE):
    """Decodes a JPEG, resizes the shorter side to `size`, centre-crops: [size, size, 3] uint8."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Sample photo not found: {path!r} (matplotlib's sample_data; some distributions "
            "strip it).")
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    height, width = int(image.shape[0]), int(image.shape[1])
    factor = size / min(height, width)
    resized_shape = [max(size, round(height * factor)), max(size, round(width * factor))]
    image = tf.image.resize(image, resized_shape, method="bilinear", antialias=True)
    image = tf.image.resize_with_crop_or_pad(image, size, size)
    return np.clip(np.round(image.numpy()), 0, 255).astype(np.uint8)


def pad_digit(image, size=DIGIT_SIZE):
    """Zero-pads a [28, 28] uint8 item symmetrically to [size, size, 1]."""
    before = (size - image.shape[0]) // 2
    after = size - image.shape[0] - before
    return np.pad(image, ((before, after), (before, after)))[..., None]


def first_of_class(labels, label):
    return int(np.flatnonzero(labels == label)[0])


def _prepare_output_dir(path):
    """Creates `path` if needed; raises app.UsageError (exit status 2) if it is not writable."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise app.UsageError(f"Cannot create --output_dir={path!r}: {e}", exitcode=2) from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise app.UsageError(f"--output_dir={path!r} is not writable.", exitcode=2)


def _save(figure, path):
    try:
        figure.savefig(path, dpi=150)
    except OSError as e:
        raise app.UsageError(f"Cannot write {path!r}: {e}", exitcode=2) from e
    logging.info("Wrote %s", path)
    return path


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}", exitcode=2)
    output_dir = FLAGS.output_dir
    _prepare_output_dir(output_dir)
    paths = [os.path.join(output_dir, name) for name in OUTPUT_NAMES]
    grid_size, seed = FLAGS.grid_size, FLAGS.seed

    photo = load_photo(sample_photo_path())
    items, labels = idx.load_mnist_split(idx.EMBEDDED_FASHION_MNIST_DIR, "test")
    digit = pad_digit(items[first_of_class(labels, FIG2_DIGIT_CLASS)])

    panels = deformation.deformation_panels(photo, grid_size, FLAGS.strength_photo, (seed, 0))
    _save(deformation.plot_deformation_construction(panels, photo), paths[0])
    panels = deformation.deformation_panels(digit, grid_size, FLAGS.strength_digit, (seed, 1))
    _save(deformation.plot_deformation_construction(panels, digit), paths[1])

    originals, deformed, titles = [], [], []
    for k in range(FIG1_PHOTO_SEEDS):
        panels = deformation.deformation_panels(
            photo, grid_size, FLAGS.strength_photo, (seed, 100 + k))
        originals.append(photo)
        deformed.append(panels.deformed)
        titles.append(f"photo, C = {FLAGS.strength_photo:g} px")
    for k, label in enumerate(FIG1_DIGIT_CLASSES):
        item = pad_digit(items[first_of_class(labels, label)])
        panels = deformation.deformation_panels(
            item, grid_size, FLAGS.strength_digit, (seed, 200 + k))
        originals.append(item)
        deformed.append(panels.deformed)
        titles.append(f"{FASHION_MNIST_CLASSES[label]}, C = {FLAGS.strength_digit:g} px")
    figure = deformation.plot_examples(
        originals, deformed, titles=titles, pairs_per_row=2,
        suptitle=f"Random smooth deformations ({grid_size}\u00d7{grid_size} control grid)")
    _save(figure, paths[2])
    return 0


def parse_flags(argv):
    """Parses flags like absl's default, but a bad flag value exits with status 2 (usage)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        app.usage(shorthelp=True, detailed_error=error, exitcode=2)
        raise  # Unreachable: usage() exits.


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
