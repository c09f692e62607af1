"""ImageNet (ILSVRC-2012) input pipeline over the standard TFRecord shards.

The shards are those of the usual conversion scripts (e.g. tensorflow/models'
`build_imagenet_data.py`): `train-XXXXX-of-01024` and `validation-XXXXX-of-00128`, one
`tf.train.Example` per image with `image/encoded` (JPEG bytes, RGB) and `image/class/label`
(int64, 1-based: 1..1000; label 0 is unused). Labels are returned 0-based.

Shards are listed once in sorted order (as `tf.data.Dataset.list_files(shuffle=False)` would,
but checked in Python first so that a missing pattern is a FileNotFoundError) and read with a
parallel interleave (`num_parallel_calls=AUTOTUNE`). Training examples get the standard
augmentation, a random-resized crop (area 8%-100% of the image, aspect ratio 3/4-4/3, at least
10% of the image covered, via
`tf.image.stateless_sample_distorted_bounding_box`; only the crop is decoded, with
`tf.image.decode_and_crop_jpeg`) resized to image_size x image_size, then a random horizontal
flip; the stateless seeds come from (seed, example id, epoch), example id = shard index * 2**32 +
record index, so the augmentation does not depend on sharding, order or parallelism. Evaluation
examples are resized (bilinear, antialiased, aspect ratio kept) so that the shorter side is
`resize_size` (256 for image_size 224) and center-cropped to image_size x image_size. Pixels are
normalized per channel with MEAN / STD on [0, 1] pixels. Training also shuffles the shard order
and the encoded records (`shuffle_buffer`) every epoch, with seeds derived from (seed, epoch).

What is caught when the pipeline is built: missing directory, no shard matching
`{split}-*-of-*` (FileNotFoundError naming the pattern), empty shards and a corrupt first record
header (ValueError naming the file); with `scan_headers=True` also truncated shards (this reads
one header per record, slow on a remote file system for the full dataset). What is caught at the
first bad record: a label outside 1..num_classes or missing, and image bytes that are not JPEG
(InvalidArgumentError naming the range / problem, the shard and the record index); a JPEG that
fails to decode (InvalidArgumentError "Invalid JPEG data", without the shard name); a truncated
or corrupt TFRecord (tf.data DataLossError with the byte offset, without the shard name).
"""

import os

import tensorflow as tf

from pipelines import core
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


def list_shards(data_dir, split, scan_headers=False):
    """Returns the sorted shard paths of `split`, after the build-time checks.

    Raises:
      ValueError: bad split; empty or corrupt shard (see the module docstring).
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
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(
            f"No ImageNet shard matches {pattern!r}: expected the standard TFRecord shards "
            f"{split}-XXXXX-of-YYYYY.")
    for path in files:
        tfrecord.check_tfrecord_file(path, scan_headers=scan_headers)
    return files


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


def load(split, data_dir, training=False, seed=0, input_context=None, image_size=IMAGE_SIZE,
         resize_size=None, num_classes=NUM_CLASSES, max_examples=None, repeat=None,
         shuffle_buffer=1024, cycle_length=16, scan_headers=False, deterministic=True):
    """ImageNet examples for `pipelines.core.finish`.

    Args:
      split: 'train' or 'validation'.
      data_dir: directory holding the shards.
      training: random-resized crop + flip (else resize + center crop), shuffled shards and
        records.
      seed: int; seeds the augmentation (per example and epoch) and the shuffles.
      input_context: `tf.distribute.InputContext` or None. File-level sharding when there are at
        least as many shards as input pipelines (and no `max_examples`), else data-level.
      image_size: output height and width (pixels), 224 by default.
      resize_size: eval shorter side (pixels); default `default_resize_size(image_size)`.
      num_classes: labels must be in 1..num_classes in the files.
      max_examples: None or int, keep only the first examples (read order, before sharding).
      repeat: repeat forever with a new augmentation every epoch; defaults to `training`.
      shuffle_buffer: training only, shuffle buffer of encoded records (JPEG bytes, ~110 kB each),
        before decoding. `core.finish` shuffles decoded float images afterwards: give it a small
        buffer for ImageNet (one 224x224x3 float32 image is 600 kB).
      cycle_length: shards read concurrently.
      scan_headers: check every record header of every shard when building (slow on a remote
        file system for the full dataset); otherwise only each shard's first record.
      deterministic: deterministic element order despite parallel reading and maps.

    Returns:
      A dataset of `(image float32 [image_size, image_size, 3] normalized with MEAN/STD,
      label int32 [] in 0..num_classes-1)`.
    """
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max_examples must be None or a positive int, got {max_examples!r}.")
    repeat = training if repeat is None else repeat
    resize_size = default_resize_size(image_size) if resize_size is None else resize_size
    if not 1 <= image_size <= resize_size:
        raise ValueError(f"Need 1 <= image_size <= resize_size, got image_size={image_size}, "
                         f"resize_size={resize_size}.")
    # The sorted, checked shard list (what tf.data.Dataset.list_files(pattern, shuffle=False)
    # yields), read by a parallel interleave.
    files = list_shards(data_dir, split, scan_headers=scan_headers)

    def one_epoch(epoch):
        records = tfrecord.records_with_origin(
            files, input_context=input_context, max_examples=max_examples,
            cycle_length=min(cycle_length, len(files)), deterministic=deterministic,
            shuffle_files_seed=(tf.cast(seed, tf.int64) * 1_000_003 + epoch) if training
            else None)
        if training and shuffle_buffer > 1:
            records = records.shuffle(shuffle_buffer, seed=tf.cast(seed, tf.int64) + epoch)
        return records.map(lambda record, file_index, filename, record_index: (
            record, file_index * (2**32) + record_index, filename, record_index, epoch))

    if repeat:
        dataset = tf.data.Dataset.counter().flat_map(one_epoch)
    else:
        dataset = one_epoch(tf.constant(0, tf.int64))

    def preprocess(record, example_id, filename, record_index, epoch):
        encoded, label = parse_record(record, filename, record_index, num_classes)
        if training:
            image = preprocess_train(encoded, tfrecord.example_key(seed, example_id, epoch),
                                     image_size)
        else:
            image = preprocess_eval(encoded, image_size, resize_size)
        return normalize(image), label

    return dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=deterministic)
