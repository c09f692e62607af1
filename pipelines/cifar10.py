"""CIFAR-10 input pipeline: the official binary release, TFRecord shards, or a prepared TFDS copy.

Three on-disk sources are read (nothing is ever unpickled, nothing is downloaded):
  * 'binary': the official binary release, `cifar-10-batches-bin/data_batch_{1..5}.bin` and
    `test_batch.bin`; 3073-byte records, one label byte (0..9) then 3072 pixel bytes in CHW
    order (the 1024 red, then green, then blue values, each plane row-major). Read with
    `tf.data.FixedLengthRecordDataset` and decoded in the graph to HWC.
  * 'tfrecord': shards `{split}-XXXXX-of-YYYYY` (train / test) in the layout of
    `pipelines.tfrecord` (raw uint8 HWC `image/raw`, `image/shape` [32, 32, 3], 0-based
    `image/class/label`), as written by `python -m pipelines.convert --source=cifar10_binary`.
  * 'tfds': a tensorflow-datasets `cifar10` already prepared under `data_dir`
    (`data_dir/cifar10/<version>/`); it is read with download=False.

`load` turns a split into the examples `pipelines.core.finish` expects: `(image float32
[32, 32, 3], label int32 [])`, images normalized per channel with MEAN and STD (on [0, 1]
pixels). Training examples get the standard augmentation (4-pixel zero padding, random 32x32
crop, random horizontal flip) drawn with stateless seeds derived from (seed, example id, epoch),
so a pipeline is deterministic for a given seed, whatever its parallelism.

What is caught when the pipeline is built (ValueError / FileNotFoundError naming the file):
missing directory, missing batch files, binary files whose size is not a positive multiple of
3073 (truncated or corrupt), missing / empty / truncated TFRecord shards (see `pipelines.tfrecord`),
an unprepared TFDS directory. What is caught at the first bad record (InvalidArgumentError naming
the file and record): a label byte > 9 in a binary file; a TFRecord record with a bad shape, size
or label. A TFRecord record with corrupt payload bytes raises tf.data's DataLossError
("corrupted record at <offset>"), which does not name the file.
"""

import glob
import os

import numpy as np
import tensorflow as tf

