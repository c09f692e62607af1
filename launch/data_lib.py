"""Assembles a run's data (`train_lib.Data`) from the pipelines, per data set. No flags here.

Everything that can be checked is checked when `build` runs, before a run writes anything: MNIST
and CIFAR-10 are read whole into memory (each record checked; the test split too), ImageNet shards
are counted from their record headers (framing checked; both splits). Training streams are pure
functions of (seed, position) (`pipelines.order`): `Data.train(input_context, start_step)`
rebuilds the stream of a run resumed at `start_step` from position start_step * batch_size, so a
checkpoint needs no input pipeline state. Random labels replace the labels of the training set
once (by the example's index in canonical order); they are trained without augmentation (as in
the random-label literature), so that every epoch sees the same (image, label) pairs. The
in-memory data sets also give the training set as trained (`Data.evaluate_train`: the labels
trained on, no augmentation), so a run records how well it fits its training labels.
"""

import dataclasses
import os
from typing import Optional

import numpy as np

from launch import train_lib
from pipelines import cifar10
from pipelines import core
from pipelines import imagenet
from pipelines import labels as labels_lib
from pipelines import mnist
from pipelines import order
from pipelines import synthetic

MNIST_LIKE = ("fashion_mnist", "mnist")
EVAL_BATCH_SIZE = 250
# ImageNet input order: shards read concurrently and encoded records permuted together.
IMAGENET_CYCLE_LENGTH = 16
IMAGENET_WINDOW = 1024


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What to load: the data set and how to feed it."""

    dataset: str  # "cifar10", "fashion_mnist", "mnist", "imagenet" or "synthetic"
    data_dir: Optional[str] = None
    max_train_examples: Optional[int] = None
    random_labels: bool = False
    train_grid_size: int = 3
    train_strength: float = 0.0  # training-time deformation, 0 = off
    image_size: int = 224  # imagenet only
    synthetic_strength: float = 1.0  # synthetic only: C of the task
    synthetic_source: str = "fashion_mnist"  # synthetic only: where the prototypes come from
    num_test_examples: int = 1000  # synthetic only: size of the fixed test set


def model_config(spec):
    """(vgg config name, input shape, num_classes) for a data set."""
    if spec.dataset in MNIST_LIKE or spec.dataset == "synthetic":
        return "mnist", (32, 32, 1), 10
    if spec.dataset == "cifar10":
        return "cifar10", (32, 32, 3), 10
    return "imagenet", (spec.image_size, spec.image_size, 3), imagenet.NUM_CLASSES


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


@dataclasses.dataclass(frozen=True)
class _Arrays:
    """An in-memory data set (MNIST-like or CIFAR-10): its checked splits and how to feed them."""

    spec: DataSpec
    train: tuple  # (images uint8 [N, H, W, C], labels int32 [N])
    test: tuple

    @classmethod
    def read(cls, spec, test_only=False):
        if spec.dataset != "cifar10":  # found (and logged) once for both splits
            directory, _ = mnist.find_mnist_dir(spec.data_dir, spec.dataset)

        def split(name, max_examples=None):
            if spec.dataset == "cifar10":
                return cifar10.load_arrays(name, spec.data_dir, max_examples=max_examples)
            return mnist.read_arrays(directory, name, max_examples=max_examples)

        test = split("test")
        return cls(spec, None if test_only else split("train", spec.max_train_examples), test)

    def train_stream(self, seed, first_position, input_context, labels):
        images = self.train[0]
        if self.spec.dataset == "cifar10":
            return cifar10.train_stream(images, labels, seed, first_position, input_context,
                                        augment_images=not self.spec.random_labels)
        return mnist.train_stream(images, labels, seed, self.spec.dataset, first_position,
                                  input_context)

    def test_examples(self):
        return self._examples(*self.test)

    def train_examples(self, labels):
        """One pass over the training images with `labels` (those trained on), no augmentation."""
        return self._examples(self.train[0], labels)

    def _examples(self, images, labels):
        if self.spec.dataset == "cifar10":
            return cifar10.examples(images, labels)
        return mnist.examples(images, labels, self.spec.dataset)


def measure_images(spec, count, seed=0):
    """The first `count` images of the evaluation split: [count, H, W, C] float32."""
    if spec.dataset == "synthetic":
        prototypes, _ = mnist.prototypes(spec.synthetic_source, spec.data_dir)
        return np.concatenate([images for images, _ in synthetic.test(
            prototypes, spec.synthetic_strength, max(count, 2), EVAL_BATCH_SIZE, seed,
            grid_size=spec.train_grid_size, dataset=spec.synthetic_source).as_numpy_iterator()])
    if spec.dataset == "imagenet":
        files = imagenet.list_shards(spec.data_dir, "validation", count_cache_path())
        return _imagenet_measure_images(spec, files, count)
    return _take_images(_Arrays.read(spec, test_only=True).test_examples(), count)


def _imagenet_eval_order(files):
    return order.RecordOrder(files, cycle_length=IMAGENET_CYCLE_LENGTH, shuffle=False)


def _imagenet_eval(spec, files):
    return imagenet.read(_imagenet_eval_order(files), image_size=spec.image_size)


def _imagenet_measure_images(spec, files, count):
    """The first `count` validation images; a bad record among them is a ValueError naming it."""
    try:
        return _take_images(_imagenet_eval(spec, files), count)
    except train_lib.DATA_ERRORS as e:
        raise ValueError(describe_data_error(e, _imagenet_eval_order(files).files_from(0),
                                             imagenet.find_bad_record)) from None


def build(spec, batch_size, seed, num_measure_images):
    """Returns (train_lib.Data, number of training examples per epoch or None if infinite).

    Raises:
      FileNotFoundError, ValueError: missing or bad data (named), bad settings.
    """
    deformation = (core.Deformation(spec.train_grid_size, spec.train_strength)
                   if spec.train_strength > 0 else None)
    if spec.dataset == "synthetic":
        return _build_synthetic(spec, batch_size, seed, num_measure_images, deformation)
    labels_lib.check_seed(seed)
    if spec.dataset == "imagenet":
        return _build_imagenet(spec, batch_size, seed, num_measure_images, deformation)
    arrays = _Arrays.read(spec)
    labels = arrays.train[1]
    if spec.random_labels:
        labels = labels_lib.random_label_array(len(labels), model_config(spec)[2], seed)

    def train(input_context, start_step=0):
        per_worker = batch_size // input_context.num_input_pipelines
        stream = arrays.train_stream(seed, start_step * batch_size, input_context, labels)
        return core.finish(stream, per_worker, training=True, seed=seed,
                           deformation=deformation, first_example=start_step * per_worker,
                           input_context=input_context)

    def evaluate():
        return core.finish(arrays.test_examples(), EVAL_BATCH_SIZE, training=False)

    def evaluate_train():
        return core.finish(arrays.train_examples(labels), EVAL_BATCH_SIZE, training=False)

    measure = _take_images(arrays.test_examples(), num_measure_images)
    return train_lib.Data(train, evaluate, measure, evaluate_train=evaluate_train), len(labels)


def _build_imagenet(spec, batch_size, seed, num_measure_images, deformation):
    if spec.random_labels:
        raise ValueError("--random_labels is implemented for the in-memory data sets (CIFAR-10, "
                         "MNIST, Fashion-MNIST), as in the paper, not for ImageNet.")
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
        return core.finish(_imagenet_eval(spec, eval_files), EVAL_BATCH_SIZE, training=False)

    def describe_error(error, split, position, input_context=None):
        if split == "train":
            paths = train_order(input_context).files_from(position)
        else:
            paths = _imagenet_eval_order(eval_files).files_from(position)
        return describe_data_error(error, paths, imagenet.find_bad_record)

    measure = _imagenet_measure_images(spec, eval_files, num_measure_images)
    return (train_lib.Data(train, evaluate, measure, describe_error=describe_error),
            train_files.num_records)


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


def _build_synthetic(spec, batch_size, seed, num_measure_images, deformation):
    if deformation is not None:
        raise ValueError("The synthetic task's examples are already deformed prototypes; use "
                         "--synthetic_strength rather than --train_strength.")
    if spec.random_labels:
        raise ValueError("--random_labels does not apply to the synthetic task.")
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

    measure = measure_images(spec, num_measure_images, seed)[:num_measure_images]
    return train_lib.Data(train, evaluate, measure), None
