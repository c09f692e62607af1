"""Tests of experiments.run_dir: atomic files, step-keyed logs, taking a directory, checkpoint
state."""

import errno
import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import parameterized
import tensorflow as tf

from deform_tf import model_io
from experiments import run_dir
from tests.run_files import snapshot

CONFIG = {"experiment": "cifar10", "seed": 0, "batch_size": 16, "input_shape": [32, 32, 1]}


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


class AtomicWriteTest(tf.test.TestCase):

    def test_write_replaces_the_file(self):
        path = os.path.join(self.get_temp_dir(), "replace", "final.json")
        os.makedirs(os.path.dirname(path))
        run_dir.write_json(path, {"step": 1})
        run_dir.write_json(path, {"step": 2})
        with open(path) as f:
            self.assertEqual(json.load(f), {"step": 2})
        self.assertEqual(os.listdir(os.path.dirname(path)), ["final.json"])

    def test_failed_write_keeps_the_old_file_and_no_temporary_file(self):
        directory = os.path.join(self.get_temp_dir(), "full")
        path = os.path.join(directory, "measurements.json")
        os.makedirs(directory)
        run_dir.write_json(path, [{"step": 0}])
        full = OSError(errno.ENOSPC, "No space left on device", path)
        with mock.patch.object(tf.io.gfile, "rename", side_effect=full):
            with self.assertRaises(OSError):
                run_dir.write_json(path, [{"step": 0}, {"step": 2}])
        with open(path) as f:
            self.assertEqual(json.load(f), [{"step": 0}])
        self.assertEqual(os.listdir(directory), ["measurements.json"])


class StepLogTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(("metrics.csv", run_dir.METRICS_FIELDS), ("measurements.json", None))
    def test_a_replayed_step_replaces_its_row(self, name, fields):
        path = os.path.join(self.get_temp_dir(), name)
        log = run_dir.StepLog(path, fields)
        row = dict.fromkeys(fields or ("step", "loss"), 0.5)
        for step in (0, 2, 4):
            log.put(dict(row, step=step))
        log.truncate(2)  # resumed from the checkpoint at step 2
        log.put(dict(row, step=2, loss=0.25))  # replayed
        log.put(dict(row, step=4))
        reread = run_dir.StepLog(path, fields)
        self.assertEqual([r["step"] for r in reread.rows], [0, 2, 4])
        self.assertEqual(float(reread.rows[1]["loss"]), 0.25)

    def test_damaged_file_is_an_error_naming_it(self):
        path = os.path.join(self.get_temp_dir(), "damaged", "measurements.json")
        write(path, '[{"step": 0}, {"st')
        with self.assertRaisesRegex(run_dir.RunError, "measurements.json is damaged"):
            run_dir.StepLog(path)


