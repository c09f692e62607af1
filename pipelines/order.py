"""Stateless training orders: which example a training stream yields at each position.

A training stream is a pure function of (seed, position): epoch e visits the examples in an order
drawn from the stateless seed of (seed, e), so a run resumed at step s rebuilds its stream from
position s * global batch size. A checkpoint then needs the step only, not the buffers of a tf.data
iterator, and no stateful random op is in the pipeline. Two orders:

  * `index_stream`, for data sets held in memory (MNIST, CIFAR-10): epoch e is a uniform random
    permutation of the example indices 0..N-1 (`epoch_permutation`). Any position is reached
    without reading anything, by slicing that epoch's permutation.
  * `RecordOrder`, for record files too large for memory (ImageNet shards): epoch e permutes the
    files; consecutive runs of `cycle_length` files of that order form a group whose records are
    read round-robin (one record of each file in turn, in parallel) and then permuted within
    consecutive windows of `window` records. Any position is reached by dropping the groups before
    it (their record counts are known: nothing is read) and skipping at most one group's records.

Positions are global: after s steps of global batch B the stream has yielded positions 0..s*B-1
over all workers. With an input context of n input pipelines, pipeline w yields positions w, w+n,
w+2n, ... (`index_stream`, and `RecordOrder` when there are fewer files than pipelines); a
`RecordOrder` with at least n files gives pipeline w every n-th file (w, w+n, ...) as its own
stream instead, whose local position after s steps is s*B/n.
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from pipelines import labels as labels_lib

# High 32 bits of the first seed word of the order streams ('ORDR'): distinct from the label
# streams and from the deformation seeds (seed, k).
ORDER_SEED_TAG = 0x4F524452
# Examples gathered per vectorized step by `array_stream`.
_BLOCK = 256


def epoch_key(seed, epoch, *indices):
    """The int64 [2] stateless seed of epoch `epoch` (and optional sub-indices) of `seed`.

    Args:
      seed: int in [0, 2**32).
      epoch: int or int64 scalar tensor.
      *indices: ints or int64 scalar tensors folded in one after the other (e.g. group, window).
    """
    key = tf.stack([tf.constant(labels_lib.tagged_seed(ORDER_SEED_TAG, seed), tf.int64),
                    tf.cast(epoch, tf.int64)])
    for index in indices:
        key = tf.random.experimental.stateless_fold_in(key, tf.cast(index, tf.int64))
    return key


def epoch_permutation(num_examples, seed, epoch):
    """int64 [num_examples]: the order of epoch `epoch`, a uniform permutation of 0..N-1."""
    with tf.device("/cpu:0"):  # the op tf.data runs, also when called eagerly
        return tf.random.experimental.stateless_shuffle(
            tf.range(num_examples, dtype=tf.int64), epoch_key(seed, epoch))


def check_position(first_position, input_context):
    """Checks a global stream position; returns (position, number of input pipelines)."""
    if isinstance(first_position, bool) or not isinstance(first_position, (int, np.integer)) \
            or first_position < 0:
        raise ValueError(f"first_position must be an int >= 0, got {first_position!r}.")
    num_pipelines = 1 if input_context is None else input_context.num_input_pipelines
    if first_position % num_pipelines:
        raise ValueError(f"first_position {first_position} must be a multiple of the "
                         f"{num_pipelines} input pipelines (it is step * global batch size).")
    return int(first_position), num_pipelines


def _shard(dataset, input_context):
    if input_context is None or input_context.num_input_pipelines == 1:
        return dataset
    return dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def index_stream(num_examples, seed, first_position=0, input_context=None):
    """The infinite training order of an in-memory data set, from a given position on.

    Args:
      num_examples: N >= 1 examples per epoch.
      seed: int in [0, 2**32).
      first_position: global position to start at (examples already consumed by all pipelines:
        step * global batch size); a multiple of the number of input pipelines.
      input_context: a `tf.distribute.InputContext` or None; pipeline w of n yields the global
        positions w, w+n, ...

    Returns:
      An infinite dataset of `(index int64 [] in 0..N-1, epoch int64 [])`: global position
      p = e * N + i holds `epoch_permutation(N, seed, e)[i]`.
    """
    if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)) \
            or num_examples < 1:
        raise ValueError(f"num_examples must be an int >= 1, got {num_examples!r}.")
    labels_lib.check_seed(seed)
    first_position, _ = check_position(first_position, input_context)
    first_epoch, offset = divmod(first_position, int(num_examples))

    def epoch(e, skip=0):
        order = epoch_permutation(num_examples, seed, e)[skip:]
        return tf.data.Dataset.from_tensor_slices(order).map(lambda i: (i, e))

    stream = epoch(tf.constant(first_epoch, tf.int64), offset).concatenate(
        tf.data.Dataset.counter(start=first_epoch + 1).flat_map(epoch))
    return _shard(stream, input_context)


def array_stream(images, labels, seed, preprocess, first_position=0, input_context=None,
                 deterministic=True):
    """The training stream of an in-memory data set in the order of `index_stream`.

    Args:
      images: array [N, ...] (e.g. uint8 [N, H, W, C]).
      labels: int array [N].
      seed: int in [0, 2**32), seeds the order (and is what `preprocess` may use for keys).
      preprocess: fn(image, label, index int64 [], epoch int64 []) -> element (e.g. an augmented,
        normalized (image, label)); `index` is the example's row in `images`.
      first_position, input_context: as for `index_stream`.
      deterministic: keep the order with the parallel map.

    Returns:
      An infinite dataset of `preprocess` outputs.
    """
    if len(images) != len(labels):
        raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}.")
    images = tf.constant(images)
    labels = tf.constant(labels)
    stream = index_stream(len(labels), seed, first_position, input_context)
    # Rows gathered in blocks (one vectorized gather per block), then one example at a time.
    stream = stream.batch(_BLOCK).map(
        lambda index, epoch: (tf.gather(images, index), tf.gather(labels, index), index, epoch),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    return stream.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=deterministic)


@dataclasses.dataclass(frozen=True)
class RecordOrder:
    """The order in which a training (or evaluation) stream reads record files.

    Attributes:
      files: a `tfrecord.RecordFiles` (paths in canonical order, records per file).
      seed: int in [0, 2**32); seeds the file order of every epoch and the window permutations.
      cycle_length: files per group, read concurrently, one record of each in turn.
      window: records permuted together within a group (held in memory at once).
      shuffle: False reads the files in canonical order, groups unpermuted (evaluation).
      input_context: a `tf.distribute.InputContext` or None (see the module docstring).
    """

    files: object
    seed: int = 0
    cycle_length: int = 16
    window: int = 1024
    shuffle: bool = True
    input_context: Optional[tf.distribute.InputContext] = None

    def __post_init__(self):
        labels_lib.check_seed(self.seed)
        for name in ("cycle_length", "window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}.")

    @property
    def _num_pipelines(self):
        return 1 if self.input_context is None else self.input_context.num_input_pipelines

    @property
    def file_level(self):
        """Whether each input pipeline reads its own files (at least one file per pipeline)."""
        return len(self.files.paths) >= self._num_pipelines

    def own_files(self):
        """Indices (into files.paths) of the files this pipeline's stream is made of."""
        indices = np.arange(len(self.files.paths))
        if self.file_level and self._num_pipelines > 1:
            return indices[self.input_context.input_pipeline_id::self._num_pipelines]
        return indices

    @property
    def records_per_epoch(self):
        """Records in one epoch of this pipeline's stream (before data-level sharding)."""
        return int(sum(self.files.counts[i] for i in self.own_files()))

    def stream_position(self, first_position):
        """This pipeline's stream position for global position `first_position`."""
        first_position, num_pipelines = check_position(first_position, self.input_context)
        return first_position // num_pipelines if self.file_level else first_position

    def file_order(self, epoch):
        """int64 [files]: indices into files.paths in the order epoch `epoch` reads them."""
        own = tf.constant(self.own_files(), tf.int64)
        if not self.shuffle:
            return own
        return tf.gather(own, epoch_permutation(len(self.own_files()), self.seed, epoch))

    def _locate(self, position):
        """(epoch, group, records to skip in that group, file order) of a stream position."""
        epoch, offset = divmod(position, self.records_per_epoch)
        order = self.file_order(epoch).numpy()
        sizes = [sum(self.files.counts[i] for i in order[g:g + self.cycle_length])
                 for g in range(0, len(order), self.cycle_length)]
        starts = np.cumsum([0] + sizes)
        group = int(np.searchsorted(starts, offset, side="right") - 1)
        return epoch, group, int(offset - starts[group]), order

    def files_from(self, first_position, num_groups=2):
        """Paths of the files read from global position `first_position` on, in read order.

        The files of the group being read at that position and of the `num_groups - 1` groups
        after it (within its epoch): where the first bad record after that position is, for a
        data error met there.
        """
        epoch, group, _, order = self._locate(self.stream_position(first_position))
        del epoch
        begin = group * self.cycle_length
        return [self.files.paths[i] for i in order[begin:begin + num_groups * self.cycle_length]]

    def dataset(self, first_position=0, repeat=True, reader=tf.data.TFRecordDataset,
                deterministic=True):
        """The records from global position `first_position` on.

        Args:
          first_position: a multiple of the number of input pipelines (see `index_stream`).
          repeat: an infinite stream of epochs; else up to the end of the current epoch.
          reader: maps a filename (string tensor) to a dataset of records.
          deterministic: keep the order with the parallel interleave (False trades exactness for
            speed).

        Returns:
          A dataset of `(record string, file_index int64, filename string, record_index int64,
          epoch int64)`; file_index indexes files.paths, record_index counts within the file.
        """
        position = self.stream_position(first_position)
        first_epoch, group, skip, _ = self._locate(position)
        paths = tf.constant(self.files.paths, tf.string)
        counts = tf.constant(self.files.counts, tf.int64)

        def read_file(file_index, epoch):
            filename = tf.gather(paths, file_index)
            return reader(filename).take(tf.gather(counts, file_index)).enumerate().map(
                lambda record_index, record: (record, file_index, filename, record_index, epoch))

        def read_group(group_index, file_indices, epoch):
            records = tf.data.Dataset.from_tensor_slices(file_indices).interleave(
                lambda i: read_file(i, epoch), cycle_length=self.cycle_length, block_length=1,
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
            if not self.shuffle or self.window == 1:
                return records

            def permute(window_index, window):
                key = epoch_key(self.seed, epoch, group_index, window_index)
                with tf.device("/cpu:0"):
                    order = tf.random.experimental.stateless_shuffle(
                        tf.range(tf.shape(window[0], out_type=tf.int64)[0]), key)
                return tuple(tf.gather(component, order) for component in window)

            return records.batch(self.window).enumerate().map(permute).unbatch()

        def read_epoch(epoch, first_group=0, skip_records=0):
            groups = tf.data.Dataset.from_tensor_slices(self.file_order(epoch)).batch(
                self.cycle_length).enumerate().skip(first_group)
            records = groups.flat_map(lambda g, file_indices: read_group(g, file_indices, epoch))
            return records.skip(skip_records) if skip_records else records

        stream = read_epoch(tf.constant(first_epoch, tf.int64), group, skip)
        if repeat:
            stream = stream.concatenate(
                tf.data.Dataset.counter(start=first_epoch + 1).flat_map(read_epoch))
        return stream if self.file_level else _shard(stream, self.input_context)
