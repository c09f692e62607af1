"""Every launcher and every committed flagfile on data in the real on-disk formats.

The data, written once by the test: ImageNet TFRecord shards in the standard layout (JPEG
`image/encoded`, 1-based `image/class/label`, `train-0000k-of-00004` and
`validation-0000k-of-00002`), the CIFAR-10 binary release (`cifar-10-batches-bin/
data_batch_{1..5}.bin`, `test_batch.bin`) and the same release converted to TFRecord shards by
`launch.convert`. Launcher runs are tiny (width 1/32, 32 px ImageNet images, a few steps,
flags after the flagfile); the in-process flagfile check keeps each flagfile's training length,
so epoch-based flagfiles get their step counts from the data.
"""

import glob
import json
import math
import os
import shutil
import struct
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from bench import pipelines as bench_pipelines
from launch import convert
from experiments import datasets as data_lib
from experiments import training as train_lib
from pipelines import cifar10
from pipelines import idx
from pipelines import imagenet
from pipelines import order
from pipelines import tfrecord
from tests.launch_test import REPO
from tests.launch_test import run_launcher

CONFIGS = sorted(glob.glob(os.path.join(REPO, "launch", "configs", "*.cfg")))
LAUNCHERS = {"cifar10": "launch.cifar10", "imagenet": "launch.imagenet",
             "synthetic": "launch.synthetic_mnist"}
IMAGENET_TRAIN, IMAGENET_SHARDS = 24, 4
CIFAR_RECORDS_PER_FILE = 8  # 40 training images, 8 test images
# Tiny models and runs; flags given after the flagfile override it.
TINY = ["--width=0.03125", "--num_measure_images=4", "--log_every=2"]
TINY_IMAGENET = TINY + ["--image_size=32", "--eval_grid_size=3", "--eval_strength=2"]


def _launcher_of(config_path):
    return LAUNCHERS[os.path.basename(config_path).split("_")[0]]


def _checkpoint_tensors(prefix):
    """{name: array} of every variable in a checkpoint: model weights, optimizer state, step."""
    reader = tf.train.load_checkpoint(prefix)
    skipped = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE")
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
            if n not in skipped}


def _record_payload_offset(path, record_index):
    """Byte offset of the middle of record `record_index`'s payload in a TFRecord file."""
    offset = 0
    with open(path, "rb") as f:
        for _ in range(record_index + 1):
            f.seek(offset)
            length = struct.unpack("<Q", f.read(8))[0]
            start, offset = offset + 12, offset + 12 + length + 4
    return start + length // 2