class OpenRunTest(parameterized.TestCase, tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.path = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "run")

    def open(self, config=None, **kwargs):
        run = run_dir.open_run(self.path, config or CONFIG, **kwargs)
        run.close()
        return run

    def test_new_directory_gets_config_and_flags_then_is_resumed(self):
        self.assertFalse(self.open(flags_text="--seed=0\n").resuming)
        with open(os.path.join(self.path, "config.json")) as f:
            self.assertEqual(json.load(f), CONFIG)
        with open(os.path.join(self.path, "flags.txt")) as f:
            self.assertEqual(f.read(), "--seed=0\n")
        self.assertTrue(self.open().resuming)
        # Without checkpoints there is nothing to lose: --noresume starts the same run again.
        self.assertTrue(self.open(resume=False).resuming)

    def test_same_run_with_checkpoints_needs_resume(self):
        self.open()
        write(os.path.join(self.path, "checkpoints", "ckpt-2.index"), b"i")
        write(os.path.join(self.path, "checkpoints", "ckpt-2.data-00000-of-00001"), b"d")
        with self.assertRaisesRegex(run_dir.RunError, "`resume=True`"):
            self.open(resume=False)

    def test_finished_run_without_checkpoints_is_refused_unless_it_only_measured_init(self):
        for steps, refused in ((6, True), (0, False)):
            self.path = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "run")
            config = dict(CONFIG, train_steps=steps)
            self.open(config)
            write(os.path.join(self.path, "final.json"), "{}")
            if refused:
                with self.assertRaisesRegex(run_dir.RunError, "finished.*no checkpoint"):
                    self.open(config)
            else:
                self.assertTrue(self.open(config).resuming)

    def test_another_runs_config_is_refused_naming_the_difference(self):
        self.open()
        before = snapshot(self.path)
        with self.assertRaisesRegex(run_dir.RunError, r"another run's config.json \(seed: 0 "
                                    r"there, 1 here\)"):
            self.open(dict(CONFIG, seed=1))
        self.assertEqual(snapshot(self.path), before)

    @parameterized.parameters(b"", b'{"experiment": "cif')
    def test_damaged_config_is_refused_and_overwrite_moves_it_aside(self, damaged):
        write(os.path.join(self.path, "config.json"), damaged)
        with self.assertRaisesRegex(run_dir.RunError, "config.json is not valid JSON.*`overwrite=True`"):
            self.open()
        self.assertFalse(self.open(overwrite=True).resuming)
        aside = [p for p in os.listdir(os.path.dirname(self.path)) if ".replaced-" in p]
        self.assertLen(aside, 1)
        with open(os.path.join(os.path.dirname(self.path), aside[0], "config.json"), "rb") as f:
            self.assertEqual(f.read(), damaged)

    def test_files_without_config_are_refused_even_with_overwrite(self):
        write(os.path.join(self.path, "checkpoints", "ckpt-2.index"), b"x")
        for overwrite in (False, True):
            with self.assertRaisesRegex(run_dir.RunError, "no config.json"):
                self.open(overwrite=overwrite)
        self.assertEqual(snapshot(self.path), {os.path.join("checkpoints", "ckpt-2.index"): b"x"})

    def test_leftover_lock_and_temporary_files_do_not_block_a_new_run(self):
        write(os.path.join(self.path, "run.lock"), "pid 1 on elsewhere\n")
        write(os.path.join(self.path, ".config.json.tmp-0123abcd"), "{")
        self.assertFalse(self.open().resuming)

    def test_overwrite_keeps_every_file_of_the_old_run(self):
        self.open(flags_text="--seed=0\n")
        for name, data in (("metrics.csv", "step\n2\n"), ("checkpoints/ckpt-2.index", b"\x01"),
                           ("summaries/events.out", b"\x02"), ("final.json", "{}")):
            write(os.path.join(self.path, name), data)
        old = snapshot(self.path)
        del old["run.lock"]  # stays: it is the lock of whichever run uses the directory
        self.open(dict(CONFIG, seed=1), overwrite=True)
        parent = os.path.dirname(self.path)
        aside = [p for p in os.listdir(parent) if p.startswith("run.replaced-")]
        self.assertLen(aside, 1)
        self.assertEqual(snapshot(os.path.join(parent, aside[0])), old)
        self.assertCountEqual(os.listdir(self.path), ["config.json", "run.lock"])

    def test_second_run_in_the_directory_is_refused_until_the_first_ends(self):
        first = run_dir.open_run(self.path, CONFIG)
        try:
            with self.assertRaisesRegex(run_dir.RunError,
                                        f"in use by another run \\(pid {os.getpid()} on"):
                run_dir.open_run(self.path, CONFIG)
        finally:
            first.close()
        self.assertTrue(self.open().resuming)


