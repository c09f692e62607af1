"""CIFAR-10 input pipeline: the official binary release, TFRecord shards, or a prepared TFDS copy.

Three on-disk sources are read (nothing is ever unpickled, nothing is downloaded):
  * 'binary': the official binary release, `cifar-10-batches-bin/data_batch_{1..5}.bin` and
    `test_batch.bin`; 3073-byte records, one label byte (0..9) then 3072 pixel bytes in CHW
    order (the 1024 red, then green, then blue values, each plane row-major).
  * 'tfrecord': shards `{split}-XXXXX-of-YYYYY` (train / test) in the layout of
    `pipelines.tfrecord` (raw uint8 HWC `image/raw`, `image/shape` [32, 32, 3], 0-based
    `image/class/label`), as written by `python -m launch.convert --source=cifar10_binary`.
  * 'tfds': a tensorflow-datasets `cifar10` already prepared under `data_dir`
    (`data_dir/cifar10/<version>/`); it is read with download=False.

A split is small (50000 training images are 150 MB), so `load_arrays` reads it whole into memory,
checking every record on the way: a bad file or record is a ValueError naming the file (and the
record or byte offset) before any training starts. The canonical order of a split is file order
for the binary release, the written order for TFRecord shards (shards read round-robin, which
undoes the round-robin writing of `launch.convert`) and TFDS's own order.

`train_stream` yields training examples in the stateless epoch order of
`pipelines.order.index_stream`, from any position (a resumed run restarts exactly where it
stopped), with the standard augmentation (4-pixel zero padding, random 32x32 crop, random
horizontal flip) drawn from the stateless seed of (seed, example index, epoch). `examples` yields
one pass in canonical order (evaluation). Both return the examples `pipelines.core.finish`
expects, `(image float32 [32, 32, 3], label int32 [])`, images normalized per channel with MEAN and
STD (on [0, 1] pixels).
"""

import glob
import os

import numpy as np
import tensorflow as tf

from pipelines import core
from pipelines import order
from pipelines import tfrecord

NUM_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)
LABEL_BYTES = 1
IMAGE_BYTES = 32 * 32 * 3
RECORD_BYTES = LABEL_BYTES + IMAGE_BYTES  # 3073
BINARY_DIR_NAME = "cifar-10-batches-bin"
BINARY_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
SPLITS = ("train", "test")
SOURCES = ("binary", "tfrecord", "tfds")
TFDS_NAME = "cifar10"

# Per-channel (R, G, B) mean and standard deviation of the training images, on [0, 1] pixels.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

# Training augmentation: pad each side with this many zero (black) pixels, then crop 32x32.
PAD_PIXELS = 4


def normalize(image):
    """Per-channel normalization (x - MEAN) / STD.

    Args:
      image: [..., 3] pixels, uint8 (0..255) or float in [0, 1].

    Returns:
      float32 [..., 3].
    """
    return core.normalize(image, MEAN, STD)


def denormalize(image):
    """Inverse of `normalize`: float32 [..., 3] normalized -> float32 [..., 3] in [0, 1]."""
    return core.denormalize(image, MEAN, STD)


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"CIFAR-10 split must be one of {SPLITS}, got {split!r}.")


def _check_dir(data_dir):
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"CIFAR-10 data directory {data_dir!r} does not exist.")
    return data_dir


def _tfds_prepared(data_dir):
    return bool(glob.glob(os.path.join(data_dir, TFDS_NAME, "*", "dataset_info.json")))


def find_source(data_dir):
    """Finds which CIFAR-10 source `data_dir` holds.

    Looked for, in this order:
      1. 'binary': `data_dir/cifar-10-batches-bin/`, or `data_dir` itself holding
         `data_batch_1.bin` or `test_batch.bin`; the returned path is the batches directory.
      2. 'tfrecord': `data_dir/train-*-of-*` or `data_dir/test-*-of-*`; path is `data_dir`.
      3. 'tfds': a prepared `data_dir/cifar10/<version>/dataset_info.json`; path is `data_dir`.

    Args:
      data_dir: str or os.PathLike.

    Returns:
      (kind, path): kind in ('binary', 'tfrecord', 'tfds'), path a str.

    Raises:
      FileNotFoundError: `data_dir` is missing or holds none of them (the message lists what was
        looked for).
    """
    data_dir = _check_dir(data_dir)
    batches_dir = os.path.join(data_dir, BINARY_DIR_NAME)
    if os.path.isdir(batches_dir):
        return "binary", batches_dir
    if any(os.path.isfile(os.path.join(data_dir, name))
           for name in (BINARY_FILES["train"][0], BINARY_FILES["test"][0])):
        return "binary", data_dir
    if any(glob.glob(tfrecord.shard_pattern(data_dir, split)) for split in SPLITS):
        return "tfrecord", data_dir
    if _tfds_prepared(data_dir):
        return "tfds", data_dir
    raise FileNotFoundError(
        f"No CIFAR-10 data found in {data_dir!r}. Looked for: (1) the official binary release, "
        f"{os.path.join(data_dir, BINARY_DIR_NAME)}/ (or data_batch_1.bin / test_batch.bin in "
        f"the directory itself); (2) TFRecord shards {tfrecord.shard_pattern(data_dir, 'train')} "
        f"or {tfrecord.shard_pattern(data_dir, 'test')} (written by python -m launch.convert "
        f"--source=cifar10_binary); (3) a prepared tensorflow-datasets copy, "
        f"{os.path.join(data_dir, TFDS_NAME, '<version>', 'dataset_info.json')}.")


