"""The data-set registry: every data set a run trains on, behind one interface. No flags here.

`DATASETS` maps a name to a `Dataset`: its image shape and classes, its pixel normalization
(float32 [0, 1] pixels -> the model's input; what a net trained on it expects), the config of the
paper's VGG net it trains by default, and `build(spec, batch_size, seed, num_measure_images)`,
which returns the run's `Data` (training stream, evaluation stream, measured images) and the
number of training examples per epoch (None for an infinite stream):

  cifar10, fashion_mnist, mnist   in memory (`InMemory`): every record is read and checked when
                                  `build` runs (the test split too)
  imagenet                        TFRecord shards (`ImageNet`), counted from their record headers
                                  (framing checked; both splits)
  synthetic                       the paper's prototype task (`Synthetic`): fresh deformations
                                  of one Fashion-MNIST (or MNIST) image per class

So everything that can be checked is checked before a run writes anything. Training streams are
pure functions of (seed, position) (`pipelines.order`): `Data.train(input_context, start_step)`
rebuilds the stream of a run resumed at `start_step` from position start_step * batch_size, so a
checkpoint needs no input pipeline state. Random labels replace the labels of the training set
once (by the example's index in canonical order); they are trained without augmentation (as in
the random-label literature), so that every epoch sees the same (image, label) pairs. The
in-memory data sets also give the training set as trained (`Data.evaluate_train`: the labels
trained on, no augmentation), so a run records how well it fits its training labels.

Grayscale images are given to a model that takes 3 channels as RGB (the channel repeated) when
`DataSpec.channels` is 3; the experiments layer sets it from the model's needs and records it.
Errors are ValueErrors or FileNotFoundErrors naming the setting in backquotes (`random_labels`,
`train_strength`, ...) and the fix.
"""

import dataclasses
import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from pipelines import cifar10
from pipelines import core
from pipelines import imagenet
from pipelines import labels as labels_lib
from pipelines import mnist
from pipelines import order
from pipelines import synthetic

EVAL_BATCH_SIZE = 250
# ImageNet input order: shards read concurrently and encoded records permuted together.
IMAGENET_CYCLE_LENGTH = 16
IMAGENET_WINDOW = 1024