class CheckpointStateTest(parameterized.TestCase, tf.test.TestCase):
    """A run's checkpoints/ directory with ckpt-2, ckpt-4, ckpt-6 of a small variable."""

    def setUp(self):
        super().setUp()
        self.directory = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "checkpoints")
        self.variable = tf.Variable(0.0)
        checkpoint = tf.train.Checkpoint(v=self.variable)
        manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=3)
        for step in (2, 4, 6):
            self.variable.assign(float(step))
            manager.save(checkpoint_number=step)
        self.state = os.path.join(self.directory, "checkpoint")
        self.away = tempfile.mkdtemp(dir=self.get_temp_dir())

    def move_away(self, *names):
        for name in names:
            shutil.move(os.path.join(self.directory, name), self.away)

    def restored_value(self, prefix):
        variable = tf.Variable(-1.0)
        tf.train.Checkpoint(v=variable).restore(prefix).assert_existing_objects_matched()
        return float(variable.numpy())

    def test_intact_state_resumes_from_the_latest(self):
        prefix = run_dir.checkpoint_to_resume(self.directory)
        self.assertEqual(os.path.basename(prefix), "ckpt-6")

    def test_leftovers_of_a_killed_save_are_removed_on_resume(self):
        before = sorted(os.listdir(self.directory))
        os.makedirs(os.path.join(self.directory, "ckpt-8_temp"))
        with open(os.path.join(self.directory, "ckpt-8_temp", "part-00000-of-00001"), "w") as f:
            f.write("partial")
        with open(os.path.join(self.directory, "checkpoint.tmp9f3c2a7d01"), "w") as f:
            f.write("partial state")
        with open(os.path.join(self.directory, "notes.txt"), "w") as f:
            f.write("a user's file")
        prefix = run_dir.checkpoint_to_resume(self.directory)
        self.assertEqual(os.path.basename(prefix), "ckpt-6")
        self.assertEqual(sorted(os.listdir(self.directory)), sorted(before + ["notes.txt"]))

    def test_no_checkpoint_starts_from_step_0(self):
        self.assertIsNone(run_dir.checkpoint_to_resume(os.path.join(self.away, "none")))

    @parameterized.parameters(b"garbage text", b"\xff\xfe\x00binary", b"")
    def test_damaged_state_file_is_an_error_and_moving_it_away_works(self, damaged):
        write(self.state, damaged)
        with self.assertRaisesRegex(run_dir.RunError, "checkpoint state file .*checkpoints/"
                                    "checkpoint is damaged.*resumes from ckpt-6"):
            run_dir.checkpoint_to_resume(self.directory)
        self.move_away("checkpoint")  # as the message advises
        prefix = run_dir.checkpoint_to_resume(self.directory)
        self.assertEqual(self.restored_value(prefix), 6.0)
        # The rebuilt state file is what CheckpointManager reads.
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=self.variable),
                                             self.directory, max_to_keep=3)
        self.assertEqual(manager.latest_checkpoint, prefix)

    def test_moving_the_latest_checkpoint_away_resumes_from_the_previous(self):
        self.move_away("ckpt-6.index", "ckpt-6.data-00000-of-00001")
        prefix = run_dir.checkpoint_to_resume(self.directory)
        self.assertEqual(self.restored_value(prefix), 4.0)
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=self.variable),
                                             self.directory, max_to_keep=3)
        self.assertEqual(manager.latest_checkpoint, prefix)
        self.assertEqual(os.path.basename(manager.save(checkpoint_number=6)), "ckpt-6")

    def test_damaged_checkpoint_message_names_its_files_and_its_advice_works(self):
        prefix = os.path.join(self.directory, "ckpt-6")
        error = run_dir.damaged_checkpoint_error(prefix, IndexError("Read less bytes"))
        message = str(error)
        self.assertIn("IndexError: Read less bytes", message)
        moved = message.split("Move ")[1].split(" out of ")[0].split(", ")
        self.assertCountEqual(moved, ["ckpt-6.data-00000-of-00001", "ckpt-6.index"])
        self.assertIn("resumes from ckpt-4", message)
        self.move_away(*moved)
        self.assertEqual(self.restored_value(run_dir.checkpoint_to_resume(self.directory)), 4.0)

    def test_only_checkpoint_damaged_advises_overwrite(self):
        self.move_away("ckpt-2.index", "ckpt-4.index")
        error = run_dir.damaged_checkpoint_error(os.path.join(self.directory, "ckpt-6"),
                                                 ValueError("bad"))
        self.assertIn("only checkpoint: pass `overwrite=True`", str(error))

    def test_state_naming_only_missing_checkpoints_is_an_error(self):
        self.move_away(*[n for n in os.listdir(self.directory) if n.startswith("ckpt-")])
        with self.assertRaisesRegex(run_dir.RunError, "no complete checkpoint"):
            run_dir.checkpoint_to_resume(self.directory)

    def test_checkpoint_missing_a_data_shard_is_incomplete(self):
        write(os.path.join(self.directory, "ckpt-8.index"), b"x")
        write(os.path.join(self.directory, "ckpt-8.data-00001-of-00002"), b"x")
        self.assertEqual([os.path.basename(p) for p in model_io.complete_checkpoints(
            self.directory)], ["ckpt-2", "ckpt-4", "ckpt-6"])


class DiskFullTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.parameters(
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (tf.errors.ResourceExhaustedError(None, None, "/r/x; No space left on device"), True),
        (tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"), False),
        (OSError(errno.EACCES, "Permission denied"), False),
    )
    def test_is_disk_full(self, error, expected):
        self.assertEqual(run_dir.is_disk_full(error), expected)

    def test_full_disk_is_one_error_naming_the_path_and_the_resume_point(self):
        output_dir = tempfile.mkdtemp(dir=self.get_temp_dir())
        path = os.path.join(output_dir, "checkpoints", "ckpt-4_temp", "part-00000")
        with self.assertRaises(run_dir.RunError) as raised:
            with run_dir.disk_full_is_run_error(output_dir):
                raise tf.errors.ResourceExhaustedError(
                    None, None, f"{{{{function_node x}}}} {path}; No space left on device "
                    "[Op:SaveV2]")
        self.assertEqual(str(raised.exception), (
            f"No space left on the device holding {output_dir} (writing {path}). Free some "
            "space and run the same command again: it resumes from step 0 (no checkpoint was "
            "written yet)."))

    def test_full_disk_without_a_path_in_the_message_does_not_call_the_message_a_file(self):
        output_dir = tempfile.mkdtemp(dir=self.get_temp_dir())
        with self.assertRaises(run_dir.RunError) as raised:
            with run_dir.disk_full_is_run_error(output_dir):
                raise tf.errors.ResourceExhaustedError(
                    None, None, "Failed to flush the summary writer: No space left on device")
        message = str(raised.exception)
        self.assertNotIn("(writing Failed", message)
        self.assertIn("(while writing: Failed to flush the summary writer: No space left on "
                      "device)", message)

    def test_other_errors_pass_through(self):
        with self.assertRaises(PermissionError):
            with run_dir.disk_full_is_run_error(tempfile.mkdtemp(dir=self.get_temp_dir())):
                raise PermissionError(errno.EACCES, "Permission denied")


if __name__ == "__main__":
    tf.test.main()
