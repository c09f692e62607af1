"""Faults around a run's output directory: damaged checkpoints, a full disk, a busy or foreign
directory, `--overwrite`, and `launch.evaluate` measuring the right model.

One tiny run (embedded Fashion-MNIST subset, width 1/16, 6 steps, checkpoints at 2, 4, 6,
measurements every 2 steps) is trained once by `train_lib.train` in process; each test works
on a copy of its directory. `launch.evaluate` runs in a subprocess (launch.common's flags would
clash with launch.demo's in one test process).
"""

import csv
import dataclasses
import errno
import json
import os
import shutil
import tempfile
from unittest import mock

import numpy as np
import tensorflow as tf

from experiments import datasets as data_lib
from experiments import run_dir
from experiments import training as train_lib
from pipelines import idx
from tests.launch_test import run_launcher
from tests.run_files import snapshot

DATA_SPEC = data_lib.DataSpec(dataset="fashion_mnist", data_dir=idx.EMBEDDED_FASHION_MNIST_DIR,
                         max_train_examples=256)
CONFIG = train_lib.TrainConfig(
    experiment="cifar10", model="vgg_mnist_max_pool", dataset="fashion_mnist",
    model_options={"width": 0.0625}, input_shape=(32, 32, 1), num_classes=10, seed=0,
    batch_size=16, train_steps=6,
    learning_rate=0.05, eval_grid_size=3, eval_strength=2.0, measure_every=2,
    num_measure_images=8, checkpoint_every=2, log_every=2, data=dataclasses.asdict(DATA_SPEC))
# launch.evaluate with the measurement settings of CONFIG (its defaults for fashion_mnist).
EVALUATE = ["--dataset=fashion_mnist", f"--data_dir={idx.EMBEDDED_FASHION_MNIST_DIR}",
            "--width=0.0625", "--num_measure_images=8", "--seed=0"]


def steps_logged(output_dir):
    with open(os.path.join(output_dir, "metrics.csv")) as f:
        metrics = [int(row["step"]) for row in csv.DictReader(f)]
    with open(os.path.join(output_dir, "measurements.json")) as f:
        measurements = [m["step"] for m in json.load(f)]
    return metrics, measurements


def failing_save(fail_at):
    """A CheckpointManager.save that meets a full disk at checkpoint `fail_at`."""
    save = tf.train.CheckpointManager.save

    def patched(manager, checkpoint_number=None, **kwargs):
        if checkpoint_number == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device",
                          os.path.join(manager.directory, f"ckpt-{fail_at}.index"))
        return save(manager, checkpoint_number=checkpoint_number, **kwargs)

    return mock.patch.object(tf.train.CheckpointManager, "save", patched)


class LaunchFaultsTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.config = CONFIG
        cls.data, _ = data_lib.build(DATA_SPEC, CONFIG.batch_size, CONFIG.seed,
                                     CONFIG.num_measure_images)
        cls.root = tempfile.mkdtemp()
        cls.trained = os.path.join(cls.root, "trained")
        train_lib.train(cls.config, cls.data, cls.trained)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.work = tempfile.mkdtemp(dir=self.get_temp_dir())

    def copy_of_run(self):
        path = os.path.join(self.work, "run")
        shutil.copytree(self.trained, path)
        return path

    def train(self, output_dir, **kwargs):
        return train_lib.train(self.config, self.data, output_dir, **kwargs)

    def assert_resumes_from(self, output_dir, name):
        with self.assertLogs("absl", "INFO") as logs:
            final = self.train(output_dir)
        self.assertTrue(any(f"Resumed from {os.path.join(output_dir, 'checkpoints', name)} "
                            in line for line in logs.output), logs.output)
        self.assertEqual(final["step"], self.config.train_steps)

    # --- launch.evaluate ---------------------------------------------------------------------

    def evaluate(self, model):
        """(exit status, stderr, evaluation.json or None) of launch.evaluate on `model`."""
        output_dir = tempfile.mkdtemp(dir=self.work)
        result = run_launcher("launch.evaluate", EVALUATE + [f"--output_dir={output_dir}",
                                                            f"--model={model}"])
        path = os.path.join(output_dir, "evaluation.json")
        if not os.path.exists(path):
            return result.returncode, result.stderr, None
        with open(path) as f:
            return result.returncode, result.stderr, json.load(f)

    def test_evaluate_reproduces_the_final_measurement_not_the_initial_one(self):
        with open(os.path.join(self.trained, "measurements.json")) as f:
            measurements = json.load(f)
        init, final = measurements[0], measurements[-1]
        self.assertEqual(final["step"], self.config.train_steps)
        status, stderr, evaluation = self.evaluate(os.path.join(self.trained, "checkpoints"))
        self.assertEqual(status, 0, stderr[-3000:])
        self.assertEqual(evaluation["model"], os.path.join(self.trained, "checkpoints", "ckpt-6"))
        for key in ("sensitivity_cosine", "sensitivity_euclidean"):
            self.assertAllClose(evaluation[key]["sensitivity"], final[key]["sensitivity"],
                                rtol=1e-5, atol=1e-6)
            # Training moved the measurement, so an evaluate that measured the initialization
            # (ignoring --model: same seed, same architecture) would fail the check above.
            self.assertGreater(np.max(np.abs(np.subtract(final[key]["sensitivity"][1:],
                                                         init[key]["sensitivity"][1:]))), 1e-3)
        self.assertAllClose([row["smoothness"] for row in evaluation["smoothness"]],
                            [row["smoothness"] for row in final["smoothness"]], rtol=1e-5)

    def test_evaluate_on_damaged_checkpoint_files_exits_2_naming_them(self):
        checkpoints = os.path.join(self.copy_of_run(), "checkpoints")
        data_file = os.path.join(checkpoints, "ckpt-6.data-00000-of-00001")
        with open(data_file, "r+b") as f:
            f.truncate(os.path.getsize(data_file) // 2)  # read as an IndexError inside TF
        state_file = os.path.join(checkpoints, "checkpoint")
        for named in (data_file, state_file):
            if named == state_file:
                with open(state_file, "w") as f:
                    f.write("garbage")
            status, stderr, evaluation = self.evaluate(checkpoints)
            self.assertEqual(status, 2, stderr[-3000:])
            self.assertIn(named, stderr)
            self.assertNotIn("Traceback", stderr)
            self.assertIsNone(evaluation)
            # ... and says what to do: an earlier checkpoint, or move the state file away.
            self.assertRegex(stderr, "Give an earlier checkpoint instead, e.g. .*ckpt-4"
                             if named == data_file else
                             f"Move it out of {checkpoints}: the newest complete checkpoint")

    # --- Checkpoint faults -------------------------------------------------------------------

    def test_damaged_state_file_is_an_error_and_moving_it_away_resumes(self):
        output_dir = self.copy_of_run()
        state_file = os.path.join(output_dir, "checkpoints", "checkpoint")
        with open(state_file, "w") as f:
            f.write("model_checkpoint_path: \x00 garbage\n")
        before = snapshot(output_dir)
        with self.assertRaisesRegex(train_lib.RunError, f"{state_file} is damaged.*move it out"):
            self.train(output_dir)
        self.assertEqual(snapshot(output_dir), before)
        shutil.move(state_file, self.work)  # as advised
        self.assert_resumes_from(output_dir, "ckpt-6")

    def test_damaged_checkpoint_is_an_error_and_moving_it_away_resumes_from_the_previous(self):
        output_dir = self.copy_of_run()
        checkpoints = os.path.join(output_dir, "checkpoints")
        with open(os.path.join(checkpoints, "ckpt-6.data-00000-of-00001"), "r+b") as f:
            f.truncate(100)
        before = snapshot(output_dir)
        with self.assertRaises(train_lib.RunError) as raised:
            self.train(output_dir)
        self.assertEqual(snapshot(output_dir), before)
        message = str(raised.exception)
        self.assertIn("resumes from ckpt-4", message)
        for name in message.split("Move ")[1].split(" out of ")[0].split(", "):  # as advised
            shutil.move(os.path.join(checkpoints, name), self.work)
        self.assertCountEqual(os.listdir(self.work), ["ckpt-6.data-00000-of-00001",
                                                      "ckpt-6.index", "run"])
        self.assert_resumes_from(output_dir, "ckpt-4")
        self.assertEqual(steps_logged(output_dir), ([2, 4, 6], [0, 2, 4, 6]))

    # --- --overwrite, a full disk, replayed steps --------------------------------------------

    def test_overwrite_keeps_the_old_run_and_a_full_disk_resumes_from_the_last_checkpoint(self):
        output_dir = self.copy_of_run()
        old = snapshot(output_dir)
        del old["run.lock"]  # stays in the directory, for the new run
        # The full disk ends the new run between its step-0 measurement and first checkpoint.
        with failing_save(2), self.assertRaisesRegex(
                train_lib.RunError, f"No space left on the device holding {output_dir} "
                r"\(writing .*ckpt-2.index\).*resumes from step 0"):
            self.train(output_dir, overwrite=True)
        aside = [name for name in os.listdir(self.work) if name.startswith("run.replaced-")]
        self.assertLen(aside, 1)
        self.assertEqual(snapshot(os.path.join(self.work, aside[0])), old)
        self.assertEqual(steps_logged(output_dir), ([2], [0, 2]))
        with failing_save(4), self.assertRaisesRegex(train_lib.RunError, "resumes from ckpt-2"):
            self.train(output_dir)
        self.assertEqual(steps_logged(output_dir), ([2, 4], [0, 2, 4]))  # step 0 listed once
        self.assert_resumes_from(output_dir, "ckpt-2")
        self.assertEqual(steps_logged(output_dir), ([2, 4, 6], [0, 2, 4, 6]))
        self.assertEmpty([name for name in os.listdir(output_dir) if ".tmp-" in name])

    # --- Whose directory ---------------------------------------------------------------------

    def test_second_run_in_the_same_directory_is_refused(self):
        output_dir = self.copy_of_run()
        before = snapshot(output_dir)
        with run_dir.open_run(output_dir, self.config.to_json()):
            with self.assertRaisesRegex(train_lib.RunError, "in use by another run"):
                self.train(output_dir)
        del before["run.lock"]  # the holder's pid
        after = snapshot(output_dir)
        del after["run.lock"]
        self.assertEqual(after, before)

    def test_checkpoints_without_config_are_refused_like_a_foreign_run(self):
        output_dir = self.copy_of_run()
        os.remove(os.path.join(output_dir, "config.json"))
        os.remove(os.path.join(output_dir, "run.lock"))
        before = snapshot(output_dir)
        for overwrite in (False, True):
            with self.assertRaisesRegex(train_lib.RunError, "no config.json"):
                self.train(output_dir, overwrite=overwrite)
        self.assertEqual(snapshot(output_dir), before)


if __name__ == "__main__":
    tf.test.main()
