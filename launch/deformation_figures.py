"""Writes the paper's deformation pictures (Fig. 1 and Fig. 2) with the library's deformation.

Flag-free, for `launch.demo` and `launch.reproduce`: a real photo (matplotlib's sample
grace_hopper.jpg, 224x224) and Fashion-MNIST items of the embedded subset (padded to 32x32).
"""

import os

from absl import app
from absl import logging
import matplotlib
import numpy as np
import tensorflow as tf

from deform_tf.figures import deformation
from pipelines import idx

PHOTO_SIZE = 224  # The paper's ImageNet resolution.
DIGIT_SIZE = 32  # Synthetic MNIST: 28x28 items padded to 32x32 (docs/method.md#models).
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


def _save(figure, path):
    try:
        figure.savefig(path, dpi=150)
    except OSError as e:
        raise app.UsageError(f"Cannot write {path!r}: {e}", exitcode=2) from e
    logging.info("Wrote %s", path)
    return path


def write_figures(output_dir, grid_size=4, strength_photo=10.0, strength_digit=3.0, seed=0):
    """Writes OUTPUT_NAMES into `output_dir` (which must exist); returns their paths."""
    paths = [os.path.join(output_dir, name) for name in OUTPUT_NAMES]

    photo = load_photo(sample_photo_path())
    items, labels = idx.load_mnist_split(idx.EMBEDDED_FASHION_MNIST_DIR, "test")
    digit = pad_digit(items[first_of_class(labels, FIG2_DIGIT_CLASS)])

    panels = deformation.deformation_panels(photo, grid_size, strength_photo, (seed, 0))
    _save(deformation.plot_deformation_construction(panels, photo), paths[0])
    panels = deformation.deformation_panels(digit, grid_size, strength_digit, (seed, 1))
    _save(deformation.plot_deformation_construction(panels, digit), paths[1])

    originals, deformed, titles = [], [], []
    for k in range(FIG1_PHOTO_SEEDS):
        panels = deformation.deformation_panels(
            photo, grid_size, strength_photo, (seed, 100 + k))
        originals.append(photo)
        deformed.append(panels.deformed)
        titles.append(f"photo, C = {strength_photo:g} px")
    for k, label in enumerate(FIG1_DIGIT_CLASSES):
        item = pad_digit(items[first_of_class(labels, label)])
        panels = deformation.deformation_panels(
            item, grid_size, strength_digit, (seed, 200 + k))
        originals.append(item)
        deformed.append(panels.deformed)
        titles.append(f"{FASHION_MNIST_CLASSES[label]}, C = {strength_digit:g} px")
    figure = deformation.plot_examples(
        originals, deformed, titles=titles, pairs_per_row=2,
        suptitle=f"Random smooth deformations ({grid_size}\u00d7{grid_size} control grid)")
    _save(figure, paths[2])
    return paths
