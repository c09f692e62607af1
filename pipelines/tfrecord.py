"""TFRecord shards of raw-pixel image examples: the layout, a safe shard writer and a strict reader.

The project's own TFRecord layout (written by `launch.convert`, read by `read_image_tfrecords`,
`pipelines.cifar10` and anything converted from IDX files) is one `tf.train.Example` per image:

    image/raw          bytes   the pixels, uint8, row-major [height, width, channels] (HWC),
                               exactly height * width * channels bytes (no compression: exact,
                               and free to decode)
    image/shape        int64   [height, width, channels]
    image/class/label  int64   the class, 0-based

in shards named `{split}-{index:05d}-of-{num_shards:05d}` (e.g. `train-00000-of-00004`). Example
k of a split goes to shard k % num_shards, so reading the shards round-robin (what
`read_image_tfrecords` does when it reads every shard) gives back the original order.

What is caught when a pipeline is built, and what only when the bad record is reached:
  * built: missing directory, no file matching the pattern, empty (0-byte) shards, and, with
    `scan_headers=True`, every TFRecord framing error visible from the record headers: a truncated
    shard (the last record runs past the end of the file) and corrupt length fields (length CRC
    mismatch). These raise ValueError naming the file and the byte offset. With
    `scan_headers=False` only the first record's header is checked (one read per file).
  * first bad record: a record whose payload bytes are corrupt (data CRC mismatch; tf.data raises
    DataLossError "corrupted record at <offset>", which does not name the file), and the content
    checks done in the graph: wrong `image/shape`, wrong `image/raw` length, label out of range,
    missing features. These raise InvalidArgumentError whose message names the file and the
    record index within it.
"""

import dataclasses
import glob as _glob
import json
import os
import struct
import uuid

import numpy as np
import tensorflow as tf

from pipelines import core

SHARD_NAME_FORMAT = "{split}-{index:05d}-of-{num_shards:05d}"
IMAGE_RAW_KEY = "image/raw"
IMAGE_SHAPE_KEY = "image/shape"
LABEL_KEY = "image/class/label"

# Reading every shard at once (cycle_length = number of files) reproduces the written order; past
# this many shards the reader cycles over this many files at a time.
MAX_CYCLE_LENGTH = 64


def shard_pattern(directory, split):
    """Returns the glob pattern matching the shards of `split` in `directory`."""
    return os.path.join(os.fspath(directory), f"{split}-*-of-*")


def shard_paths(directory, split, num_shards):
    """Returns the `num_shards` shard paths of `split` in `directory`, in shard order."""
    return [
        os.path.join(os.fspath(directory),
                     SHARD_NAME_FORMAT.format(split=split, index=i, num_shards=num_shards))
        for i in range(num_shards)
    ]


def int64_feature(values):
    """A `tf.train.Feature` holding int64 `values` (an int or a sequence of ints)."""
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values.tolist()))


