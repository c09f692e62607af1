"""Assembles a run's data (`train_lib.Data`) from the pipelines, per data set. No flags here.

Training streams are built per worker from a `tf.distribute.InputContext` and finished by
`pipelines.core.finish` (shuffle, repeat, batch, optional in-graph TPS deformation with
per-example seeds). Random labels replace the labels of the unshuffled, unsharded training set
once, then shard; they are trained without augmentation (as in the random-label literature),
so that every epoch sees the same (image, label) pairs.
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from launch import train_lib
from pipelines import cifar10
from pipelines import core
from pipelines import imagenet
from pipelines import labels as labels_lib
from pipelines import mnist
from pipelines import synthetic

MNIST_LIKE = ("fashion_mnist", "mnist")
EVAL_BATCH_SIZE = 250


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


def _take_images(dataset, count):
    """The first `count` images of an unbatched (image, label) dataset, as numpy."""
    images = [image for image, _ in dataset.take(count).as_numpy_iterator()]
    if len(images) < 2:
        raise ValueError(f"The evaluation split has {len(images)} images; at least 2 are needed "
                         "for the sensitivity measurement.")
    return np.stack(images).astype(np.float32)


def _examples(spec, split, training, seed, input_context):
    """Unbatched (image, label) examples of one split."""
    if spec.dataset in MNIST_LIKE:
        return mnist.load(split, spec.dataset, spec.data_dir, input_context=input_context,
                          max_examples=spec.max_train_examples if split == "train" else None)
    if spec.dataset == "cifar10":
        return cifar10.load(split, spec.data_dir, training=training, seed=seed,
                            input_context=input_context,
                            max_examples=spec.max_train_examples if split == "train" else None)
    return imagenet.load(split, spec.data_dir, training=training, seed=seed,
                         input_context=input_context, image_size=spec.image_size,
                         max_examples=spec.max_train_examples if split == "train" else None)


def measure_images(spec, count, seed=0):
    """The first `count` images of the evaluation split: [count, H, W, C] float32."""
    if spec.dataset == "synthetic":
        prototypes, _ = mnist.prototypes(spec.synthetic_source, spec.data_dir)
        return np.concatenate([images for images, _ in synthetic.test(
            prototypes, spec.synthetic_strength, max(count, 2), EVAL_BATCH_SIZE, seed,
            grid_size=spec.train_grid_size, dataset=spec.synthetic_source).as_numpy_iterator()])
    split = "validation" if spec.dataset == "imagenet" else "test"
    return _take_images(_examples(spec, split, False, seed, None), count)


def build(spec, batch_size, seed, num_measure_images):
    """Returns (train_lib.Data, number of training examples or None if infinite)."""
    deformation = (core.Deformation(spec.train_grid_size, spec.train_strength)
                   if spec.train_strength > 0 else None)
    if spec.dataset == "synthetic":
        return _build_synthetic(spec, batch_size, seed, num_measure_images, deformation)
    eval_split = "validation" if spec.dataset == "imagenet" else "test"

    def train(input_context):
        per_worker = batch_size // input_context.num_input_pipelines
        if spec.random_labels:
            source = _examples(spec, "train", False, seed, None)
            source = labels_lib.with_random_labels(source, model_config(spec)[2], seed,
                                                   input_context=input_context)
        else:
            source = _examples(spec, "train", True, seed, input_context)
        return core.finish(source, per_worker, training=True, seed=seed, deformation=deformation,
                           shuffle_buffer=1024 if spec.dataset == "imagenet" else 10_000,
                           input_context=input_context)

    def evaluate():
        return core.finish(_examples(spec, eval_split, False, seed, None), EVAL_BATCH_SIZE,
                           training=False)

    measure = measure_images(spec, num_measure_images, seed)
    num_train = _examples(spec, "train", False, seed, None).cardinality()
    num_train = int(num_train) if num_train >= 0 else None
    return train_lib.Data(train, evaluate, measure), num_train


def _build_synthetic(spec, batch_size, seed, num_measure_images, deformation):
    if deformation is not None:
        raise ValueError("The synthetic task's examples are already deformed prototypes; use "
                         "--synthetic_strength rather than --train_strength.")
    if spec.random_labels:
        raise ValueError("--random_labels does not apply to the synthetic task.")
    prototypes, _ = mnist.prototypes(spec.synthetic_source, spec.data_dir)

    def train(input_context):
        return synthetic.train(prototypes, spec.synthetic_strength,
                               batch_size // input_context.num_input_pipelines, seed,
                               grid_size=spec.train_grid_size, input_context=input_context,
                               dataset=spec.synthetic_source)

    def evaluate():
        return synthetic.test(prototypes, spec.synthetic_strength, spec.num_test_examples,
                              EVAL_BATCH_SIZE, seed, grid_size=spec.train_grid_size,
                              dataset=spec.synthetic_source)

    measure = measure_images(spec, num_measure_images, seed)[:num_measure_images]
    return train_lib.Data(train, evaluate, measure), None
