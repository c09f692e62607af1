"""ImageNet (ILSVRC-2012) input pipeline over the standard TFRecord shards.

The shards are those of the usual conversion scripts (e.g. tensorflow/models'
`build_imagenet_data.py`): `train-XXXXX-of-01024` and `validation-XXXXX-of-00128`, one
`tf.train.Example` per image with `image/encoded` (JPEG bytes, RGB) and `image/class/label`
(int64, 1-based: 1..1000; label 0 is unused). Labels are returned 0-based.

`list_shards` lists the shards of a split in sorted order and counts the records of each from
their headers (`tfrecord.count_records`, optionally cached), which also checks their framing. The
records are read in the order of a `pipelines.order.RecordOrder`: for training, every epoch
permutes the shards, reads groups of `cycle_length` shards in parallel (one record of each in
turn) and permutes windows of encoded records, all from stateless seeds of (seed, epoch), so the
stream restarts exactly at any position (a resumed run at step s reads from s * batch size). For
evaluation the shards are read in sorted order, unpermuted.

Training examples get the standard augmentation, a random-resized crop (area 8%-100% of the
image, aspect ratio 3/4-4/3, at least 10% of the image covered, via
`tf.image.stateless_sample_distorted_bounding_box`; only the crop is decoded, with
`tf.image.decode_and_crop_jpeg`) resized to image_size x image_size, then a random horizontal
flip; the stateless seeds come from (seed, example id, epoch), example id = shard index * 2**32 +
record index, so the augmentation does not depend on sharding, order or parallelism. Evaluation
examples are resized (bilinear, antialiased, aspect ratio kept) so that the shorter side is
`resize_size` (256 for image_size 224) and center-cropped to image_size x image_size. Pixels are
normalized per channel with MEAN / STD on [0, 1] pixels.

What is caught when the pipeline is built: missing directory, no shard matching
`{split}-*-of-*` (FileNotFoundError naming the pattern), empty, truncated or corrupt-header shards
(ValueError naming the file and byte offset). What is caught at the first bad record: a label
outside 1..num_classes or missing, and image bytes that are not JPEG (InvalidArgumentError naming
the range / problem, the shard and the record index); a JPEG that fails to decode
(InvalidArgumentError "Invalid JPEG data", without the shard name) and a record with corrupt
payload bytes (tf.data DataLossError with the byte offset, without the shard name): for those two,
`find_bad_record` names the shard and the record.
"""

import os

import tensorflow as tf

from pipelines import core
from pipelines import order as order_lib
from pipelines import tfrecord

NUM_CLASSES = 1000
IMAGE_SIZE = 224
SPLITS = ("train", "validation")
ENCODED_KEY = "image/encoded"
LABEL_KEY = "image/class/label"

# Per-channel (R, G, B) mean and standard deviation on [0, 1] pixels.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# Random-resized-crop parameters.
CROP_AREA_RANGE = (0.08, 1.0)
CROP_ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
CROP_MIN_OBJECT_COVERED = 0.1
CROP_MAX_ATTEMPTS = 10


def default_resize_size(image_size):
    """The eval shorter-side size for `image_size`: 256 for 224 (the 0.875 crop ratio)."""
    return int(round(image_size * 256 / 224))


def normalize(image):
    """(x - MEAN) / STD per channel; `image` [..., 3] uint8 (0..255) or float in [0, 1]."""
    return core.normalize(image, MEAN, STD)


def denormalize(image):
    """Inverse of `normalize`: float32 [..., 3] -> float32 [..., 3] in [0, 1]."""
    return core.denormalize(image, MEAN, STD)


def shard_pattern(data_dir, split):
    """The glob pattern of the shards of `split` ('train' or 'validation') in `data_dir`."""
    return os.path.join(os.fspath(data_dir), f"{split}-*-of-*")


