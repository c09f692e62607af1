"""The paper's synthetic prototype task (Fig. 5): classify random deformations of K prototypes.

Each class is a single prototype image (`pipelines.mnist.prototypes`: the first image of the class);
every example is a fresh TPS deformation of strength C (docs/method.md#deformation; 3x3 grid) of its
class prototype, generated in-graph. Larger C needs more deformation stability; the paper finds it
gives smoother filters.

Example k of a stream is a pure function of (seed, k): its label is drawn from the label stream
(`pipelines.labels.random_labels_for_indices`, tagged seed) and its deformation comes from
`pipelines.core.deform_batch` with the per-example seed (seed, k), exactly as `core.finish` seeds
the deformation of stream element k. The indices are global: with an input context, worker w gets
examples k = w, w + n, ..., so the union over workers is the single-worker stream and no two
workers draw the same deformation; nor does anything depend on the batch size. (This is why the
stream is batched and deformed here instead of through `core.finish`, which enumerates per worker.)

Normalization is applied AFTER deformation, to images in [0, 1] whose background is exactly 0.
The two commute up to float rounding (bilinear weights sum to 1 and edges clamp, so each output
pixel is a convex combination of input pixels, and normalization is a per-channel affine map).
With strength 0 the warp is the exact identity, so every example is exactly
`mnist.normalize(prototype)`.

The held-out `test` set uses seed words tagged so that they never equal training's (for seeds in
[0, 2**32)), has balanced labels (k mod K), and is identical on every call.
"""

import numpy as np
import tensorflow as tf

from pipelines import core
from pipelines import labels as labels_lib
from pipelines import mnist
from pipelines import order

# High 32 bits of the seed words of the synthetic streams (distinct from labels.LABEL_SEED_TAG).
TRAIN_LABEL_TAG = 0x53594E4C  # 'SYNL': training labels
TEST_DEFORMATION_TAG = 0x54535444  # 'TSTD': held-out deformations (training uses the raw seed)


def _prototype_tensor(prototype_images):
    array = np.asarray(prototype_images, dtype=np.float32)
    if array.ndim != 4 or array.shape[0] < 1 or array.shape[1] < 2 or array.shape[2] < 2:
        raise ValueError(
            "`prototype_images` must be [K, height, width, channels] (K >= 1, sizes >= 2), got "
            f"shape {list(array.shape)}.")
    if not np.all(np.isfinite(array)):
        raise ValueError("`prototype_images` must be finite.")
    return tf.constant(array)


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1, got {batch_size!r}.")
    return int(batch_size)


def _stream(prototypes, indices, batch_size, drop_remainder, label_fn, deformation,
            deformation_seed, dataset):
    """Batches `indices` and maps each batch of ids [B] to (normalized images, labels [B])."""

    @tf.autograph.experimental.do_not_convert  # plain graph code; autograph would only cost time
    def make_batch(ids):
        labels = label_fn(ids)
        images = tf.gather(prototypes, labels)
        images = core.deform_batch(images, ids, deformation, deformation_seed)
        images = tf.ensure_shape(mnist.normalize(images, dataset),
                                 tf.TensorShape([None]).concatenate(prototypes.shape[1:]))
        return images, labels

    ds = indices.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def train(prototype_images, strength, batch_size, seed, grid_size=3, num_examples=None,
          input_context=None, dataset="fashion_mnist", first_position=0):
    """The training stream: fresh random deformations of randomly chosen class prototypes.

    Args:
      prototype_images: float [K, H, W, C] in [0, 1] (e.g. `mnist.prototypes(...)[0]`, not
        normalized); prototype k is class k.
      strength: C >= 0, the deformation strength in pixels (paper: 1, 2, 3, 4).
      batch_size: examples per batch (per input pipeline).
      seed: int in [0, 2**32). Label of example k: uniform on 0..K-1 from the label stream
        (seed, k) (tag TRAIN_LABEL_TAG); deformation: core.deform_batch seed (seed, k).
      grid_size: control grid, int n or (rows, cols) (docs/method.md#choices: 3).
      num_examples: None for an infinite stream (batches of exactly batch_size, static shape),
        else exactly num_examples examples, one pass (the last batch may be smaller); repeating
        it is up to the caller (a repeat gives the same examples again).
      input_context: a `tf.distribute.InputContext` or None; pipeline w of n gets examples
        k = w, w + n, ... of the global stream (so with num_examples, together exactly
        num_examples).
      dataset: 'fashion_mnist' or 'mnist', chooses the normalization constants.
      first_position: the infinite stream's first example k (step * global batch size for a
        resumed run; a multiple of the number of input pipelines): the stream restarts exactly.

    Returns:
      A batched `tf.data.Dataset` of `(images float32 [B, H, W, C] normalized like mnist.load,
      labels int32 [B])`, deterministic under `seed`.
    """
    prototypes = _prototype_tensor(prototype_images)
    num_classes = int(prototypes.shape[0])
    deformation = core.Deformation("tps", grid_size, strength)
    batch_size = _check_batch_size(batch_size)
    seed = labels_lib.check_seed(seed)
    if num_examples is None:
        first_position, _ = order.check_position(first_position, input_context)
        indices = tf.data.Dataset.counter(start=first_position)
    else:
        if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) \
                or num_examples < 1:
            raise ValueError(f"`num_examples` must be None or an int >= 1, got {num_examples!r}.")
        indices = tf.data.Dataset.range(int(num_examples))
    indices = core.shard_for_worker(indices, input_context)

    def label_fn(ids):
        return labels_lib.random_labels_for_indices(ids, num_classes, seed, tag=TRAIN_LABEL_TAG)

    ds = _stream(prototypes, indices, batch_size, num_examples is None, label_fn, deformation,
                 seed, dataset)
    return ds.prefetch(tf.data.AUTOTUNE)


def test(prototype_images, strength, num_examples=1000, batch_size=100, seed=0, grid_size=3,
         dataset="fashion_mnist"):
    """A fixed held-out set of deformed prototypes, the same on every call.

    Example k has label k mod K (balanced classes) and the deformation with the per-example seed
    ((TEST_DEFORMATION_TAG << 32) | seed, k), a seed word the training stream never uses (its
    deformation seeds are (seed, k) with seed < 2**32), so the held-out deformations are not
    training draws. No shuffle, no repeat; the dataset is cached after its first pass.

    Args:
      prototype_images, strength, grid_size, dataset: as for `train`.
      num_examples: size of the set (>= 1).
      batch_size: examples per batch (the last batch may be smaller).
      seed: int in [0, 2**32); may equal the training seed.

    Returns:
      A finite batched `tf.data.Dataset` of `(images float32 [B, H, W, C] normalized,
      labels int32 [B])` with num_examples examples in total.
    """
    prototypes = _prototype_tensor(prototype_images)
    num_classes = int(prototypes.shape[0])
    deformation = core.Deformation("tps", grid_size, strength)
    batch_size = _check_batch_size(batch_size)
    if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) \
            or num_examples < 1:
        raise ValueError(f"`num_examples` must be an int >= 1, got {num_examples!r}.")
    deformation_seed = labels_lib.tagged_seed(TEST_DEFORMATION_TAG, seed)

    def label_fn(ids):
        return tf.cast(ids % num_classes, tf.int32)

    ds = _stream(prototypes, tf.data.Dataset.range(int(num_examples)), batch_size, False,
                 label_fn, deformation, deformation_seed, dataset)
    return ds.cache().prefetch(tf.data.AUTOTUNE)
