"""Tests for launch.convert (the command line tool) and pipelines.tfrecord (layout, writer,
reader).

The inputs are fake IDX directories written with pipelines.idx and fake CIFAR-10 binary files;
exit codes of the real `python3 -m launch.convert` are checked in subprocesses.
"""

import glob
import os
import signal
import subprocess
import sys
from unittest import mock

import numpy as np
import tensorflow as tf
from absl import flags
from absl.testing import parameterized

from launch import convert
from pipelines import cifar10
from pipelines import idx
from pipelines import tfrecord

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COUNTS = {"train": 11, "test": 7}


def _write_idx_dir(directory, seed=0):
    """Writes a small MNIST-layout directory; returns {split: (images [N, 28, 28], labels)}."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = rng.integers(0, 256, (_COUNTS[split], 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, (_COUNTS[split],), dtype=np.uint8)
        idx.write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), images)
        idx.write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), labels)
        data[split] = (images, labels)
    return data


def _write_cifar_binary(directory, records=2, seed=0):
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    for names in cifar10.BINARY_FILES.values():
        for name in names:
            data = rng.integers(0, 256, (records, cifar10.RECORD_BYTES), dtype=np.uint8)
            data[:, 0] %= 10
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data.tobytes())


def _run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "launch.convert", *args], cwd=_REPO, capture_output=True,
        text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _read(directory, split, image_shape=(28, 28, 1), **kwargs):
    dataset = tfrecord.read_image_tfrecords(tfrecord.shard_pattern(directory, split),
                                            image_shape, 10, **kwargs)
    return list(dataset.as_numpy_iterator())


def _context(num, index):
    return tf.distribute.InputContext(num_input_pipelines=num, input_pipeline_id=index)


class ConvertTest(parameterized.TestCase, tf.test.TestCase):

    test_session = None

    def setUp(self):
        super().setUp()
        self.tmp = os.path.join(self.get_temp_dir(), self.id().split(".")[-1])
        self.idx_dir = os.path.join(self.tmp, "idx")
        self.data = _write_idx_dir(self.idx_dir)
        self.out = os.path.join(self.tmp, "out")

    # IDX -> TFRecord -> read back.

    @parameterized.parameters(1, 3, 7)
    def test_idx_round_trip(self, num_shards):
        paths = convert.convert_idx(self.idx_dir, self.out, num_shards)
        for split, (images, labels) in self.data.items():
            self.assertEqual(paths[split], tfrecord.shard_paths(self.out, split, num_shards))
            self.assertEqual(os.path.basename(paths[split][0]),
                             f"{split}-00000-of-{num_shards:05d}")
            got = _read(self.out, split)
            self.assertEqual(got[0][0].dtype, np.uint8)
            self.assertAllEqual(np.stack([image for image, _ in got]), images[..., None])
            self.assertAllEqual([label for _, label in got], labels)
        self.assertEqual(sorted(os.listdir(self.out)),
                         sorted(os.path.basename(p) for ps in paths.values() for p in ps))

    def test_example_layout(self):
        convert.convert_idx(self.idx_dir, self.out, 1)
        record = next(iter(tf.data.TFRecordDataset(os.path.join(self.out, "test-00000-of-00001"))))
        features = tf.train.Example.FromString(record.numpy()).features.feature
        self.assertEqual(sorted(features), ["image/class/label", "image/raw", "image/shape"])
        self.assertEqual(list(features["image/shape"].int64_list.value), [28, 28, 1])
        self.assertEqual(features["image/raw"].bytes_list.value[0],
                         self.data["test"][0][0].tobytes())
        self.assertEqual(features["image/class/label"].int64_list.value[0], self.data["test"][1][0])

    def test_cifar10_binary(self):
        binary = os.path.join(self.tmp, "cifar-10-batches-bin")
        _write_cifar_binary(binary, records=3)
        convert.convert_cifar10_binary(self.tmp, self.out, 3)  # The parent directory works too.
        for split in ("train", "test"):
            images, labels = cifar10.read_binary_split(binary, split)
            got = _read(self.out, split, image_shape=(32, 32, 3))
            self.assertAllEqual(np.stack([image for image, _ in got]), images)
            self.assertAllEqual([label for _, label in got], labels)

    def test_refuses_to_overwrite(self):
        convert.convert_idx(self.idx_dir, self.out, 4)
        before = {p: os.path.getmtime(p) for p in tfrecord.list_files(os.path.join(self.out, "*"))}
        with self.assertRaisesRegex(FileExistsError, "Refusing to overwrite.*overwrite"):
            convert.convert_idx(self.idx_dir, self.out, 2)
        with self.assertRaisesRegex(FileExistsError, "Refusing"):
            tfrecord.write_shards([b"x"], self.out, "test", 1, bytes)
        self.assertEqual(before, {p: os.path.getmtime(p)
                                  for p in tfrecord.list_files(os.path.join(self.out, "*"))})
        # With overwrite, fewer shards leave no stale shard matching the pattern.
        convert.convert_idx(self.idx_dir, self.out, 2, overwrite=True)
        self.assertLen(os.listdir(self.out), 4)
        self.assertLen(_read(self.out, "train"), _COUNTS["train"])

    def test_write_shards_errors_leave_nothing(self):
        with self.assertRaisesRegex(ValueError, "num_shards=5.*3"):
            tfrecord.write_shards([b"a", b"b", b"c"], self.out, "train", 5, bytes)
        self.assertFalse(os.path.exists(self.out))  # Refused before anything was written.
        # An iterable of unknown length: found short after writing, the temporary files go.
        with self.assertRaisesRegex(ValueError, "num_shards=5.*3"):
            tfrecord.write_shards(iter([b"a", b"b", b"c"]), self.out, "train", 5, bytes)
        self.assertEmpty(os.listdir(self.out))

        def failing():
            yield b"a"
            raise RuntimeError("boom")

        with self.assertRaisesRegex(RuntimeError, "boom"):
            tfrecord.write_shards(failing(), self.out, "train", 1, bytes)
        self.assertEmpty(os.listdir(self.out))
        with self.assertRaisesRegex(ValueError, "num_shards"):
            tfrecord.write_shards([b"a"], self.out, "train", 0, bytes)

    # The generic reader.

    @parameterized.named_parameters(("file_level", 4), ("data_level", 1))
    def test_reader_sharding(self, num_shards):
        convert.convert_idx(self.idx_dir, self.out, num_shards)
        parts = [_read(self.out, "train", input_context=_context(2, i), with_example_ids=True)
                 for i in range(2)]
        ids = [[int(example_id) for _, _, example_id in part] for part in parts]
        self.assertNotEmpty(ids[0])
        self.assertNotEmpty(ids[1])
        self.assertEmpty(set(ids[0]) & set(ids[1]))
        whole = _read(self.out, "train", with_example_ids=True)
        self.assertCountEqual(ids[0] + ids[1], [int(e) for _, _, e in whole])
        self.assertCountEqual([image.tobytes() for part in parts for image, _, _ in part],
                              [image[..., None].tobytes() for image in self.data["train"][0]])

    def test_reader_max_examples(self):
        convert.convert_idx(self.idx_dir, self.out, 3)
        got = _read(self.out, "train", max_examples=5)
        self.assertAllEqual(np.stack([image for image, _ in got]),
                            self.data["train"][0][:5, ..., None])

    def test_reader_errors(self):
        with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
            _read(os.path.join(self.tmp, "missing"), "train")
        os.makedirs(self.out)
        with self.assertRaisesRegex(FileNotFoundError, r"No file matches .*train-\*-of-\*"):
            _read(self.out, "train")
        convert.convert_idx(self.idx_dir, self.out, 2)
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                    r"image/shape must be \[32, 32, 3\].*train-00000-of-00002"):
            _read(self.out, "train", image_shape=(32, 32, 3))

    def test_reader_bad_label(self):
        images = np.zeros((3, 28, 28, 1), np.uint8)
        tfrecord.write_shards(zip(images, [1, 2, 10]), self.out, "train", 1,
                              lambda e: tfrecord.serialize_image_example(*e))
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                    r"0\.\.9.*train-00000-of-00001.*\[record\] \[2\].*\[10\]"):
            _read(self.out, "train")

    def test_count_records_scans_each_file_once_with_a_cache(self):
        paths = convert.convert_idx(self.idx_dir, self.out, 3)["train"]
        cache = os.path.join(self.tmp, "cache", "counts.json")
        self.assertEqual(tfrecord.count_records(paths, cache), (4, 4, 3))
        with mock.patch.object(tfrecord, "check_tfrecord_file",
                               side_effect=AssertionError("scanned again")):
            self.assertEqual(tfrecord.count_records(paths, cache), (4, 4, 3))
        # A changed file is scanned again; a damaged cache is only a cache.
        with tf.io.TFRecordWriter(paths[0]) as writer:
            writer.write(b"only one")
        self.assertEqual(tfrecord.count_records(paths[:1], cache), (1,))
        with open(cache, "w") as f:
            f.write("{not json")
        self.assertEqual(tfrecord.count_records(paths[:1], cache), (1,))
        self.assertEqual(tfrecord.count_records(paths[:1]), (1,))

    def test_reader_truncated_and_corrupt(self):
        convert.convert_idx(self.idx_dir, self.out, 2)
        path = os.path.join(self.out, "train-00001-of-00002")
        with open(path, "rb") as f:
            data = f.read()
        self.assertEqual(tfrecord.check_tfrecord_file(path), _COUNTS["train"] // 2)
        with open(path, "wb") as f:
            f.write(data[:-1])
        with self.assertRaisesRegex(ValueError, "train-00001-of-00002.*truncated.*record 4"):
            _read(self.out, "train")
        with self.assertRaisesRegex(tf.errors.DataLossError, "truncated record"):
            _read(self.out, "train", scan_headers=False)
        payload_flipped = bytearray(data)
        payload_flipped[len(data) - 800] ^= 0x01  # In the payload of the last record.
        with open(path, "wb") as f:
            f.write(bytes(payload_flipped))
        with self.assertRaisesRegex(tf.errors.DataLossError, "corrupted record"):
            _read(self.out, "train")
        length_flipped = bytearray(data)
        length_flipped[0] ^= 0x01  # The first record's length field.
        with open(path, "wb") as f:
            f.write(bytes(length_flipped))
        with self.assertRaisesRegex(ValueError, "train-00001-of-00002.*corrupt.*checksum"):
            _read(self.out, "train", scan_headers=False)

    # The command line.

    def _flags(self, *args):
        flag_values = flags.FlagValues()
        convert.define_flags(flag_values)
        flag_values(["convert", *args])
        return flag_values

    def test_run_in_process(self):
        flag_values = self._flags("--source=idx", "--dataset=mnist", f"--input_dir={self.idx_dir}",
                                  f"--output_dir={self.out}", "--num_shards=2")
        self.assertEqual(convert.run(flag_values), 0)
        self.assertLen(_read(self.out, "test"), _COUNTS["test"])
        self.assertEqual(convert.run(flag_values), 2)  # Refuses to overwrite.
        flag_values.overwrite = True
        self.assertEqual(convert.run(flag_values), 0)
        os.remove(os.path.join(self.idx_dir, "t10k-labels-idx1-ubyte.gz"))
        self.assertEqual(convert.run(self._flags(
            "--source=idx", f"--input_dir={self.idx_dir}", f"--output_dir={self.tmp}/o2",
            "--num_shards=2")), 2)
        self.assertFalse(os.path.exists(f"{self.tmp}/o2") and os.listdir(f"{self.tmp}/o2"))

    @parameterized.named_parameters(
        ("no_source", ["--output_dir=OUT", "--num_shards=2", "--input_dir=IN"], "source"),
        ("bad_source", ["--source=pickle", "--output_dir=OUT", "--num_shards=2",
                        "--input_dir=IN"], "source"),
        ("zero_shards", ["--source=idx", "--output_dir=OUT", "--num_shards=0", "--input_dir=IN"],
         "num_shards"),
        ("no_output_dir", ["--source=idx", "--num_shards=2", "--input_dir=IN"], "output_dir"),
        ("no_input_dir", ["--source=idx", "--dataset=mnist", "--output_dir=OUT",
                          "--num_shards=2"], "input_dir"),
        ("dataset_with_cifar", ["--source=cifar10_binary", "--dataset=mnist",
                                "--output_dir=OUT", "--num_shards=2", "--input_dir=IN"],
         "dataset"),
        ("extra_argument", ["--source=idx", "--output_dir=OUT", "--num_shards=2",
                            "--input_dir=IN", "stray"], "stray"),
        ("missing_input_dir", ["--source=idx", "--output_dir=OUT", "--num_shards=2",
                               "--input_dir=IN/nowhere"], "nowhere.*does not exist"),
    )
    def test_cli_exit_2(self, args, message):
        os.makedirs(self.out)
        args = [a.replace("OUT", self.out).replace("IN", self.idx_dir) for a in args]
        result = _run_cli(*args)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertRegex(result.stderr, message)
        self.assertEmpty(os.listdir(self.out))

    def test_cli_too_many_shards_for_one_split_writes_nothing_and_rerun_works(self):
        # 9 shards: enough train examples (11), too few test examples (7).
        args = ["--source=idx", f"--input_dir={self.idx_dir}", f"--output_dir={self.out}"]
        result = _run_cli(*args, "--num_shards=9")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertRegex(result.stderr, "num_shards=9.*'test' examples \\(7\\).*at most 7")
        self.assertFalse(os.path.exists(self.out) and os.listdir(self.out))
        self.assertEqual(convert.run(self._flags(*args, "--num_shards=7")), 0)
        self.assertLen(_read(self.out, "train"), _COUNTS["train"])

    def test_write_splits_is_all_or_nothing(self):
        def failing_test_split():
            yield b"a"
            raise RuntimeError("boom")

        with self.assertRaisesRegex(RuntimeError, "boom"):
            tfrecord.write_splits({"train": [b"a", b"b"], "test": failing_test_split()},
                                  self.out, 1, bytes)
        self.assertEmpty(os.listdir(self.out))

    def test_cli_refuses_to_overwrite(self):
        paths = tfrecord.write_shards([b"x"], self.out, "test", 1, bytes)
        result = _run_cli("--source=idx", f"--input_dir={self.idx_dir}",
                          f"--output_dir={self.out}", "--num_shards=2")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertRegex(result.stderr, "Refusing to overwrite.*test-00000-of-00001.*--overwrite")
        self.assertEqual(os.listdir(self.out), [os.path.basename(paths[0])])

    def test_cli_corrupt_input(self):
        path = os.path.join(self.idx_dir, "train-images-idx3-ubyte.gz")
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
        result = _run_cli("--source=idx", f"--input_dir={self.idx_dir}",
                          f"--output_dir={self.out}", "--num_shards=2")
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertRegex(result.stderr, "train-images-idx3-ubyte.gz.*(truncated|corrupt)")
        self.assertFalse(os.path.exists(self.out) and os.listdir(self.out))

    def test_run_cifar10_binary(self):
        binary = os.path.join(self.tmp, "cifar")
        _write_cifar_binary(binary)
        with open(os.path.join(binary, "data_batch_4.bin"), "ab") as f:
            f.write(b"\x00" * 10)
        args = ["--source=cifar10_binary", f"--input_dir={binary}", f"--output_dir={self.out}",
                "--num_shards=2"]
        self.assertEqual(convert.run(self._flags(*args)), 2)
        self.assertFalse(os.path.exists(self.out) and os.listdir(self.out))
        _write_cifar_binary(binary)
        self.assertEqual(convert.run(self._flags(*args)), 0)
        self.assertLen(_read(self.out, "train", image_shape=(32, 32, 3)), 10)

    def test_temporary_files_match_no_shard_pattern(self):
        os.makedirs(self.out)
        shard = tfrecord.shard_paths(self.out, "train", 2)[0]
        leftover = tfrecord.temporary_path(shard, "deadbeef")
        with open(leftover, "wb") as f:
            f.write(b"partial")  # what a conversion killed outright leaves
        self.assertEqual(os.path.dirname(leftover), self.out)
        self.assertEmpty(glob.glob(tfrecord.shard_pattern(self.out, "train")))
        self.assertEmpty(tf.io.gfile.glob(tfrecord.shard_pattern(self.out, "train")))
        # A rerun does not call it an existing shard, and its success removes it.
        flag_values = self._flags("--source=idx", f"--input_dir={self.idx_dir}",
                                  f"--output_dir={self.out}", "--num_shards=2")
        self.assertEqual(convert.run(flag_values), 0)
        self.assertFalse(os.path.exists(leftover))
        self.assertCountEqual(os.listdir(self.out), [
            os.path.basename(p) for split in ("train", "test")
            for p in tfrecord.shard_paths(self.out, split, 2)])

    def test_sigterm_during_a_write_removes_the_temporary_files(self):
        previous = signal.getsignal(signal.SIGTERM)
        self.addCleanup(signal.signal, signal.SIGTERM, previous)
        convert.exit_on_sigterm()
        written = []

        def serialize(example):
            written.append(example)
            if len(written) == 3:  # in the middle of the second split's shards
                os.kill(os.getpid(), signal.SIGTERM)
            return example

        with self.assertRaises(SystemExit) as raised:
            tfrecord.write_splits({"train": [b"a", b"b"], "test": [b"c", b"d"]}, self.out, 2,
                                  serialize)
        self.assertEqual(raised.exception.code, 128 + signal.SIGTERM)
        self.assertLen(written, 3)
        self.assertEmpty(os.listdir(self.out))


if __name__ == "__main__":
    tf.test.main()
