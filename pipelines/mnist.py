"""MNIST and Fashion-MNIST input pipelines: locating the IDX files, normalization, prototypes.

`find_mnist_dir` looks for the four MNIST-layout IDX files in a user-given directory, else in the
standard locations (`SEARCH_PATHS`), else (Fashion-MNIST only) falls back to the small embedded
subset `pipelines.idx.EMBEDDED_FASHION_MNIST_DIR`, saying so in the log. `load_arrays` reads one
split with the strict IDX reader into memory; `load` (one pass, in file order) and `train_stream`
(the stateless epoch order of `pipelines.order`, from any position) return unbatched datasets of
`(image float32 [pad_to, pad_to, 1] normalized, label int32)` for `pipelines.core.finish`: the
28x28 images are zero-padded (background 0 before normalization), centred, to 32x32 so that the
CIFAR-10 net runs on them unchanged (docs/method.md#data). `prototypes`: each class' first image,
the single prototype per class of the paper's synthetic task (Fig. 5; see `pipelines.synthetic`).
"""

import os

from absl import logging
import numpy as np
import tensorflow as tf

from pipelines import core
from pipelines import idx
from pipelines import order

DATASETS = ("fashion_mnist", "mnist")

# Standard locations searched, in order, when no data_dir is given. Only MNIST-layout IDX files
# count (Keras' `mnist.npz` does not). Debian's package dataset-fashion-mnist installs
# /usr/share/datasets/fashion-mnist; Keras' fashion_mnist download helper uses
# ~/.keras/datasets/fashion-mnist.
SEARCH_PATHS = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist", "~/.keras/datasets/fashion-mnist"),
    "mnist": ("~/.keras/datasets/mnist", "/usr/share/datasets/mnist"),
}

# Per-dataset pixel mean and standard deviation on [0, 1] pixels (training split).
MEAN = {"fashion_mnist": 0.2860, "mnist": 0.1307}
STD = {"fashion_mnist": 0.3530, "mnist": 0.3081}

EXPECTED_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_EXPECTED_FILES_TEXT = ", ".join(f"{name}[.gz]" for name in EXPECTED_FILES)
_DISPLAY_NAMES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST"}
IMAGE_SIZE = idx.MNIST_IMAGE_SHAPE[0]  # 28 pixels


def _check_dataset(dataset):
    if dataset not in DATASETS:
        raise ValueError(f"`dataset` must be one of {DATASETS}, got {dataset!r}.")


def _missing_files(directory):
    """The EXPECTED_FILES of which neither the raw nor the .gz version exists in `directory`."""
    return [name for name in EXPECTED_FILES
            if not (os.path.isfile(os.path.join(directory, name))
                    or os.path.isfile(os.path.join(directory, name + ".gz")))]


def find_mnist_dir(data_dir=None, dataset="fashion_mnist", search_paths=None):
    """Finds the directory holding the MNIST-layout IDX files of `dataset`.

    A directory counts only if it holds all four files (EXPECTED_FILES, each raw or gzipped).
    Whether they are well-formed is checked when they are read (`load`, `prototypes`).

    Args:
      data_dir: str or os.PathLike, or None. If given, it is the only directory considered: a
        missing or incomplete one raises, it never silently falls back.
      dataset: 'fashion_mnist' or 'mnist'.
      search_paths: directories to try in order when `data_dir` is None ('~' is expanded);
        defaults to SEARCH_PATHS[dataset].

    Returns:
      (directory, is_embedded): the directory (str) and whether it is the embedded Fashion-MNIST
      subset (4000 train / 1000 test images). Logs the choice with absl.logging.info.

    Raises:
      FileNotFoundError: `data_dir` is missing or incomplete (the message names it and the
        expected files); or, for 'mnist', none of the search paths holds the files.
      ValueError: unknown `dataset`.
    """
    _check_dataset(dataset)
    name = _DISPLAY_NAMES[dataset]
    embedded = os.path.realpath(idx.EMBEDDED_FASHION_MNIST_DIR)
    if data_dir is not None:
        directory = os.fspath(data_dir)
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"{name} data_dir {directory!r} does not exist or is not a directory. It must "
                f"hold the IDX files {_EXPECTED_FILES_TEXT}.")
        missing = _missing_files(directory)
        if missing:
            raise FileNotFoundError(
                f"{name} data_dir {directory!r} is incomplete: missing "
                f"{', '.join(m + '[.gz]' for m in missing)}. It must hold the IDX files "
                f"{_EXPECTED_FILES_TEXT}.")
        logging.info("Reading %s from %s (given data_dir).", name, directory)
        return directory, os.path.realpath(directory) == embedded
    if search_paths is None:
        search_paths = SEARCH_PATHS[dataset]
    candidates = [os.path.expanduser(os.fspath(p)) for p in search_paths]
    for directory in candidates:
        if os.path.isdir(directory) and not _missing_files(directory):
            logging.info("Reading %s from %s.", name, directory)
            return directory, os.path.realpath(directory) == embedded
    if dataset == "fashion_mnist":
        logging.info(
            "No Fashion-MNIST found in %s; using the embedded 4000/1000-image subset %s (not the "
            "full 60000/10000 images: install the Debian package dataset-fashion-mnist or pass "
            "data_dir for those).", ", ".join(candidates) or "(no search paths)",
            idx.EMBEDDED_FASHION_MNIST_DIR)
        return idx.EMBEDDED_FASHION_MNIST_DIR, True
    raise FileNotFoundError(
        f"No MNIST IDX files ({_EXPECTED_FILES_TEXT}) found in any of {candidates}. Pass "
        "--data_dir (data_dir=...) pointing at a directory holding them, or use "
        "dataset='fashion_mnist', which falls back to the embedded Fashion-MNIST subset.")


