"""The shared end of every input pipeline: sharding, batching, in-graph deformation.

Readers (`pipelines.mnist`, `pipelines.cifar10`, `pipelines.imagenet`, `pipelines.synthetic`)
produce datasets of `(image, label)` examples: `image` float32 [height, width, channels] with
static size, `label` int32 scalar; training streams come already in their stateless epoch order
(`pipelines.order`), repeating forever. `finish` turns such a dataset into batches for training
or evaluation, optionally deforming every image with a random deformation (`Deformation`, the
one spec of `deform_tf.deformation`: the paper's TPS or Petrini et al.'s diffeo).

Deformation seeds are per example: example k of the training stream (its global position) gets
the stateless seed (seed, k), so the deformation of an example does not depend on the batch size,
on the number of parallel calls, or on the device count, every epoch draws new deformations, and a
stream restarted at position k (a resumed run) draws the same deformations as an uninterrupted one.
Deformation runs on whole batches (one vectorized op per batch is ~10x faster than per-example
maps on small images).
"""

import re

import numpy as np
import tensorflow as tf

from deform_tf import deformation as deformation_spec

_BLOCK = 1024  # examples normalized per vectorized step


# The random deformation of training images: `deform_tf.deformation.Deformation` ("tps" or
# "diffeo"), the same spec the measurements use.
Deformation = deformation_spec.Deformation


_ERROR_NOISE = re.compile(
    r"\s*\[\[\{\{.*?\}\}\]\]|\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\]( name:.*)?$")
_NOISE_LINES = ("Graph execution error", "Detected at node", "File \"")


def error_line(error):
    """The line of a TensorFlow error's message that says what went wrong.

    Drops what a tf.data or graph error wraps around it: "Graph execution error:", the Python
    trace of the node, `{{function_node ...}}`, `[[{{node ...}}]]` and `[Op:...]`.

    Args:
      error: a `tf.errors.OpError`.

    Returns:
      str, e.g. "corrupted record at 27837" or "assertion failed: [...] [file] [...]".
    """
    lines = [_ERROR_NOISE.sub("", line).strip() for line in error.message.splitlines()]
    lines = [line for line in lines if line and not line.startswith(_NOISE_LINES)]
    return lines[-1] if lines else type(error).__name__


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
    return deformation.apply(images, seeds)


def array_examples(images, labels, normalize_fn, input_context=None):
    """One pass over in-memory examples in their order, normalized, for evaluation.

    Args:
      images: uint8 array [N, H, W, C].
      labels: int array [N].
      normalize_fn: maps uint8 images [B, H, W, C] to float32 normalized images.
      input_context: `tf.distribute.InputContext` or None; pipeline w of n gets examples w, w+n.

    Returns:
      A finite dataset of known cardinality of `(image float32 [H, W, C], label int32 [])`.
    """
    dataset = tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, np.int32)))
    dataset = shard_for_worker(dataset, input_context)
    count = int(dataset.cardinality())  # known: from_tensor_slices and shard keep it
    # Normalized in blocks (vectorized, ~5x faster than a per-example map), then unbatched.
    dataset = dataset.batch(_BLOCK).map(lambda x, y: (normalize_fn(x), y),
                                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.unbatch().apply(tf.data.experimental.assert_cardinality(count))


def finish(dataset, batch_size, training, seed=0, deformation=None, first_example=0,
           deterministic=True, drop_remainder=None, prefetch=True, input_context=None):
    """Batches and (optionally) deforms a dataset of (image, label).

    Args:
      dataset: examples `(image float32 [H, W, C], label int32)`, already sharded and, for
        training, in their training order (e.g. `cifar10.train_stream`).
      batch_size: examples per batch (per input pipeline when used with `input_context`).
      training: drop the last partial batch by default.
      seed: int, seeds the per-example deformation seeds.
      deformation: a `Deformation`, or None for clean images.
      first_example: the index, in this pipeline's stream, of the dataset's first example (the
        examples this pipeline consumed before a resume: step * batch_size).
      deterministic: keep a deterministic element order with parallel maps.
      drop_remainder: defaults to `training` (static batch shapes for XLA/TPU).
      prefetch: prefetch with AUTOTUNE.
      input_context: the `tf.distribute.InputContext` the dataset was sharded for, or None.
        Example k of input pipeline w of n gets the deformation id k * n + w (its global
        position), so pipelines never share deformation seeds.

    Returns:
      A dataset of `(images [B, H, W, C] float32, labels [B] int32)`.
    """
    drop_remainder = training if drop_remainder is None else drop_remainder
    if deformation is not None:
        dataset = dataset.enumerate(start=first_example)
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