def check_binary_files(batches_dir, split):
    """Checks the binary files of `split` exist and hold whole records.

    Args:
      batches_dir: the `cifar-10-batches-bin` directory.
      split: 'train' or 'test'.

    Returns:
      List of (path, number of records), in the official order.

    Raises:
      FileNotFoundError: the directory or a file is missing (all missing files are named).
      ValueError: a file is empty or its size is not a multiple of 3073 bytes.
    """
    _check_split(split)
    batches_dir = os.fspath(batches_dir)
    if not os.path.isdir(batches_dir):
        raise FileNotFoundError(f"CIFAR-10 binary directory {batches_dir!r} does not exist.")
    paths = [os.path.join(batches_dir, name) for name in BINARY_FILES[split]]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 '{split}' files missing from {batches_dir!r}: "
            f"{[os.path.basename(p) for p in missing]}; the binary release has "
            f"{list(BINARY_FILES['train']) + list(BINARY_FILES['test'])}.")
    result = []
    for path in paths:
        size = os.path.getsize(path)
        if size == 0 or size % RECORD_BYTES:
            raise ValueError(
                f"CIFAR-10 binary file {path!r} has {size} bytes, which is not a positive "
                f"multiple of the {RECORD_BYTES}-byte record size: it is truncated or corrupt "
                f"(or not the binary release: the python version is pickled and is never read).")
        result.append((path, size // RECORD_BYTES))
    return result


def read_binary_split(batches_dir, split):
    """Reads one split of the binary release into memory, checking every record.

    Returns:
      (images uint8 [N, 32, 32, 3] HWC, labels uint8 [N] in 0..9), in file order.

    Raises:
      FileNotFoundError, ValueError: as `check_binary_files`; ValueError also for a label byte
        > 9, naming the file and record.
    """
    images, labels = [], []
    for path, count in check_binary_files(batches_dir, split):
        with open(path, "rb") as f:
            records = np.frombuffer(f.read(), np.uint8).reshape(count, RECORD_BYTES)
        bad = np.flatnonzero(records[:, 0] >= NUM_CLASSES)
        if bad.size:
            raise ValueError(
                f"CIFAR-10 binary file {path!r}: label byte out of range 0..9 at record "
                f"{int(bad[0])} (value {int(records[bad[0], 0])}); {bad.size} bad record(s).")
        labels.append(records[:, 0])
        images.append(records[:, 1:].reshape(count, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.concatenate(images), np.concatenate(labels)


def read_tfrecord_split(data_dir, split):
    """Reads one split of TFRecord shards into memory, checking every record.

    Returns:
      (images uint8 [N, 32, 32, 3] HWC, labels int64 [N] in 0..9) in the written order: record r
      of shard s (of S) is example r * S + s when the shards were written round-robin.

    Raises:
      FileNotFoundError: no shard of `split`.
      ValueError: a truncated or corrupt shard, or a bad record (shape, size, label, payload
        checksum); the message names the shard and the record or byte offset.
    """
    paths = tfrecord.list_files(tfrecord.shard_pattern(data_dir, split))
    tfrecord.count_records(paths)  # framing of every shard, before reading any
    images, labels, keys = [], [], []
    for shard, path in enumerate(paths):
        records = tf.data.TFRecordDataset(path).enumerate().map(
            lambda index, record, path=path: tfrecord.parse_image_example(
                record, path, index, IMAGE_SHAPE, NUM_CLASSES),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(4096)
        try:
            batches = list(records.as_numpy_iterator())
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
            raise ValueError(f"CIFAR-10 TFRecord shard {path!r}: {core.error_line(e)}") from None
        count = sum(len(batch_labels) for _, batch_labels in batches)
        images += [batch_images for batch_images, _ in batches]
        labels += [batch_labels for _, batch_labels in batches]
        keys.append(np.stack([np.arange(count), np.full(count, shard)], axis=1))
    keys = np.concatenate(keys)
    written_order = np.lexsort((keys[:, 1], keys[:, 0]))  # by record index, then shard
    return np.concatenate(images)[written_order], np.concatenate(labels)[written_order]


def _read_tfds_split(data_dir, split):
    import tensorflow_datasets as tfds  # Imported only for this source: it is slow to import.

    builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"tensorflow-datasets '{TFDS_NAME}' is not prepared in {data_dir!r} (no "
            f"{builder.data_dir}/dataset_info.json) and nothing is downloaded. Use the official "
            f"binary release ({BINARY_DIR_NAME}/ in the data directory), or TFRecord shards "
            "written by python -m launch.convert --source=cifar10_binary.")
    dataset = builder.as_dataset(split=split, shuffle_files=False, batch_size=4096,
                                 read_config=tfds.ReadConfig(interleave_cycle_length=1))
    batches = [(batch["image"], batch["label"]) for batch in tfds.as_numpy(dataset)]
    return (np.concatenate([images for images, _ in batches]),
            np.concatenate([labels for _, labels in batches]))


def load_arrays(split, data_dir, max_examples=None, source=None):
    """One split, whole, in memory and checked: (images uint8 [N, 32, 32, 3], labels int32 [N]).

    Args:
      split: 'train' or 'test'.
      data_dir: directory holding one of the sources (see `find_source`).
      max_examples: None or int, keep only the first examples in canonical order.
      source: None (auto-detect with `find_source`), 'binary', 'tfrecord' or 'tfds'.

    Returns:
      (images uint8 HWC, labels int32 in 0..9), in canonical order (see the module docstring).

    Raises:
      FileNotFoundError, ValueError: missing files or bad data, naming the file (and record).
    """
    _check_split(split)
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max_examples must be None or a positive int, got {max_examples!r}.")
    if source is None:
        source, path = find_source(data_dir)
    else:
        if source not in SOURCES:
            raise ValueError(f"source must be None or one of {SOURCES}, got {source!r}.")
        path = _check_dir(data_dir)
        if source == "binary" and os.path.isdir(os.path.join(path, BINARY_DIR_NAME)):
            path = os.path.join(path, BINARY_DIR_NAME)
    reader = {"binary": read_binary_split, "tfrecord": read_tfrecord_split,
              "tfds": _read_tfds_split}[source]
    images, labels = reader(path, split)
    return images[:max_examples], labels[:max_examples].astype(np.int32)


def augment(image, key):
    """Standard CIFAR augmentation: zero-pad 4, random 32x32 crop, random horizontal flip.

    Args:
      image: uint8 or float32 [32, 32, 3]; float pixels are padded with 0 as they are.
      key: int32/int64 [2], the stateless seed of this example (and epoch).

    Returns:
      The augmented image, same dtype, [32, 32, 3].
    """
    crop_seed = tf.random.experimental.stateless_fold_in(key, 0)
    flip_seed = tf.random.experimental.stateless_fold_in(key, 1)
    padded = tf.pad(image, [[PAD_PIXELS, PAD_PIXELS], [PAD_PIXELS, PAD_PIXELS], [0, 0]])
    image = tf.image.stateless_random_crop(padded, IMAGE_SHAPE, seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def train_stream(images, labels, seed, first_position=0, input_context=None, augment_images=True,
                 deterministic=True):
    """The training examples in the stateless epoch order of `pipelines.order.index_stream`.

    Args:
      images, labels: a split from `load_arrays` (labels may be replaced, e.g. random labels).
      seed: int in [0, 2**32); seeds the order and the augmentation: example `i` in epoch `e`
        uses the stateless seed `tfrecord.example_key(seed, i, e)`, so it does not depend on
        sharding, order or parallelism, and differs between epochs.
      first_position: global stream position to start at (step * global batch size).
      input_context: `tf.distribute.InputContext` or None; pipeline w of n yields the stream
        positions w, w+n, ...
      augment_images: apply the training augmentation (pad 4 with zeros, random crop, random
        flip); False for the random-label runs, which see the same images every epoch.
      deterministic: keep a deterministic element order with parallel maps.

    Returns:
      An infinite dataset of `(image float32 [32, 32, 3] normalized with MEAN/STD, label int32)`.
    """
    def preprocess(image, label, index, epoch):
        if augment_images:
            image = augment(image, tfrecord.example_key(seed, index, epoch))
        return normalize(image), label

    return order.array_stream(images, labels, seed, preprocess, first_position, input_context,
                              deterministic=deterministic)


def examples(images, labels, input_context=None):
    """One pass over a split from `load_arrays` in canonical order (evaluation).

    Returns:
      A dataset of `(image float32 [32, 32, 3] normalized with MEAN/STD, label int32 [])`;
      pipeline w of n (`input_context`) gets examples w, w+n, ...
    """
    return core.array_examples(images, labels, normalize, input_context)


def load(split, data_dir, training=False, seed=0, input_context=None, max_examples=None,
         source=None, first_position=0, deterministic=True):
    """A split as examples for `pipelines.core.finish`: `load_arrays`, then `train_stream` (with
    augmentation) if `training`, else `examples`; see those for the arguments."""
    images, labels = load_arrays(split, data_dir, max_examples=max_examples, source=source)
    if training:
        return train_stream(images, labels, seed, first_position, input_context,
                            deterministic=deterministic)
    return examples(images, labels, input_context)