# Errors an input pipeline raises on bad data (a failed in-graph check, a corrupt record, a file
# gone missing).
DATA_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What to load: the data set and how to feed it."""

    dataset: str  # a key of DATASETS
    data_dir: Optional[str] = None
    max_train_examples: Optional[int] = None
    random_labels: bool = False
    train_grid_size: int = 3
    train_strength: float = 0.0  # training-time deformation, 0 = off
    image_size: int = 224  # imagenet only
    synthetic_strength: float = 1.0  # synthetic only: C of the task
    synthetic_source: str = "fashion_mnist"  # synthetic only: where the prototypes come from
    num_test_examples: int = 1000  # synthetic only: size of the fixed test set
    channels: Optional[int] = None  # None: the data set's own; 3: grayscale given as RGB

    def train_deformation(self):
        """The `Deformation` of training images, or None (train_strength 0)."""
        if self.train_strength <= 0:
            return None
        return core.Deformation("tps", self.train_grid_size, self.train_strength)


@dataclasses.dataclass
class Data:
    """The data of a run.

    train: fn(input_context, start_step) -> dataset of per-worker batches (images, labels) of
      size batch_size / num_workers, repeating forever, deterministic given the config's seed:
      the batches of steps start_step, start_step + 1, ...
    evaluate: fn() -> finite dataset of batches for accuracy, or None.
    measure_images: [N, H, W, C] float32 images for the sensitivity measurements.
    describe_error: None, or fn(error, split, position, input_context) -> message naming the
      file and record behind a `tf.errors.OpError` raised by the input pipeline of `split`
      ("train" or "eval") after `position` examples (global) were read without error.
    evaluate_train: None, or fn() -> finite dataset of batches of the training set with the
      labels trained on (random labels where the run uses them) and no augmentation: how well
      the run fits its training labels, in inference mode (final.json's train_accuracy).
    """

    train: Callable
    evaluate: Optional[Callable]
    measure_images: np.ndarray
    describe_error: Optional[Callable] = None
    evaluate_train: Optional[Callable] = None


def count_cache_path():
    """Where record counts of TFRecord shards are cached: $XDG_CACHE_HOME/deform_tf (default
    ~/.cache/deform_tf)/record_counts.json."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "deform_tf", "record_counts.json")


def _take_images(dataset, count):
    """The first `count` images of an unbatched (image, label) dataset, as numpy."""
    images = [image for image, _ in dataset.take(count).as_numpy_iterator()]
    if len(images) < 2:
        raise ValueError(f"The evaluation split has {len(images)} images; at least 2 are needed "
                         "for the sensitivity measurement.")
    return np.stack(images).astype(np.float32)


def _to_rgb(images, labels):
    return tf.image.grayscale_to_rgb(images), labels


class Dataset:
    """One data set of the registry (subclasses implement `_build` and `_measure_images`).

    Attributes:
      name: its key in DATASETS.
      title: its name for people.
      num_classes: the number of classes (labels 0 .. num_classes - 1).
      channels: the channels of its images.
      vgg_config: the config of the paper's VGG net it trains by default (`models.STAGES`).
    """

    name = title = vgg_config = ""
    num_classes = 10
    channels = 1

    def image_shape(self, spec):
        """(height, width, channels) of the images a model gets (`spec.channels` applied)."""
        height, width = self._image_size(spec)
        return (height, width, spec.channels or self.channels)

    def normalize(self, images, spec=None):
        """float32 [0, 1] pixels [..., channels] -> the model's input (the pipeline's)."""
        raise NotImplementedError

    def build(self, spec, batch_size, seed, num_measure_images):
        """(Data, training examples per epoch or None if infinite); everything checked.

        Raises:
          FileNotFoundError, ValueError: missing or bad data (named), bad settings.
        """
        self._check_channels(spec)
        data, num_train = self._build(spec, batch_size, seed, num_measure_images)
        if spec.channels and spec.channels != self.channels:
            data = _rgb_data(data)
        return data, num_train

    def measure_images(self, spec, count, seed=0):
        """The first `count` images of the evaluation split: [count, H, W, C] float32."""
        self._check_channels(spec)
        images = self._measure_images(spec, count, seed)
        if spec.channels and spec.channels != self.channels:
            images = np.repeat(images, spec.channels, axis=-1)
        return images

    def _check_channels(self, spec):
        if spec.channels not in (None, self.channels) and not (
                self.channels == 1 and spec.channels == 3):
            raise ValueError(f"Data set {self.name!r} has {self.channels}-channel images; "
                             f"`channels={spec.channels}` cannot be given (only grayscale "
                             "images can be given as RGB, `channels=3`).")

    def _image_size(self, spec):
        raise NotImplementedError

    def _build(self, spec, batch_size, seed, num_measure_images):
        raise NotImplementedError

    def _measure_images(self, spec, count, seed):
        raise NotImplementedError


def _rgb_data(data):
    """`data` with its grayscale images given as RGB (the channel repeated three times)."""

    def train(input_context, start_step=0):
        return data.train(input_context, start_step).map(_to_rgb)

    def wrap(make):
        return None if make is None else (lambda: make().map(_to_rgb))

    return dataclasses.replace(
        data, train=train, evaluate=wrap(data.evaluate), evaluate_train=wrap(data.evaluate_train),
        measure_images=np.repeat(data.measure_images, 3, axis=-1))


@dataclasses.dataclass(frozen=True)
class _Arrays:
    """An in-memory data set's checked splits: (images uint8 [N, H, W, C], labels int32 [N])."""

    train: tuple
    test: tuple


class InMemory(Dataset):
    """CIFAR-10, Fashion-MNIST or MNIST, read whole into memory (each record checked)."""

    def __init__(self, name):
        self.name = name
        self.is_cifar = name == "cifar10"
        self.title = {"cifar10": "CIFAR-10", "fashion_mnist": "Fashion-MNIST",
                      "mnist": "MNIST"}[name]
        self.channels = 3 if self.is_cifar else 1
        self.vgg_config = "cifar10" if self.is_cifar else "mnist"

    def _image_size(self, spec):
        return (32, 32)  # MNIST-like images are padded from 28 to 32 pixels

    def normalize(self, images, spec=None):
        return cifar10.normalize(images) if self.is_cifar else mnist.normalize(images, self.name)

    def read(self, spec, test_only=False):
        """The checked splits (the training split's first `spec.max_train_examples`)."""
        if not self.is_cifar:  # found (and logged) once for both splits
            directory, _ = mnist.find_mnist_dir(spec.data_dir, self.name)

        def split(name, max_examples=None):
            if self.is_cifar:
                return cifar10.load_arrays(name, spec.data_dir, max_examples=max_examples)
            return mnist.read_arrays(directory, name, max_examples=max_examples)

        test = split("test")
        return _Arrays(None if test_only else split("train", spec.max_train_examples), test)

    def _examples(self, images, labels):
        if self.is_cifar:
            return cifar10.examples(images, labels)
        return mnist.examples(images, labels, self.name)

    def _train_stream(self, spec, images, labels, seed, first_position, input_context):
        if self.is_cifar:
            return cifar10.train_stream(images, labels, seed, first_position, input_context,
                                        augment_images=not spec.random_labels)
        return mnist.train_stream(images, labels, seed, self.name, first_position,
                                  input_context)

    def _measure_images(self, spec, count, seed):
        return _take_images(self._examples(*self.read(spec, test_only=True).test), count)

    def _build(self, spec, batch_size, seed, num_measure_images):
        labels_lib.check_seed(seed)
        deformation = spec.train_deformation()
        arrays = self.read(spec)
        images, labels = arrays.train
        if spec.random_labels:
            labels = labels_lib.random_label_array(len(labels), self.num_classes, seed)

        def train(input_context, start_step=0):
            per_worker = batch_size // input_context.num_input_pipelines
            stream = self._train_stream(spec, images, labels, seed, start_step * batch_size,
                                        input_context)
            return core.finish(stream, per_worker, training=True, seed=seed,
                               deformation=deformation, first_example=start_step * per_worker,
                               input_context=input_context)

        def evaluate():
            return core.finish(self._examples(*arrays.test), EVAL_BATCH_SIZE, training=False)

        def evaluate_train():
            return core.finish(self._examples(images, labels), EVAL_BATCH_SIZE, training=False)

        measure = _take_images(self._examples(*arrays.test), num_measure_images)
        return Data(train, evaluate, measure, evaluate_train=evaluate_train), len(labels)


class ImageNet(Dataset):
    """ImageNet TFRecord shards (train and validation splits), at `spec.image_size` pixels."""

    name, title, vgg_config = "imagenet", "ImageNet", "imagenet"
    num_classes, channels = imagenet.NUM_CLASSES, 3

    def _image_size(self, spec):
        return (spec.image_size, spec.image_size)

    def normalize(self, images, spec=None):
        return imagenet.normalize(images)

    @staticmethod
    def _eval_order(files):
        return order.RecordOrder(files, cycle_length=IMAGENET_CYCLE_LENGTH, shuffle=False)

    def _eval(self, spec, files):
        return imagenet.read(self._eval_order(files), image_size=spec.image_size)

    def _measure_from(self, spec, files, count):
        """The first `count` validation images; a bad record among them is a ValueError
        naming it."""
        try:
            return _take_images(self._eval(spec, files), count)
        except DATA_ERRORS as e:
            raise ValueError(describe_data_error(e, self._eval_order(files).files_from(0),
                                                 imagenet.find_bad_record)) from None

    def _measure_images(self, spec, count, seed):
        files = imagenet.list_shards(spec.data_dir, "validation", count_cache_path())
        return self._measure_from(spec, files, count)

    def _build(self, spec, batch_size, seed, num_measure_images):
        labels_lib.check_seed(seed)
        if spec.random_labels:
            raise ValueError("`random_labels` is implemented for the in-memory data sets "
                             "(CIFAR-10, MNIST, Fashion-MNIST), as in the paper, not for "
                             "ImageNet.")
        deformation = spec.train_deformation()
        train_files = imagenet.list_shards(spec.data_dir, "train", count_cache_path()).first(
            spec.max_train_examples)
        eval_files = imagenet.list_shards(spec.data_dir, "validation", count_cache_path())

        def train_order(input_context):
            return order.RecordOrder(train_files, seed, IMAGENET_CYCLE_LENGTH, IMAGENET_WINDOW,
                                     input_context=input_context)

        def train(input_context, start_step=0):
            per_worker = batch_size // input_context.num_input_pipelines
            examples = imagenet.read(train_order(input_context), training=True,
                                     first_position=start_step * batch_size,
                                     image_size=spec.image_size)
            return core.finish(examples, per_worker, training=True, seed=seed,
                               deformation=deformation, first_example=start_step * per_worker,
                               input_context=input_context)

        def evaluate():
            return core.finish(self._eval(spec, eval_files), EVAL_BATCH_SIZE, training=False)

        def describe_error(error, split, position, input_context=None):
            if split == "train":
                paths = train_order(input_context).files_from(position)
            else:
                paths = self._eval_order(eval_files).files_from(position)
            return describe_data_error(error, paths, imagenet.find_bad_record)

        measure = self._measure_from(spec, eval_files, num_measure_images)
        return (Data(train, evaluate, measure, describe_error=describe_error),
                train_files.num_records)


class Synthetic(Dataset):
    """The paper's synthetic task: each class one prototype image, every example a fresh random
    TPS deformation of strength `spec.synthetic_strength` of its class's prototype."""

    name, title, vgg_config = "synthetic", "the synthetic prototype task", "mnist"

    def _image_size(self, spec):
        return (32, 32)

    def normalize(self, images, spec=None):
        return mnist.normalize(images, spec.synthetic_source if spec else "fashion_mnist")

    def _measure_images(self, spec, count, seed):
        prototypes, _ = mnist.prototypes(spec.synthetic_source, spec.data_dir)
        return np.concatenate([images for images, _ in synthetic.test(
            prototypes, spec.synthetic_strength, max(count, 2), EVAL_BATCH_SIZE, seed,
            grid_size=spec.train_grid_size, dataset=spec.synthetic_source).as_numpy_iterator()])

    def _build(self, spec, batch_size, seed, num_measure_images):
        if spec.train_deformation() is not None:
            raise ValueError("The synthetic task's examples are already deformed prototypes; "
                             "set `synthetic_strength` rather than `train_strength`.")
        if spec.random_labels:
            raise ValueError("`random_labels` does not apply to the synthetic task.")
        prototypes, _ = mnist.prototypes(spec.synthetic_source, spec.data_dir)

        def train(input_context, start_step=0):
            return synthetic.train(prototypes, spec.synthetic_strength,
                                   batch_size // input_context.num_input_pipelines, seed,
                                   grid_size=spec.train_grid_size, input_context=input_context,
                                   dataset=spec.synthetic_source,
                                   first_position=start_step * batch_size)

        def evaluate():
            return synthetic.test(prototypes, spec.synthetic_strength, spec.num_test_examples,
                                  EVAL_BATCH_SIZE, seed, grid_size=spec.train_grid_size,
                                  dataset=spec.synthetic_source)

        measure = self._measure_images(spec, num_measure_images, seed)[:num_measure_images]
        return Data(train, evaluate, measure), None


DATASETS = {
    "cifar10": InMemory("cifar10"),
    "fashion_mnist": InMemory("fashion_mnist"),
    "mnist": InMemory("mnist"),
    "imagenet": ImageNet(),
    "synthetic": Synthetic(),
}
MNIST_LIKE = ("fashion_mnist", "mnist")


def get(name):
    """The `Dataset` named `name`; ValueError listing the registry's names otherwise."""
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}: choose one of {', '.join(DATASETS)}.")
    return DATASETS[name]