def list_shards(data_dir, split, cache_path=None):
    """The sorted shards of `split` with their record counts, after the build-time checks.

    Args:
      data_dir: directory holding the shards.
      split: 'train' or 'validation'.
      cache_path: None, or a local JSON file caching the record counts (see
        `tfrecord.count_records`); without it every record header is read on each call.

    Returns:
      A `tfrecord.RecordFiles`.

    Raises:
      ValueError: bad split; empty, truncated or corrupt shard (see the module docstring).
      FileNotFoundError: missing directory, or no shard matching the pattern (named).
    """
    if split not in SPLITS:
        raise ValueError(f"ImageNet split must be one of {SPLITS}, got {split!r}.")
    data_dir = os.fspath(data_dir)
    pattern = shard_pattern(data_dir, split)
    if not tf.io.gfile.isdir(data_dir):
        raise FileNotFoundError(
            f"ImageNet data directory {data_dir!r} does not exist (looked for shards "
            f"{pattern!r}).")
    paths = tuple(sorted(tf.io.gfile.glob(pattern)))
    if not paths:
        raise FileNotFoundError(
            f"No ImageNet shard matches {pattern!r}: expected the standard TFRecord shards "
            f"{split}-XXXXX-of-YYYYY.")
    return tfrecord.RecordFiles(paths, tfrecord.count_records(paths, cache_path))


def parse_record(record, filename, record_index, num_classes=NUM_CLASSES):
    """Parses one record: (JPEG bytes string [], 0-based label int32 []), checked in the graph."""
    features = tf.io.parse_single_example(record, {
        ENCODED_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    })
    label = features[LABEL_KEY]
    encoded = features[ENCODED_KEY]
    checks = [
        tfrecord.assert_in_file(
            tf.logical_and(label >= 1, label <= num_classes),
            f"ImageNet {LABEL_KEY} out of range: labels must be in 1..{num_classes} (1-based, "
            "as written by the standard conversion scripts; a missing label reads as -1)",
            filename, record_index, label),
        tfrecord.assert_in_file(
            tf.io.is_jpeg(encoded),
            f"ImageNet {ENCODED_KEY} is not JPEG data (missing, empty or corrupt)",
            filename, record_index, tf.strings.length(encoded)),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(encoded), tf.cast(label - 1, tf.int32)


def _resize(image, size):
    """Bilinear antialiased resize of uint8 [h, w, 3] to `size` (h', w'); float32 0..255."""
    return tf.image.resize(image, size, method="bilinear", antialias=True)


def preprocess_train(encoded, key, image_size=IMAGE_SIZE):
    """Random-resized crop + random horizontal flip of one JPEG.

    Args:
      encoded: string scalar, JPEG bytes.
      key: int [2], the stateless seed of this example and epoch.
      image_size: output height and width (pixels).

    Returns:
      float32 [image_size, image_size, 3], pixel values in [0, 1] (not normalized).
    """
    box_seed = tf.random.experimental.stateless_fold_in(key, 0)
    flip_seed = tf.random.experimental.stateless_fold_in(key, 1)
    shape = tf.io.extract_jpeg_shape(encoded)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=box_seed,
        min_object_covered=CROP_MIN_OBJECT_COVERED, aspect_ratio_range=CROP_ASPECT_RATIO_RANGE,
        area_range=CROP_AREA_RANGE, max_attempts=CROP_MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True)
    crop_window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(encoded, crop_window, channels=3)
    image = _resize(image, (image_size, image_size)) / 255.0
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return tf.reshape(image, (image_size, image_size, 3))


def preprocess_eval(encoded, image_size=IMAGE_SIZE, resize_size=None):
    """Resize the shorter side to `resize_size` (aspect kept), center crop image_size.

    Args:
      encoded: string scalar, JPEG bytes.
      image_size: output height and width (pixels).
      resize_size: shorter side after resizing (pixels, >= image_size); defaults to
        `default_resize_size(image_size)` (256 for 224).

    Returns:
      float32 [image_size, image_size, 3], pixel values in [0, 1] (not normalized).
    """
    resize_size = default_resize_size(image_size) if resize_size is None else resize_size
    image = tf.io.decode_jpeg(encoded, channels=3)
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize_size / tf.reduce_min(shape)
    new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), resize_size)
    image = _resize(image, new_shape)
    top = (new_shape[0] - image_size) // 2
    left = (new_shape[1] - image_size) // 2
    image = image[top:top + image_size, left:left + image_size] / 255.0
    return tf.reshape(image, (image_size, image_size, 3))


