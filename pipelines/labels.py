"""Random labels (paper Fig. 6c, 7): each example's label replaced once by a uniform random label.

The label of example k (its index in the unshuffled, unsharded source) is a pure function of
(seed, k): floor(K u) with u = `deform_tf.stateless_random.uniform` on the stateless seed
((LABEL_SEED_TAG << 32) | seed, k). It is the same in every epoch, on every worker, whatever the
shuffling, batching or device count, and `random_label_array` reproduces it in numpy (for tests and
for recording the labels in run outputs).

Indices must be those of the whole source, so relabel before sharding or shuffling:
`with_random_labels` enumerates the dataset it is given and shards afterwards itself when given an
input context, e.g.

    ds = mnist.load("train", input_context=None)             # the whole split, file order
    ds = labels.with_random_labels(ds, 10, seed, input_context)
    ds = core.finish(ds, batch_size, training=True, seed=seed)

The seed's first word carries a tag in its high 32 bits, so the label stream never coincides with
the deformation seeds (seed, k) of `pipelines.core.finish` for the same small integer seed.
"""

import numpy as np
import tensorflow as tf

from deform_tf import stateless_random
from pipelines import core

# High 32 bits of the first stateless-seed word of the label stream ('LABL').
LABEL_SEED_TAG = 0x4C41424C
_BLOCK = 256  # examples relabelled per vectorized step


def check_seed(seed):
    """Returns `seed` as an int after checking 0 <= seed < 2**32 (the tags use the high bits)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` must be an int in [0, 2**32), got {seed!r}.")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"`seed` must be an int in [0, 2**32), got {seed!r}.")
    return int(seed)


def tagged_seed(tag, seed):
    """The int64 seed word (tag << 32) | seed, for a 31-bit tag and a seed in [0, 2**32)."""
    return (tag << 32) | check_seed(seed)


def _check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"`num_classes` must be an int >= 1, got {num_classes!r}.")
    return int(num_classes)


def random_labels_for_indices(indices, num_classes, seed, tag=LABEL_SEED_TAG):
    """Uniform random labels of examples `indices`, each a function of (seed, index) only.

    Args:
      indices: int tensor [N] of example indices (>= 0) in the unshuffled source.
      num_classes: K >= 1.
      seed: int in [0, 2**32).
      tag: the stream tag (high bits of the seed word); other modules use other tags.

    Returns:
      int32 tensor [N] with values in 0..K-1: floor(K u) with u uniform on the 2^24-point lattice
      of [0, 1) (computed exactly in float64, so K u < K always), u from the stateless seed
      ((tag << 32) | seed, index).
    """
    num_classes = _check_num_classes(num_classes)
    indices = tf.cast(tf.reshape(indices, [-1]), tf.int64)
    word = tf.fill(tf.shape(indices), tf.constant(tagged_seed(tag, seed), tf.int64))
    seeds = tf.stack([word, indices], axis=1)  # [N, 2]: one stream per example
    u = stateless_random.uniform(tf.stack([tf.shape(indices)[0], 1]), seeds, tf.float64)[:, 0]
    return tf.cast(tf.floor(u * num_classes), tf.int32)


def random_label_array(num_examples, num_classes, seed):
    """The labels `with_random_labels` gives examples 0..num_examples-1: np.int32 [num_examples]."""
    if num_examples == 0:
        return np.zeros([0], np.int32)
    return random_labels_for_indices(tf.range(num_examples, dtype=tf.int64), num_classes,
                                     seed).numpy()


def with_random_labels(dataset, num_classes, seed, input_context=None):
    """Replaces each example's label by a fixed uniform random label drawn from (seed, index).

    Args:
      dataset: the whole, unsharded and unshuffled source: `(image, label)` examples in their
        canonical order (e.g. `mnist.load(..., input_context=None)`). The original labels are
        dropped. The index of an example is its position in this dataset (it is enumerated here),
        which is why sharding and shuffling must come after.
      num_classes: K >= 1, labels are uniform on 0..K-1.
      seed: int in [0, 2**32).
      input_context: a `tf.distribute.InputContext` or None; the relabelled dataset is sharded
        for it (after relabelling, so every worker sees the same label for an example).

    Returns:
      A dataset of `(image, label int32 scalar)`; label k equals random_label_array(n, K, seed)[k].
    """
    num_classes = _check_num_classes(num_classes)
    seed = check_seed(seed)

    def relabel(block, examples):
        images = examples[0]
        count = tf.shape(images, out_type=tf.int64)[0]
        indices = block * _BLOCK + tf.range(count)  # positions in `dataset`
        return images, random_labels_for_indices(indices, num_classes, seed)

    # Labels are computed for blocks of _BLOCK consecutive examples (one vectorized hash per block
    # is ~30x faster than a per-example map); unbatch restores the examples in order.
    count = int(dataset.cardinality())
    dataset = dataset.batch(_BLOCK).enumerate().map(
        relabel, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    if count >= 0:  # keep a known cardinality known (unbatch loses it)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    return core.shard_for_worker(dataset, input_context)
