"""Tests for pipelines.order: stateless epoch orders that restart exactly at any position.

Record files are real TFRecord files whose records name themselves (b"<file>/<record>"), with
uneven record counts, read through `pipelines.tfrecord.count_records`.
"""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from pipelines import order
from pipelines import tfrecord

_COUNTS = (3, 1, 4, 2, 5)  # records per file


def _context(num, index):
    return tf.distribute.InputContext(num_input_pipelines=num, input_pipeline_id=index)


def _ids(dataset, count):
    """[(file index, record index, epoch)] of the first `count` elements of a record stream."""
    result = []
    for record, file_index, _, record_index, epoch in dataset.take(count).as_numpy_iterator():
        self_named = tuple(int(x) for x in record.decode().split("/"))
        assert self_named == (file_index, record_index), (self_named, file_index, record_index)
        result.append((int(file_index), int(record_index), int(epoch)))
    return result


class IndexStreamTest(parameterized.TestCase, tf.test.TestCase):

    test_session = None

    def test_epochs_are_seeded_permutations(self):
        first = order.epoch_permutation(50, 3, 0).numpy()
        self.assertCountEqual(first, range(50))
        self.assertAllEqual(first, order.epoch_permutation(50, 3, 0))
        self.assertNotAllEqual(first, order.epoch_permutation(50, 3, 1))
        self.assertNotAllEqual(first, order.epoch_permutation(50, 4, 0))
        stream = list(order.index_stream(7, seed=3).take(21).as_numpy_iterator())
        for epoch in range(3):
            self.assertEqual([int(e) for _, e in stream[7 * epoch:7 * epoch + 7]], [epoch] * 7)
            self.assertAllEqual([i for i, _ in stream[7 * epoch:7 * epoch + 7]],
                                order.epoch_permutation(7, 3, epoch))

    def test_restarts_exactly_and_shards_by_position(self):
        full = [(int(i), int(e)) for i, e in
                order.index_stream(7, seed=5).take(30).as_numpy_iterator()]
        for position in (1, 6, 7, 8, 20):
            got = order.index_stream(7, seed=5, first_position=position).take(30 - position)
            self.assertEqual([(int(i), int(e)) for i, e in got.as_numpy_iterator()],
                             full[position:])
        for w in range(2):
            got = order.index_stream(7, seed=5, first_position=10,
                                     input_context=_context(2, w)).take(10)
            self.assertEqual([(int(i), int(e)) for i, e in got.as_numpy_iterator()],
                             full[10 + w:30:2])

    @parameterized.parameters(-1, 1.5, True)
    def test_bad_position(self, position):
        with self.assertRaisesRegex(ValueError, "first_position"):
            order.index_stream(7, seed=5, first_position=position)


class RecordOrderTest(parameterized.TestCase, tf.test.TestCase):

    test_session = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        directory = os.path.join(tf.compat.v1.test.get_temp_dir(), "record_order")
        os.makedirs(directory, exist_ok=True)
        paths = []
        for f, count in enumerate(_COUNTS):
            paths.append(os.path.join(directory, f"train-{f:05d}-of-{len(_COUNTS):05d}"))
            with tf.io.TFRecordWriter(paths[-1]) as writer:
                for r in range(count):
                    writer.write(f"{f}/{r}".encode())
        cls.files = tfrecord.RecordFiles(tuple(paths), tfrecord.count_records(paths))

    def _order(self, **kwargs):
        kwargs = dict(dict(seed=2, cycle_length=2, window=3), **kwargs)
        return order.RecordOrder(self.files, **kwargs)

    def test_every_epoch_reads_every_record_once_in_a_new_order(self):
        self.assertEqual(self.files.counts, _COUNTS)
        n = sum(_COUNTS)
        stream = _ids(self._order().dataset(), 3 * n)
        everything = sorted((f, r) for f, count in enumerate(_COUNTS) for r in range(count))
        epochs = [[(f, r) for f, r, _ in stream[e * n:(e + 1) * n]] for e in range(3)]
        for e, records in enumerate(epochs):
            self.assertEqual(sorted(records), everything)
            self.assertEqual({epoch for _, _, epoch in stream[e * n:(e + 1) * n]}, {e})
        self.assertNotEqual(epochs[0], epochs[1])
        self.assertEqual(stream, _ids(self._order().dataset(), 3 * n))
        self.assertNotEqual(stream, _ids(self._order(seed=3).dataset(), 3 * n))

    def test_restarts_exactly_at_any_position(self):
        n = sum(_COUNTS)
        full = _ids(self._order().dataset(), 2 * n + 3)
        # Inside the first window, after a window / group boundary, at / after an epoch's end.
        for position in (1, 4, 9, n, n + 5):
            self.assertEqual(_ids(self._order().dataset(position), 2 * n + 3 - position),
                             full[position:], position)

    def test_unshuffled_order_reads_groups_of_files_round_robin(self):
        got = _ids(self._order(shuffle=False).dataset(repeat=False), 100)
        # Groups (files 0, 1), (2, 3), (4): one record of each file in turn.
        want = [(0, 0), (1, 0), (0, 1), (0, 2), (2, 0), (3, 0), (2, 1), (3, 1), (2, 2), (2, 3)]
        want += [(4, r) for r in range(5)]
        self.assertEqual([(f, r) for f, r, _ in got], want)
        self.assertEqual(self._order(shuffle=False).files_from(5),
                         [self.files.paths[i] for i in (2, 3, 4)])
        self.assertEqual(self._order(shuffle=False).files_from(5, num_groups=1),
                         [self.files.paths[i] for i in (2, 3)])

    def test_file_level_sharding_splits_files_and_resumes(self):
        parts = []
        for w in range(2):
            record_order = self._order(input_context=_context(2, w))
            self.assertTrue(record_order.file_level)
            n = record_order.records_per_epoch
            stream = _ids(record_order.dataset(), 2 * n)
            self.assertEqual({f for f, _, _ in stream}, set(range(w, len(_COUNTS), 2)))
            self.assertEqual(sorted(stream[:n]), sorted(
                (f, r, 0) for f in range(w, len(_COUNTS), 2) for r in range(_COUNTS[f])))
            # Global position 6 after 3 steps of global batch 2: 3 records of each pipeline.
            self.assertEqual(_ids(record_order.dataset(6), 2 * n - 3), stream[3:])
            parts.append(stream[:n])
        self.assertEqual(sorted(parts[0] + parts[1]), sorted(
            (f, r, 0) for f, count in enumerate(_COUNTS) for r in range(count)))

    def test_data_level_sharding_when_fewer_files_than_pipelines(self):
        files = self.files.first(4)  # files 0 and 1: 3 + 1 records
        self.assertEqual(files.counts, (3, 1))
        full = _ids(order.RecordOrder(files, seed=2, cycle_length=2, window=3).dataset(), 12)
        for w in (0, 2):
            record_order = order.RecordOrder(files, seed=2, cycle_length=2, window=3,
                                             input_context=_context(3, w))
            self.assertFalse(record_order.file_level)
            self.assertEqual(_ids(record_order.dataset(), 4), full[w::3])
        self.assertEqual(_ids(record_order.dataset(3), 3), full[5::3])

    def test_first_records(self):
        self.assertEqual(self.files.first(5).counts, (3, 1, 1))
        self.assertEqual(self.files.first(5).paths, self.files.paths[:3])
        self.assertIs(self.files.first(None), self.files)
        self.assertIs(self.files.first(100), self.files)
        with self.assertRaisesRegex(ValueError, "num_records"):
            self.files.first(0)


if __name__ == "__main__":
    tf.test.main()