def read(order, training=False, first_position=0, repeat=None, image_size=IMAGE_SIZE,
         resize_size=None, num_classes=NUM_CLASSES, deterministic=True):
    """ImageNet examples in the order of `order`, for `pipelines.core.finish`.

    Args:
      order: a `pipelines.order.RecordOrder` over shards from `list_shards` (its seed also seeds
        the augmentation).
      training: random-resized crop + flip (else resize + center crop).
      first_position: global stream position to start at (step * global batch size).
      repeat: repeat forever with a new order and augmentation every epoch; defaults to
        `training`. Otherwise up to the end of the current epoch.
      image_size: output height and width (pixels), 224 by default.
      resize_size: eval shorter side (pixels); default `default_resize_size(image_size)`.
      num_classes: labels must be in 1..num_classes in the files.
      deterministic: deterministic element order despite parallel reading and maps.

    Returns:
      A dataset of `(image float32 [image_size, image_size, 3] normalized with MEAN/STD,
      label int32 [] in 0..num_classes-1)`.
    """
    repeat = training if repeat is None else repeat
    resize_size = default_resize_size(image_size) if resize_size is None else resize_size
    if not 1 <= image_size <= resize_size:
        raise ValueError(f"Need 1 <= image_size <= resize_size, got image_size={image_size}, "
                         f"resize_size={resize_size}.")
    seed = order.seed

    def preprocess(record, file_index, filename, record_index, epoch):
        encoded, label = parse_record(record, filename, record_index, num_classes)
        if training:
            example_id = file_index * (2**32) + record_index
            image = preprocess_train(encoded, tfrecord.example_key(seed, example_id, epoch),
                                     image_size)
        else:
            image = preprocess_eval(encoded, image_size, resize_size)
        return normalize(image), label

    records = order.dataset(first_position, repeat=repeat, deterministic=deterministic)
    return records.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=deterministic)


def load(split, data_dir, training=False, seed=0, input_context=None, image_size=IMAGE_SIZE,
         resize_size=None, num_classes=NUM_CLASSES, max_examples=None, first_position=0,
         repeat=None, cycle_length=16, window=1024, cache_path=None, deterministic=True):
    """ImageNet examples of a split for `pipelines.core.finish` (`list_shards`, then `read`).

    Args:
      split: 'train' or 'validation'.
      data_dir: directory holding the shards.
      training: shuffled order and augmentation (see `read`); else sorted order, center crops.
      seed: int in [0, 2**32); seeds the order and the augmentation (per example and epoch).
      input_context: `tf.distribute.InputContext` or None. Pipeline w of n reads every n-th
        shard when there are at least n shards, else every n-th record.
      image_size, resize_size, num_classes, first_position, repeat, deterministic: see `read`.
      max_examples: None or int, keep only the first examples (in shard order, before
        sharding).
      cycle_length: shards read concurrently (a group, see `pipelines.order.RecordOrder`).
      window: encoded records (~110 kB each for ImageNet) permuted together in training.
      cache_path: see `list_shards`.

    Returns:
      A dataset of `(image float32 [image_size, image_size, 3] normalized with MEAN/STD,
      label int32 [] in 0..num_classes-1)`.
    """
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max_examples must be None or a positive int, got {max_examples!r}.")
    files = list_shards(data_dir, split, cache_path).first(max_examples)
    order = order_lib.RecordOrder(files, seed=seed, cycle_length=cycle_length, window=window,
                                  shuffle=training, input_context=input_context)
    return read(order, training=training, first_position=first_position, repeat=repeat,
                image_size=image_size, resize_size=resize_size, num_classes=num_classes,
                deterministic=deterministic)


def find_bad_record(paths, num_classes=NUM_CLASSES):
    """The first record of `paths` (in that order) that fails to read, parse or decode.

    Reads each file alone, record by record (checksums, the checks of `parse_record`, a full JPEG
    decode), to name the shard and record behind an error that tf.data reports without them
    (a corrupt payload, a JPEG that does not decode).

    Args:
      paths: shard paths, in the order to check them (e.g. `RecordOrder.files_from`).
      num_classes: labels must be in 1..num_classes.

    Returns:
      None if every record is good, else `(path, record index, error message)`.
    """
    def check(record_index, record, path):
        encoded, label = parse_record(record, path, record_index, num_classes)
        # Outputs that depend on the decode and the checks (tf.data prunes unused stateless ops).
        return tf.shape(tf.io.decode_jpeg(encoded, channels=3)), label

    for path in paths:
        records = tf.data.TFRecordDataset(path).enumerate().map(
            lambda i, record, path=path: check(i, record, path),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        good = 0
        try:
            for _ in records:
                good += 1
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError) as e:
            return path, good, core.error_line(e)
    return None
