"""The shared end of every input pipeline: sharding, shuffling, batching, in-graph deformation.

Readers (`pipelines.mnist`, `pipelines.cifar10`, `pipelines.imagenet`, `pipelines.synthetic`)
produce datasets of `(image, label)` examples: `image` float32 [height, width, channels] with
static size, `label` int32 scalar. `finish` turns such a dataset into batches for training or
evaluation, optionally deforming every image with the paper's random TPS deformation.

Deformation seeds are per example: example k of the (repeated, shuffled) stream gets the
stateless seed (seed, k), so the deformation of an example does not depend on the batch size, on
the number of parallel calls, or on the device count, and every epoch draws new deformations.
Deformation runs on whole batches (one vectorized op per batch is ~10x faster than per-example
maps on small images).
"""

import dataclasses

import tensorflow as tf

import deform_tf


@dataclasses.dataclass(frozen=True)
class Deformation:
    """The random TPS deformation applied in the pipeline: grid_size x grid_size, C pixels."""

    grid_size: int
    strength: float

    def __post_init__(self):
        deform_tf.checks.check_grid_size(self.grid_size)
        deform_tf.checks.check_strength(self.strength)


def normalize(images, mean, std):
    """(x - mean) / std per channel; `images` uint8 (0..255) or float in [0, 1] -> float32."""
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    images = tf.cast(images, tf.float32)
    return (images - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def denormalize(images, mean, std):
    """Inverse of `normalize`: float32 pixels back in [0, 1]."""
    return tf.cast(images, tf.float32) * tf.constant(std, tf.float32) + tf.constant(
        mean, tf.float32)


def shard_for_worker(dataset, input_context):
    """Shards a dataset of examples (or files) for one input pipeline of `input_context`.

    Args:
      dataset: a `tf.data.Dataset`.
      input_context: a `tf.distribute.InputContext` or None (no sharding).
    """
    if input_context is None or input_context.num_input_pipelines == 1:
        return dataset
    return dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def deform_batch(images, example_ids, deformation, seed):
    """Deforms a batch [B, H, W, C] with per-example seeds (seed, example_id)."""
    seeds = tf.stack([tf.fill(tf.shape(example_ids), tf.cast(seed, tf.int64)),
                      tf.cast(example_ids, tf.int64)], axis=1)
    return deform_tf.random_tps_deformation(
        images, deformation.grid_size, deformation.strength, seeds)


def finish(dataset, batch_size, training, seed=0, deformation=None, shuffle_buffer=10_000,
           repeat=None, deterministic=True, drop_remainder=None, prefetch=True,
           input_context=None):
    """Shuffles, repeats, batches and (optionally) deforms a dataset of (image, label).

    Args:
      dataset: examples `(image float32 [H, W, C], label int32)`, already sharded.
      batch_size: examples per batch (per replica when used with `input_context`).
      training: shuffle (with `seed`) and repeat forever by default, drop the last partial batch.
      seed: int, seeds shuffling and the per-example deformation seeds.
      deformation: a `Deformation`, or None for clean images.
      shuffle_buffer: shuffle buffer size (training only).
      repeat: repeat forever; defaults to `training`.
      deterministic: keep a deterministic element order with parallel maps.
      drop_remainder: defaults to `training` (static batch shapes for XLA/TPU).
      prefetch: prefetch with AUTOTUNE.
      input_context: the `tf.distribute.InputContext` the dataset was sharded for, or None.
        Example k of input pipeline w of n gets the deformation id k * n + w, so workers never
        share deformation seeds.

    Returns:
      A dataset of `(images [B, H, W, C] float32, labels [B] int32)`.
    """
    repeat = training if repeat is None else repeat
    drop_remainder = training if drop_remainder is None else drop_remainder
    if training and shuffle_buffer > 1:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    if deformation is not None:
        dataset = dataset.enumerate()
        if input_context is not None and input_context.num_input_pipelines > 1:
            n, w = input_context.num_input_pipelines, input_context.input_pipeline_id
            dataset = dataset.map(lambda k, example: (k * n + w, example))
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        dataset = dataset.map(
            lambda ids, example: (deform_batch(example[0], ids, deformation, seed), example[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    else:
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    options = tf.data.Options()
    options.deterministic = deterministic
    dataset = dataset.with_options(options)
    return dataset.prefetch(tf.data.AUTOTUNE) if prefetch else dataset