def bytes_feature(values):
    """A `tf.train.Feature` holding `values` (bytes, or a sequence of bytes)."""
    if isinstance(values, (bytes, bytearray)):
        values = [bytes(values)]
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def serialize_image_example(image, label):
    """Serializes one example in the project's layout (see the module docstring).

    Args:
      image: uint8 array [height, width, channels] (HWC).
      label: int, the 0-based class.

    Returns:
      The serialized `tf.train.Example` (bytes).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(
            f"image must be uint8 [height, width, channels], got {image.dtype} {image.shape}.")
    example = tf.train.Example(features=tf.train.Features(feature={
        IMAGE_RAW_KEY: bytes_feature(np.ascontiguousarray(image).tobytes()),
        IMAGE_SHAPE_KEY: int64_feature(image.shape),
        LABEL_KEY: int64_feature(int(label)),
    }))
    return example.SerializeToString()


def write_shards(examples, output_dir, split, num_shards, serialize_fn, overwrite=False):
    """Writes `examples` into `num_shards` TFRecord shards `{split}-XXXXX-of-YYYYY`.

    One split of `write_splits` (see there): example k goes to shard k % num_shards, and the
    shards appear only once every example has been written.

    Returns:
      The list of shard paths, in shard order.
    """
    return write_splits({split: examples}, output_dir, num_shards, serialize_fn,
                        overwrite=overwrite)[split]


def _check_write_arguments(splits, num_shards):
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be a positive int, got {num_shards!r}.")
    for split, examples in splits.items():
        if not split or os.sep in split:
            raise ValueError(f"split must be a non-empty name without {os.sep!r}, got {split!r}.")
        if hasattr(examples, "__len__"):
            _check_enough_examples(split, len(examples), num_shards)


def _check_enough_examples(split, count, num_shards):
    if count < num_shards:
        raise ValueError(
            f"num_shards={num_shards} is larger than the number of '{split}' examples "
            f"({count}); every shard must hold at least one example: give at most {count}.")


def write_splits(splits, output_dir, num_shards, serialize_fn, overwrite=False):
    """Writes every split of `splits` into `num_shards` shards each: all of them or none.

    Example k of a split goes to its shard k % num_shards. Everything is checked before the first
    byte is written (the shard count against every split whose examples have a length), the
    shards are written under hidden temporary names in `output_dir` (`temporary_path`, which no
    reader's pattern matches), and they are renamed only once every split has been written
    completely. A failure at any point (bad arguments, too few examples, an error from
    `serialize_fn` or the file system, an exception raised by a signal handler) removes the
    temporary files, so it leaves no file that looks like a shard and nothing that blocks running
    the same command again; the temporary files of a process killed outright are removed by the
    next successful write of the same splits into the directory.

    Args:
      splits: {split name: iterable of examples (anything `serialize_fn` accepts)}; a sequence
        (with a length) is checked against `num_shards` before anything is written.
      output_dir: str, created if missing.
      num_shards: int >= 1 shards per split. Every split needs at least this many examples.
      serialize_fn: callable mapping one example to bytes (a serialized record).
      overwrite: if False, refuse (FileExistsError) when a shard of any of the splits exists in
        `output_dir`. If True, the existing shards of those splits are deleted once the new ones
        are complete (so a smaller `num_shards` never leaves stale shards matching the pattern).

    Returns:
      {split: list of shard paths, in shard order}.

    Raises:
      FileExistsError: shards of a split exist and `overwrite` is False.
      ValueError: bad `num_shards` or split name, or a split with fewer examples than shards.
    """
    _check_write_arguments(splits, num_shards)
    output_dir = os.fspath(output_dir)
    existing = sorted(p for split in splits for p in _glob.glob(shard_pattern(output_dir, split)))
    if existing and not overwrite:
        raise FileExistsError(
            f"Refusing to overwrite {len(existing)} existing shard(s) in {output_dir!r} (e.g. "
            f"{os.path.basename(existing[0])!r}); delete them, choose another output directory, "
            "or pass overwrite=True (--overwrite).")
    os.makedirs(output_dir, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    paths = {split: shard_paths(output_dir, split, num_shards) for split in splits}
    tmp_paths = {split: [temporary_path(p, token) for p in paths[split]] for split in splits}
    try:
        for split, examples in splits.items():
            _write_split_shards(examples, split, tmp_paths[split], serialize_fn)
    except BaseException:
        for tmp in (p for split_tmp in tmp_paths.values() for p in split_tmp):
            if os.path.exists(tmp):
                os.remove(tmp)
        raise
    finals = {p for split_paths in paths.values() for p in split_paths}
    for p in existing:
        if p not in finals:
            os.remove(p)
    for split in splits:
        for tmp, final in zip(tmp_paths[split], paths[split]):
            os.replace(tmp, final)
    # Leftovers of a conversion killed outright (SIGKILL) into this directory.
    for split in splits:
        for stale in _glob.glob(temporary_path(shard_pattern(output_dir, split), "*")):
            os.remove(stale)
    return paths


def temporary_path(path, token):
    """Where a file is written before it is renamed to `path`: a hidden name in the same
    directory (`.<name>.tmp-<token>`), which no shard pattern (`train-*-of-*`) matches."""
    directory, name = os.path.split(os.fspath(path))
    return os.path.join(directory, f".{name}.tmp-{token}")


def _write_split_shards(examples, split, tmp_paths, serialize_fn):
    """Writes one split round-robin into the (temporary) shard files `tmp_paths`."""
    writers = [tf.io.TFRecordWriter(p) for p in tmp_paths]
    count = 0
    try:
        for index, example in enumerate(examples):
            writers[index % len(writers)].write(serialize_fn(example))
            count = index + 1
    finally:
        for writer in writers:
            writer.close()
    _check_enough_examples(split, count, len(tmp_paths))


# TFRecord framing: uint64 length (little endian), uint32 masked crc32c of those 8 bytes, the
# data, uint32 masked crc32c of the data.
def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def _masked_crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _is_local(path):
    return "://" not in os.fspath(path)


def _open_binary(path):
    """An unbuffered local file, or a `tf.io.gfile.GFile` for other file systems (GCS, ...)."""
    if _is_local(path):
        return open(path, "rb", buffering=0)  # ~10x faster than GFile for many small reads
    return tf.io.gfile.GFile(path, "rb")


def _stat(path):
    """(size in bytes, modification time in ns) of a local or remote file."""
    if _is_local(path):
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime_ns
    stat = tf.io.gfile.stat(path)
    return stat.length, stat.mtime_nsec


def check_tfrecord_file(path, scan_headers=True):
    """Checks the TFRecord framing of `path` from its record headers (not the data CRCs).

    Args:
      path: str, a TFRecord file (uncompressed).
      scan_headers: walk every record header (one small read per record: detects truncated files
        and corrupt length fields anywhere); if False, check only the first record's header.

    Returns:
      The number of records (if `scan_headers`), else None.

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: empty file, truncated file or corrupt record header; the message names the file
        and the byte offset.
    """
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"TFRecord file {path!r} does not exist.")
    size, _ = _stat(path)
    if size == 0:
        raise ValueError(f"TFRecord file {path!r} is empty (0 bytes): truncated copy?")
    offset = 0
    records = 0
    with _open_binary(path) as f:
        while offset < size:
            f.seek(offset)
            header = f.read(12)
            if len(header) < 12:
                raise ValueError(
                    f"TFRecord file {path!r} is truncated: {size} bytes, record {records} at byte "
                    f"{offset} has an incomplete 12-byte header.")
            length, length_crc = struct.unpack("<QI", header)
            if _masked_crc32c(header[:8]) != length_crc:
                raise ValueError(
                    f"TFRecord file {path!r} is corrupt (or not a TFRecord file, or compressed): "
                    f"record {records} at byte {offset} has a bad length checksum.")
            end = offset + 12 + length + 4
            if end > size:
                raise ValueError(
                    f"TFRecord file {path!r} is truncated: record {records} at byte {offset} "
                    f"needs {12 + length + 4} bytes but the file ends at byte {size}.")
            offset = end
            records += 1
            if not scan_headers:
                return None
    return records


@dataclasses.dataclass(frozen=True)
class RecordFiles:
    """Record files in their canonical (sorted) order, with the number of records of each.

    paths: tuple of str. counts: tuple of int >= 1, counts[i] records in paths[i].
    """

    paths: tuple
    counts: tuple

    def __post_init__(self):
        if len(self.paths) != len(self.counts) or not self.paths:
            raise ValueError(f"RecordFiles needs one count per path and at least one file, got "
                             f"{len(self.paths)} paths and {len(self.counts)} counts.")

    @property
    def num_records(self):
        return sum(self.counts)

    def first(self, num_records):
        """The first `num_records` records in file order (a prefix of the files, the last cut).

        Args:
          num_records: None (all) or an int >= 1.
        """
        if num_records is None or num_records >= self.num_records:
            return self
        if isinstance(num_records, bool) or not isinstance(num_records, int) or num_records < 1:
            raise ValueError(f"num_records must be None or a positive int, got {num_records!r}.")
        paths, counts = [], []
        for path, count in zip(self.paths, self.counts):
            take = min(count, num_records - sum(counts))
            if take == 0:
                break
            paths.append(path)
            counts.append(take)
        return RecordFiles(tuple(paths), tuple(counts))


_COUNT_CACHE_VERSION = 1


def _read_count_cache(cache_path):
    """{absolute path: [size, mtime_ns, count]} from a cache file; {} if missing or unreadable."""
    if cache_path is None or not os.path.exists(cache_path):
        return {}
    try:
        with open(cache_path) as f:
            cache = json.load(f)
        if cache.get("version") == _COUNT_CACHE_VERSION and isinstance(cache.get("files"), dict):
            return cache["files"]
    except (OSError, ValueError, AttributeError):
        pass
    return {}  # A damaged cache is only a cache: the files are counted again.


def _write_count_cache(cache_path, files):
    """Writes the cache atomically (temporary file, then rename); a failure leaves it as it was."""
    directory = os.path.dirname(os.path.abspath(cache_path))
    tmp = f"{cache_path}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        os.makedirs(directory, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump({"version": _COUNT_CACHE_VERSION, "files": files}, f)
        os.replace(tmp, cache_path)
    except OSError:
        if os.path.exists(tmp):
            os.remove(tmp)


def count_records(paths, cache_path=None):
    """The number of records of each TFRecord file, from a scan of its record headers.

    The scan checks the framing of every record (`check_tfrecord_file`); it reads 12 bytes per
    record (the whole ImageNet training set: about 10 s on a local disk, one small request per
    record on a remote file system). With `cache_path`, counts are remembered per file, keyed by
    absolute path, size and modification time, so each file is scanned once.

    Args:
      paths: sequence of str, TFRecord files.
      cache_path: None (no cache) or a local JSON file (created, with its directory, if missing).

    Returns:
      A tuple of ints, one count per path.

    Raises:
      FileNotFoundError, ValueError: as `check_tfrecord_file`.
    """
    cache = _read_count_cache(cache_path)
    counts = []
    changed = False
    for path in paths:
        key = os.path.abspath(path) if _is_local(path) else os.fspath(path)
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(f"TFRecord file {path!r} does not exist.")
        size, mtime = _stat(path)
        entry = cache.get(key)
        if entry is not None and entry[:2] == [size, mtime]:
            counts.append(int(entry[2]))
            continue
        count = check_tfrecord_file(path, scan_headers=True)
        cache[key] = [size, mtime, count]
        changed = True
        counts.append(count)
    if changed and cache_path is not None:
        _write_count_cache(cache_path, cache)
    return tuple(counts)


def list_files(file_pattern):
    """Returns the sorted files matching `file_pattern` (a glob string or a list of globs/paths).

    Raises:
      FileNotFoundError: the pattern's directory is missing or nothing matches; names the pattern.
    """
    patterns = [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) else file_pattern
    files = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        directory = os.path.dirname(pattern)
        if directory and not tf.io.gfile.isdir(directory):
            raise FileNotFoundError(
                f"Directory {directory!r} (of the file pattern {pattern!r}) does not exist.")
        matches = tf.io.gfile.glob(pattern)
        if not matches:
            raise FileNotFoundError(f"No file matches the pattern {pattern!r}.")
        files.extend(matches)
    return sorted(set(files))


def assert_in_file(condition, message, filename, record_index, *values):
    """In-graph check: InvalidArgumentError '<message> [file] [<name>] [record] [<i>] ...'.

    Args:
      condition: bool scalar tensor, must be True.
      message: str, what is wrong (include the valid range).
      filename: string scalar tensor, the file the record comes from.
      record_index: int64 scalar tensor, the record's index within the file.
      *values: tensors appended to the message (e.g. the offending value).

    Returns:
      The assert op (use inside `tf.control_dependencies`).
    """
    data = [message, "file", filename, "record", record_index]
    if values:
        data += ["value", *values]
    return tf.debugging.Assert(condition, data, summarize=8)


def records_with_origin(files, input_context=None, max_examples=None, cycle_length=None,
                        deterministic=True, shuffle_files_seed=None,
                        reader=tf.data.TFRecordDataset):
    """Reads record files into `(record, file_index, filename, record_index)` elements.

    Args:
      files: list of str, the files in their canonical (sorted) order.
      input_context: a `tf.distribute.InputContext` or None. File-level sharding (each pipeline
        reads every num_input_pipelines-th file) when there are at least as many files as input
        pipelines and `max_examples` is None; otherwise data-level sharding after reading.
      max_examples: int or None; keep only the first `max_examples` records (in the read order,
        before sharding, so the pipelines partition the same subset).
      cycle_length: files read concurrently; defaults to min(len(files), MAX_CYCLE_LENGTH).
      deterministic: keep a deterministic element order with the parallel interleave.
      shuffle_files_seed: None, or an int64 scalar (tensor) seeding a shuffle of the file order.
      reader: maps a filename (string tensor) to a dataset of records; TFRecords by default.

    Returns:
      A dataset of (record string, file_index int64, filename string, record_index int64).
    """
    num_pipelines = 1 if input_context is None else input_context.num_input_pipelines
    file_level = len(files) >= num_pipelines and max_examples is None
    dataset = tf.data.Dataset.from_tensor_slices(
        (tf.range(len(files), dtype=tf.int64), tf.constant(files, dtype=tf.string)))
    if file_level:
        dataset = core.shard_for_worker(dataset, input_context)
    if shuffle_files_seed is not None:
        dataset = dataset.shuffle(len(files), seed=shuffle_files_seed)
    if cycle_length is None:
        cycle_length = min(len(files), MAX_CYCLE_LENGTH)

    def read_file(file_index, filename):
        return reader(filename).enumerate().map(
            lambda i, record: (record, file_index, filename, i))

    dataset = dataset.interleave(read_file, cycle_length=max(1, cycle_length), block_length=1,
                                 num_parallel_calls=tf.data.AUTOTUNE,
                                 deterministic=deterministic)
    if max_examples is not None:
        dataset = dataset.take(max_examples)
    if not file_level:
        dataset = core.shard_for_worker(dataset, input_context)
    return dataset


def example_key(seed, example_id, epoch):
    """The stateless seed of one example in one epoch (for per-example augmentation).

    Args:
      seed: int or int scalar tensor, the pipeline's seed.
      example_id: int64 scalar, the example's id (unique in its split, see
        `read_image_tfrecords(with_example_ids=True)`).
      epoch: int64 scalar, the pass over the data.

    Returns:
      An int32 [2] seed for the `tf.random.stateless_*` / `tf.image.stateless_*` ops.
    """
    base = tf.stack([tf.cast(seed, tf.int64), tf.cast(example_id, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, tf.cast(epoch, tf.int64))


def parse_image_example(record, filename, record_index, image_shape, num_classes):
    """Parses one record of the project's layout, checking it in the graph.

    Args:
      record: string scalar tensor, a serialized `tf.train.Example`.
      filename, record_index: where it comes from (named in error messages).
      image_shape: (height, width, channels), the expected shape.
      num_classes: labels must be in 0..num_classes-1.

    Returns:
      (image uint8 [height, width, channels] static shape, label int32 scalar).
    """
    image_shape = tuple(int(d) for d in image_shape)
    features = tf.io.parse_single_example(record, {
        IMAGE_RAW_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
        IMAGE_SHAPE_KEY: tf.io.FixedLenFeature([3], tf.int64, default_value=[-1, -1, -1]),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    })
    label = features[LABEL_KEY]
    shape = features[IMAGE_SHAPE_KEY]
    raw = features[IMAGE_RAW_KEY]
    checks = [
        assert_in_file(tf.reduce_all(tf.equal(shape, image_shape)),
                       f"{IMAGE_SHAPE_KEY} must be {list(image_shape)} (missing feature reads as "
                       "[-1, -1, -1])", filename, record_index, shape),
        assert_in_file(tf.equal(tf.strings.length(raw), int(np.prod(image_shape))),
                       f"{IMAGE_RAW_KEY} must hold {int(np.prod(image_shape))} bytes (uint8 HWC "
                       f"{list(image_shape)})", filename, record_index, tf.strings.length(raw)),
        assert_in_file(tf.logical_and(label >= 0, label < num_classes),
                       f"{LABEL_KEY} out of range: labels must be in 0..{num_classes - 1} "
                       "(0-based; a missing label reads as -1)", filename, record_index, label),
    ]
    with tf.control_dependencies(checks):
        image = tf.reshape(tf.io.decode_raw(raw, tf.uint8), image_shape)
        label = tf.cast(label, tf.int32)
    return image, label


def read_image_tfrecords(file_pattern, image_shape, num_classes, input_context=None,
                         max_examples=None, with_example_ids=False, scan_headers=True,
                         deterministic=True):
    """Reads TFRecord shards in the project's layout (see the module docstring).

    Reading every shard of a split written by `write_shards` gives back the examples in their
    original order (shards are read round-robin, one record at a time; exact for up to
    MAX_CYCLE_LENGTH shards). Works on any file system
    `tf.io.gfile` knows (local, GCS, ...).

    Args:
      file_pattern: glob string (e.g. '/data/mnist/train-*-of-*') or a list of globs/paths.
      image_shape: (height, width, channels) of every image, e.g. (28, 28, 1) for MNIST.
      num_classes: labels must be in 0..num_classes-1.
      input_context: `tf.distribute.InputContext` or None; file-level sharding when there are
        at least as many files as input pipelines (and no `max_examples`), else data-level.
      max_examples: int or None, keep only the first examples (before sharding).
      with_example_ids: also return an int64 example id, unique within the split and independent
        of sharding: file_index * 2**32 + record_index (for per-example stateless seeds).
      scan_headers: check every record header of every file when building the pipeline (see the
        module docstring); if False only the first record of each file is checked.
      deterministic: keep a deterministic order with the parallel interleave.

    Returns:
      A dataset of (image uint8 [height, width, channels], label int32 []) or, with
      `with_example_ids`, (image, label, example_id int64 []).

    Raises:
      FileNotFoundError: missing directory or no file matching the pattern.
      ValueError: empty, truncated or corrupt shard (framing checks, see the module docstring).
    """
    files = list_files(file_pattern)
    for path in files:
        check_tfrecord_file(path, scan_headers=scan_headers)
    dataset = records_with_origin(files, input_context=input_context, max_examples=max_examples,
                                  deterministic=deterministic)

    def parse(record, file_index, filename, record_index):
        image, label = parse_image_example(record, filename, record_index, image_shape,
                                           num_classes)
        if with_example_ids:
            return image, label, file_index * (2**32) + record_index
        return image, label

    return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