from pipelines import core
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
        f"or {tfrecord.shard_pattern(data_dir, 'test')} (written by python -m pipelines.convert "
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
    """Reads one split of the binary release into memory (numpy; used by pipelines.convert).

    Returns:
      (images uint8 [N, 32, 32, 3] HWC, labels uint8 [N] in 0..9).

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


def decode_binary_record(record, filename, record_index):
    """Decodes one 3073-byte record in the graph.

    Args:
      record: string scalar tensor of 3073 bytes.
      filename, record_index: where it comes from (named in the error message).

    Returns:
      (image uint8 [32, 32, 3] HWC, label int32 []). A label byte > 9 raises
      InvalidArgumentError naming the range, the file and the record.
    """
    data = tf.io.decode_raw(record, tf.uint8)
    label = tf.cast(data[0], tf.int32)
    check = tfrecord.assert_in_file(
        label < NUM_CLASSES, "CIFAR-10 label byte out of range: labels must be in 0..9",
        filename, record_index, label)
    with tf.control_dependencies([check]):
        image = tf.transpose(tf.reshape(data[LABEL_BYTES:], (3, 32, 32)), (1, 2, 0))
        label = tf.identity(label)
    return image, label


def _binary_examples(batches_dir, split, input_context, max_examples, deterministic):
    files = [path for path, _ in check_binary_files(batches_dir, split)]
    records = tfrecord.records_with_origin(
        files, input_context=input_context, max_examples=max_examples, cycle_length=1,
        deterministic=deterministic,
        reader=lambda f: tf.data.FixedLengthRecordDataset(f, RECORD_BYTES))

    def decode(record, file_index, filename, record_index):
        image, label = decode_binary_record(record, filename, record_index)
        return image, label, file_index * (2**32) + record_index

    return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def _tfrecord_examples(data_dir, split, input_context, max_examples, deterministic):
    return tfrecord.read_image_tfrecords(
        tfrecord.shard_pattern(data_dir, split), IMAGE_SHAPE, NUM_CLASSES,
        input_context=input_context, max_examples=max_examples, with_example_ids=True,
        scan_headers=True, deterministic=deterministic)


def _tfds_examples(data_dir, split, input_context, max_examples, deterministic):
    import tensorflow_datasets as tfds  # Imported only for this source: it is slow to import.

    builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"tensorflow-datasets '{TFDS_NAME}' is not prepared in {data_dir!r} (no "
            f"{builder.data_dir}/dataset_info.json) and nothing is downloaded. Use the official "
            f"binary release ({BINARY_DIR_NAME}/ in the data directory), or TFRecord shards "
            "written by python -m pipelines.convert --source=cifar10_binary.")
    num_pipelines = 1 if input_context is None else input_context.num_input_pipelines
    file_level = builder.info.splits[split].num_shards >= num_pipelines and max_examples is None
    read_config = tfds.ReadConfig(
        add_tfds_id=True, try_autocache=False, interleave_cycle_length=1,
        input_context=input_context if file_level and num_pipelines > 1 else None)
    tfds_split = split if max_examples is None else f"{split}[:{int(max_examples)}]"
    dataset = builder.as_dataset(split=tfds_split, shuffle_files=False, read_config=read_config)
    if not file_level:
        dataset = core.shard_for_worker(dataset, input_context)
    return dataset.map(
        lambda e: (e["image"], tf.cast(e["label"], tf.int32),
                   tf.strings.to_hash_bucket_fast(e["tfds_id"], 2**62)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


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


def examples(split, data_dir, input_context=None, max_examples=None, source=None,
             deterministic=True):
    """One epoch of raw examples `(image uint8 [32, 32, 3], label int32, example_id int64)`.

    `example_id` is unique within the split and does not depend on sharding. See `load` for the
    arguments; no augmentation and no normalization are applied.
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
    reader = {"binary": _binary_examples, "tfrecord": _tfrecord_examples,
              "tfds": _tfds_examples}[source]
    return reader(path, split, input_context, max_examples, deterministic)


def load(split, data_dir, training=False, seed=0, input_context=None, max_examples=None,
         repeat=None, source=None, deterministic=True):
    """CIFAR-10 examples for `pipelines.core.finish`.

    Args:
      split: 'train' or 'test'.
      data_dir: directory holding one of the sources (see `find_source`).
      training: apply the training augmentation (pad 4 with zeros, random crop, random flip).
      seed: int; the augmentation of example `id` in epoch `e` uses the stateless seed
        `tfrecord.example_key(seed, id, e)`, so it does not depend on sharding, order or
        parallelism, and differs between epochs.
      input_context: `tf.distribute.InputContext` or None. File-level sharding when there are at
        least as many files as input pipelines (and no `max_examples`), else data-level sharding
        after reading.
      max_examples: None or int, keep only the first examples of the split (in file order for
        the binary release; before sharding).
      repeat: repeat forever (epoch e = the e-th pass); defaults to `training`. Augmenting here
        with a non-repeating dataset repeated later would give every epoch the same crops, so
        training streams repeat here (then `core.finish`'s own repeat is a no-op).
      source: None (auto-detect with `find_source`), 'binary', 'tfrecord' or 'tfds'.
      deterministic: keep a deterministic element order with parallel maps.

    Returns:
      A dataset of `(image float32 [32, 32, 3] normalized with MEAN/STD, label int32 [])`.

    Raises:
      FileNotFoundError, ValueError: see the module docstring (checks done at build time).
    """
    repeat = training if repeat is None else repeat
    base = examples(split, data_dir, input_context=input_context, max_examples=max_examples,
                    source=source, deterministic=deterministic)
    if repeat:
        dataset = tf.data.Dataset.counter().flat_map(
            lambda epoch: base.map(lambda image, label, example_id: (image, label, example_id,
                                                                     epoch)))
    else:
        dataset = base.map(lambda image, label, example_id: (
            image, label, example_id, tf.constant(0, tf.int64)))

    def preprocess(image, label, example_id, epoch):
        if training:
            image = augment(image, tfrecord.example_key(seed, example_id, epoch))
        return normalize(image), label

    return dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=deterministic)