def normalize(images, dataset="fashion_mnist"):
    """Normalizes pixels with the dataset's mean and std: (x - MEAN) / STD.

    Args:
      images: uint8 pixels 0..255, or floats in [0, 1]; any shape; numpy or tensor.
      dataset: 'fashion_mnist' or 'mnist'.

    Returns:
      A float32 tensor of the same shape.
    """
    _check_dataset(dataset)
    return core.normalize(images, MEAN[dataset], STD[dataset])


def denormalize(images, dataset="fashion_mnist"):
    """Inverse of `normalize`: float32 pixels back in [0, 1] (x * STD + MEAN), same shape."""
    _check_dataset(dataset)
    return core.denormalize(images, MEAN[dataset], STD[dataset])


def _check_pad_to(pad_to):
    if not isinstance(pad_to, int) or pad_to < IMAGE_SIZE:
        raise ValueError(f"`pad_to` must be an int >= {IMAGE_SIZE} pixels, got {pad_to!r}.")
    before = (pad_to - IMAGE_SIZE) // 2
    return before, pad_to - IMAGE_SIZE - before


def _pad_uint8(images, pad_to):
    """Zero-pads uint8 images [N, 28, 28] to [N, pad_to, pad_to, 1], centred (extra row at the
    bottom/right when pad_to - 28 is odd)."""
    before, after = _check_pad_to(pad_to)
    return np.pad(images, [(0, 0), (before, after), (before, after)])[..., None]


def load_arrays(split, dataset="fashion_mnist", data_dir=None, pad_to=32, max_examples=None,
                search_paths=None):
    """One split, read and checked by the strict IDX reader, padded, in memory.

    Args:
      split: 'train' or 'test'.
      dataset: 'fashion_mnist' or 'mnist'.
      data_dir: directory of the IDX files, or None to search (see `find_mnist_dir`).
      pad_to: output size in pixels (>= 28); the 28x28 image is centred in a zero background
        (extra row / column at the bottom / right when pad_to - 28 is odd).
      max_examples: keep only the first max_examples examples of the split; None keeps all.
      search_paths: overrides `SEARCH_PATHS[dataset]` (see `find_mnist_dir`).

    Returns:
      (images uint8 [N, pad_to, pad_to, 1], labels int32 [N]) in file order.

    Raises:
      FileNotFoundError / ValueError: see `find_mnist_dir` and `pipelines.idx.load_mnist_split`;
        ValueError for a bad `pad_to` or `max_examples`.
    """
    _check_dataset(dataset)
    _check_pad_to(pad_to)
    _check_max_examples(max_examples)
    directory, _ = find_mnist_dir(data_dir, dataset, search_paths)
    return read_arrays(directory, split, pad_to, max_examples)


def _check_max_examples(max_examples):
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"`max_examples` must be None or an int >= 1, got {max_examples!r}.")