class RealDataLaunchTest(parameterized.TestCase, tf.test.TestCase):

    test_session = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        root = os.path.join(tf.compat.v1.test.get_temp_dir(), "real_data")
        cls.imagenet_dir = os.path.join(root, "imagenet")
        os.makedirs(cls.imagenet_dir)
        bench_pipelines.write_fake_imagenet(cls.imagenet_dir, IMAGENET_TRAIN, (40, 48),
                                            IMAGENET_SHARDS)
        bench_pipelines.write_fake_imagenet(cls.imagenet_dir, 8, (44, 36), 2, seed=1,
                                            split="validation")
        cls.cifar_dir = bench_pipelines.write_fake_cifar10(os.path.join(root, "cifar10"),
                                                           CIFAR_RECORDS_PER_FILE)
        cls.cifar_tfrecord_dir = os.path.join(root, "cifar10_tfrecord")
        convert.convert_cifar10_binary(cls.cifar_dir, cls.cifar_tfrecord_dir, num_shards=2)
        cls.env = {"XDG_CACHE_HOME": os.path.join(root, "cache")}
        cls.root = root

    def _run(self, module, args):
        # A generous timeout: these runs build the 13-conv ImageNet net on a shared 2-core machine.
        return run_launcher(module, args, env=self.env, timeout=900)

    def _assert_resume_reproduces_the_last_checkpoint(self, module, args, out, middle, last):
        """Rewinds `out` to checkpoint `middle`, reruns, and compares checkpoint `last`."""
        checkpoints = os.path.join(out, "checkpoints")
        expected = _checkpoint_tensors(os.path.join(checkpoints, f"ckpt-{last}"))
        for path in glob.glob(os.path.join(checkpoints, f"ckpt-{last}.*")):
            os.remove(path)
        os.remove(os.path.join(out, "final.json"))
        tf.compat.v1.train.update_checkpoint_state(
            checkpoints, os.path.join(checkpoints, f"ckpt-{middle}"),
            [os.path.join(checkpoints, f"ckpt-{middle}")])
        result = self._run(module, args)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn(f"ckpt-{middle} at step {middle}", result.stderr)
        got = _checkpoint_tensors(os.path.join(checkpoints, f"ckpt-{last}"))
        self.assertEqual(sorted(got), sorted(expected))
        for name in expected:
            self.assertAllEqual(got[name], expected[name], msg=name)

    def _assert_checkpoint_holds_model_optimizer_and_step_only(self, prefix):
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
        dtypes = reader.get_variable_to_dtype_map()
        graph = "_CHECKPOINTABLE_OBJECT_GRAPH"  # the object graph proto, also in the data file
        extra = [n for n in shapes
                 if not n.startswith(("model/", "optimizer/", "step/", "save_counter/", graph))]
        self.assertEmpty(extra)
        variable_bytes = sum(int(np.prod(shapes[n])) * dtypes[n].size for n in shapes
                             if n != graph)
        data_bytes = sum(os.path.getsize(p) for p in glob.glob(prefix + ".data-*"))
        self.assertBetween(data_bytes - variable_bytes - len(reader.get_tensor(graph)), 0, 256)

    def test_imagenet_flagfile_trains_and_resumes_bit_exactly(self):
        out = os.path.join(self.root, "runs", "imagenet")
        args = [f"--flagfile={REPO}/launch/configs/imagenet_strided_relu.cfg",
                f"--data_dir={self.imagenet_dir}", f"--output_dir={out}"] + TINY_IMAGENET + [
                    "--batch_size=4", "--train_steps=8", "--checkpoint_every=4",
                    "--deterministic"]
        result = self._run("launch.imagenet", args)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        with open(os.path.join(out, "config.json")) as f:
            config = json.load(f)
        self.assertEqual(config["data"]["train_examples"], IMAGENET_TRAIN)
        self.assertEqual(config["input_shape"], [32, 32, 3])
        with open(os.path.join(out, "final.json")) as f:
            self.assertEqual(json.load(f)["num_examples"], 8)
        self._assert_checkpoint_holds_model_optimizer_and_step_only(
            os.path.join(out, "checkpoints", "ckpt-8"))
        # 6 steps per epoch: the resumed half crosses an epoch boundary.
        self._assert_resume_reproduces_the_last_checkpoint("launch.imagenet", args, out, 4, 8)
        result = self._run("launch.evaluate", [
            f"--model={out}/checkpoints", "--dataset=imagenet", f"--data_dir={self.imagenet_dir}",
            f"--output_dir={out}/eval", "--num_measure_images=4"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        with open(os.path.join(out, "eval", "evaluation.json")) as f:
            self.assertLen(json.load(f)["sensitivity_cosine"]["sensitivity"], 19)

    def test_cifar10_flagfile_trains_and_resumes_bit_exactly(self):
        out = os.path.join(self.root, "runs", "cifar10")
        args = [f"--flagfile={REPO}/launch/configs/cifar10_max_pool.cfg",
                f"--data_dir={self.cifar_dir}", f"--output_dir={out}"] + TINY + [
                    "--batch_size=8", "--train_steps=8", "--checkpoint_every=4",
                    "--train_strength=1.5", "--deterministic"]
        result = self._run("launch.cifar10", args)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self._assert_checkpoint_holds_model_optimizer_and_step_only(
            os.path.join(out, "checkpoints", "ckpt-8"))
        # 5 steps per epoch: the resumed half crosses an epoch boundary.
        self._assert_resume_reproduces_the_last_checkpoint("launch.cifar10", args, out, 4, 8)

    def test_synthetic_flagfile_runs(self):
        out = os.path.join(self.root, "runs", "synthetic")
        result = self._run("launch.synthetic_mnist", [
            f"--flagfile={REPO}/launch/configs/synthetic_c3.cfg",
            f"--data_dir={idx.EMBEDDED_FASHION_MNIST_DIR}", f"--output_dir={out}"] + TINY + [
                "--batch_size=8", "--train_steps=2"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertTrue(os.path.exists(os.path.join(out, "checkpoints", "ckpt-2.index")))

    def test_corrupt_imagenet_record_met_in_training_is_named_and_checkpoints_kept(self):
        # 20 shards of one image: groups of 16 and 4 shards in each epoch's shard order, so the
        # first record of the second group, stream position 16, is read after step 4 (batch 4).
        data_dir = os.path.join(self.root, "imagenet_corrupt")
        os.makedirs(data_dir)
        bench_pipelines.write_fake_imagenet(data_dir, 20, (40, 48), 20)
        bench_pipelines.write_fake_imagenet(data_dir, 4, (40, 48), 1, split="validation")
        self.assertEqual(data_lib.IMAGENET_CYCLE_LENGTH, 16)
        record_order = order.RecordOrder(
            imagenet.list_shards(data_dir, "train"), seed=0,
            cycle_length=data_lib.IMAGENET_CYCLE_LENGTH, window=data_lib.IMAGENET_WINDOW)
        _, _, filename, record_index, _ = next(iter(record_order.dataset(16)))
        path, record_index = filename.numpy().decode(), int(record_index)
        offset = _record_payload_offset(path, record_index)
        with open(path, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ 0xFF]))
        out = os.path.join(self.root, "runs", "imagenet_corrupt")
        result = self._run("launch.imagenet", [
            f"--flagfile={REPO}/launch/configs/imagenet_max_pool.cfg",
            f"--data_dir={data_dir}", f"--output_dir={out}"] + TINY_IMAGENET + [
                "--batch_size=4", "--train_steps=8", "--checkpoint_every=2"])
        self.assertEqual(result.returncode, 2, result.stderr[-3000:])
        self.assertIn(f"record {record_index} of {path}", result.stderr)
        self.assertIn("corrupted record", result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        for step in (2, 4):
            self.assertTrue(os.path.exists(os.path.join(out, "checkpoints", f"ckpt-{step}.index")))
        self.assertFalse(os.path.exists(os.path.join(out, "final.json")))

    def test_corrupt_validation_record_met_in_evaluation_is_named(self):
        data_dir = os.path.join(self.root, "imagenet_corrupt_validation")
        shutil.copytree(self.imagenet_dir, data_dir)
        # The last record of the second validation shard: read after the 4 measured images.
        path = os.path.join(data_dir, "validation-00001-of-00002")
        offset = _record_payload_offset(path, 3)
        with open(path, "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ 0xFF]))
        spec = data_lib.DataSpec("imagenet", data_dir, image_size=32)
        with mock.patch.object(data_lib, "count_cache_path", lambda: None):
            data, _ = data_lib.build(spec, batch_size=4, seed=0, num_measure_images=4)
        with self.assertRaises(train_lib.DATA_ERRORS) as cm:
            list(data.evaluate())
        message = data.describe_error(cm.exception, "eval", 0)
        self.assertIn(f"record 3 of {path}", message)

    def test_bad_cifar10_label_byte_exits_2_before_writing_anything(self):
        data_dir = os.path.join(self.root, "cifar10_bad_label")
        shutil.copytree(self.cifar_dir, data_dir)
        path = os.path.join(data_dir, cifar10.BINARY_DIR_NAME, "data_batch_2.bin")
        with open(path, "r+b") as f:
            f.seek(3 * cifar10.RECORD_BYTES)
            f.write(bytes([10]))
        out = os.path.join(self.root, "runs", "cifar10_bad_label")
        result = self._run("launch.cifar10", [
            f"--flagfile={REPO}/launch/configs/cifar10_subsample.cfg",
            f"--data_dir={data_dir}", f"--output_dir={out}"] + TINY + ["--train_steps=2"])
        self.assertEqual(result.returncode, 2, result.stderr[-3000:])
        self.assertRegex(result.stderr, "data_batch_2.bin.*record 3 \\(value 10\\)")
        self.assertNotIn("Traceback", result.stderr)
        self.assertFalse(os.path.exists(out))

    def test_error_named_in_graph_is_reported_as_it_is(self):
        path = os.path.join(self.root, "some-shard")

        def fail(x):
            check = tfrecord.assert_in_file(x < 0, "label out of range", path,
                                            tf.constant(3, tf.int64), x)
            with tf.control_dependencies([check]):
                return tf.identity(x)

        with self.assertRaises(tf.errors.InvalidArgumentError) as cm:
            list(tf.data.Dataset.range(1).map(fail).as_numpy_iterator())
        message = data_lib.describe_data_error(cm.exception, [], find_bad_record=None)
        self.assertRegex(message, r"label out of range\] \[file\] \[.*some-shard\] "
                         r"\[record\] \[3\]")

    @classmethod
    def _flagfile_runs(cls):
        """{case name: what tests.flagfile_runs built}, computed once (one subprocess)."""
        if not hasattr(cls, "_built"):
            data_dirs = {"imagenet": cls.imagenet_dir, "cifar10": cls.cifar_dir,
                         "fashion_mnist": idx.EMBEDDED_FASHION_MNIST_DIR,
                         "synthetic": idx.EMBEDDED_FASHION_MNIST_DIR}
            small = ["--batch_size=8", "--num_measure_images=4"]
            cases = []
            for path in CONFIGS:
                dirs = dict(data_dirs)
                if "random_labels" in path:  # these read the TFRecord copy
                    dirs["cifar10"] = cls.cifar_tfrecord_dir
                extra = ["--image_size=32"] if _launcher_of(path) == "launch.imagenet" else []
                cases.append(dict(name=os.path.basename(path), launcher=_launcher_of(path),
                                  args=[f"--flagfile={path}"] + small + extra, data_dirs=dirs))
            # The launcher's defaults (the synthetic flagfiles give --train_steps, which may not
            # be combined with --epochs).
            synthetic = dict(launcher="launch.synthetic_mnist", data_dirs=data_dirs, args=[
                "--synthetic_strength=1", "--epochs=3", "--warmup_epochs=1"] + small)
            cases.append(dict(synthetic, name="epochs_with_examples_per_epoch",
                              args=synthetic["args"] + ["--examples_per_epoch=64"]))
            cases.append(dict(synthetic, name="epochs_of_an_infinite_stream"))
            result = run_launcher("tests.flagfile_runs", [json.dumps(cases)], env=cls.env)
            if result.returncode:
                raise AssertionError(result.stderr[-3000:])
            cls._built = {}
            for line in result.stdout.splitlines():
                built = json.loads(line)
                cls._built[built.pop("name")] = built
        return cls._built

    @parameterized.named_parameters((os.path.basename(c)[:-len(".cfg")], c) for c in CONFIGS)
    def test_flagfile_builds_its_run_and_first_batch(self, config_path):
        built = self._flagfile_runs()[os.path.basename(config_path)]
        if built["steps_setting"] is not None:  # the flagfile's or the launcher's --train_steps
            self.assertEqual(built["train_steps"], built["steps_setting"])
        else:  # epoch-based: the launcher's epochs of the examples counted in the data
            examples = {"launch.cifar10": 5 * CIFAR_RECORDS_PER_FILE,
                        "launch.imagenet": IMAGENET_TRAIN}[_launcher_of(config_path)]
            self.assertEqual(built["train_examples"], examples)
            self.assertGreaterEqual(built["epochs"], 1)
            self.assertEqual(built["train_steps"], math.ceil(built["epochs"] * examples / 8))
        self.assertEqual(built["batch_shape"], [8] + built["input_shape"])
        self.assertEqual(built["label_shape"], [8])

    def test_examples_per_epoch_sets_the_epoch_length(self):
        built = self._flagfile_runs()
        # 3 epochs x 64 examples / batch 8; warmup 1 epoch.
        self.assertEqual((built["epochs_with_examples_per_epoch"]["train_steps"],
                          built["epochs_with_examples_per_epoch"]["warmup_steps"]), (24, 8))
        self.assertIn("--examples_per_epoch", built["epochs_of_an_infinite_stream"]["error"])


if __name__ == "__main__":
    tf.test.main()