def build(spec, batch_size, seed, num_measure_images):
    """`get(spec.dataset).build(...)`: (Data, training examples per epoch or None)."""
    return get(spec.dataset).build(spec, batch_size, seed, num_measure_images)


def measure_images(spec, count, seed=0):
    """The first `count` images of `spec`'s evaluation split: [count, H, W, C] float32."""
    return get(spec.dataset).measure_images(spec, count, seed)


def describe_data_error(error, paths, find_bad_record):
    """One message for a data error met while reading `paths`, naming the file and record.

    Args:
      error: the `tf.errors.OpError` raised by the input pipeline.
      paths: the files being read at that point, in read order.
      find_bad_record: fn(paths) -> None or (path, record index, message), e.g.
        `imagenet.find_bad_record`.

    Returns:
      str. The error's own line when it already names the file (the pipelines' in-graph checks
      do), else the located file and record, else the error's line and the files searched.
    """
    line = core.error_line(error)
    if "[file]" in line:
        return f"Bad input record: {line}"
    found = find_bad_record(paths)
    if found is not None:
        path, record, message = found
        return f"Bad input record {record} of {path}: {message}"
    return (f"Input error ({line}); no bad record found in the {len(paths)} file(s) being read "
            f"at that point ({', '.join(os.path.basename(p) for p in paths)}).")