def read_arrays(directory, split, pad_to=32, max_examples=None):
    """`load_arrays` from a directory already found by `find_mnist_dir` (no search, no log):
    for callers that read several splits of one directory."""
    _check_pad_to(pad_to)
    _check_max_examples(max_examples)
    images, labels = idx.load_mnist_split(directory, split)
    return _pad_uint8(images[:max_examples], pad_to), labels[:max_examples].astype(np.int32)


def load(split, dataset="fashion_mnist", data_dir=None, input_context=None, pad_to=32,
         max_examples=None, search_paths=None):
    """One split of (Fashion-)MNIST as an unbatched dataset of normalized, padded images.

    The IDX files are read and validated eagerly, when this function is called (so a corrupt or
    missing file raises here, naming the file), into memory (`load_arrays`: 60000 x 32 x 32
    bytes at most); normalization runs in the dataset, on blocks of examples, after sharding.

    Args:
      split, dataset, data_dir, pad_to, max_examples, search_paths: see `load_arrays`.
      input_context: a `tf.distribute.InputContext`, or None. Examples are sharded across input
        pipelines (example i goes to pipeline i mod num_input_pipelines).

    Returns:
      A finite, unshuffled `tf.data.Dataset` of known cardinality, of `(image float32
      [pad_to, pad_to, 1], label int32 scalar)` in file order; images normalized with
      MEAN/STD[dataset] (the padding equals normalize(0) = -MEAN / STD).
    """
    images, labels = load_arrays(split, dataset, data_dir, pad_to, max_examples, search_paths)
    return examples(images, labels, dataset, input_context)


def examples(images, labels, dataset="fashion_mnist", input_context=None):
    """One pass over a split from `load_arrays` in file order, normalized (see `load`)."""
    _check_dataset(dataset)
    return core.array_examples(images, labels, lambda x: normalize(x, dataset), input_context)


def train_stream(images, labels, seed, dataset="fashion_mnist", first_position=0,
                 input_context=None, deterministic=True):
    """Training examples in the stateless epoch order of `pipelines.order.index_stream`.

    Args:
      images, labels: a split from `load_arrays` (labels may be replaced, e.g. random labels).
      seed: int in [0, 2**32), seeds the order.
      dataset: 'fashion_mnist' or 'mnist', chooses the normalization constants.
      first_position: global stream position to start at (step * global batch size).
      input_context: `tf.distribute.InputContext` or None; pipeline w of n yields the stream
        positions w, w+n, ...
      deterministic: keep a deterministic element order with parallel maps.

    Returns:
      An infinite dataset of `(image float32 [H, W, 1] normalized, label int32 [])`; no
      augmentation.
    """
    _check_dataset(dataset)
    return order.array_stream(images, labels, seed,
                              lambda image, label, index, epoch: (normalize(image, dataset), label),
                              first_position, input_context, deterministic=deterministic)


def prototypes(dataset="fashion_mnist", data_dir=None, num_classes=10, split="train", pad_to=32,
               search_paths=None):
    """The first image of each class 0..num_classes-1 of a split (paper Fig. 5 prototypes).

    Args:
      dataset, data_dir, split, pad_to, search_paths: as for `load`.
      num_classes: K in 1..10: the prototypes of classes 0..K-1.

    Returns:
      (images, labels): images np.float32 [K, pad_to, pad_to, 1] in [0, 1] (NOT normalized; zero
      background padding), labels np.int32 [K] equal to 0..K-1.

    Raises:
      ValueError: bad `num_classes`, or a class with no example in the split.
    """
    _check_dataset(dataset)
    if not isinstance(num_classes, int) or not 1 <= num_classes <= idx.MNIST_NUM_CLASSES:
        raise ValueError(f"`num_classes` must be an int in 1..10, got {num_classes!r}.")
    directory, _ = find_mnist_dir(data_dir, dataset, search_paths)
    images, labels = idx.load_mnist_split(directory, split)
    firsts = []
    for c in range(num_classes):
        hits = np.flatnonzero(labels == c)
        if hits.size == 0:
            raise ValueError(f"The {split} split in {directory!r} has no example of class {c}.")
        firsts.append(hits[0])
    padded = _pad_uint8(images[firsts], pad_to)
    return padded.astype(np.float32) / np.float32(255.0), np.arange(num_classes, dtype=np.int32)
