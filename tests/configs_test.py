"""launch/configs/*.cfg: generated from the grid, and every one accepted by its launcher.

A flagfile is accepted when its launcher parses it (every flag defined by that launcher, every
value valid), turns it into the settings of the grid run it stands for, and then stops only
because the data is absent (--data_dir points at an empty directory), writing nothing.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import parameterized
import tensorflow as tf

from experiments.study import grid as grid_lib
import launch
from tests.launch_test import REPO

FLAGFILES = {f.name: f for f in grid_lib.flagfiles()}


def committed(name):
    with open(os.path.join(launch.CONFIGS_DIR, name)) as f:
        return f.read()


class GeneratedTest(tf.test.TestCase):

    def test_committed_flagfiles_are_the_generated_ones(self):
        on_disk = sorted(n for n in os.listdir(launch.CONFIGS_DIR) if n.endswith(".cfg"))
        self.assertEqual(on_disk, sorted(FLAGFILES))
        for name, flagfile in FLAGFILES.items():
            self.assertEqual(committed(name), flagfile.text(),
                             f"{name} differs from the grid: run python -m launch.write_configs")

    def test_write_flagfiles_writes_each_file_once(self):
        directory = os.path.join(self.get_temp_dir(), "configs")
        self.assertCountEqual(grid_lib.write_flagfiles(directory), FLAGFILES)
        self.assertEqual(grid_lib.write_flagfiles(directory), [])  # up to date
        with open(os.path.join(directory, "cifar10_max_pool.cfg")) as f:
            self.assertEqual(f.read(), committed("cifar10_max_pool.cfg"))

    def test_write_configs_reports_a_file_the_grid_does_not_generate(self):
        directory = os.path.join(self.get_temp_dir(), "stale")
        os.makedirs(directory)
        with open(os.path.join(directory, "old.cfg"), "w") as f:
            f.write("--width=2\n")
        done = subprocess.run([sys.executable, "-m", "launch.write_configs",
                               f"--configs_dir={directory}"], cwd=REPO, capture_output=True,
                              text=True, timeout=300,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        self.assertEqual(done.returncode, 2, done.stderr[-2000:])
        self.assertIn("old.cfg", done.stderr.splitlines()[-1])
        self.assertCountEqual(os.listdir(directory), [*FLAGFILES, "old.cfg"])  # nothing removed

    def test_paper_and_flagfile_cadences_agree(self):
        # The drift that generation prevents: the paper grid's synthetic runs and their files.
        run = FLAGFILES["synthetic_c3.cfg"].run
        self.assertIn(f"--measure_every={run.settings['measure_every']}",
                      committed("synthetic_c3.cfg").splitlines())
        self.assertEqual(run.settings["train_steps"], grid_lib.PROFILES["paper"].synthetic_steps)


class AcceptedTest(parameterized.TestCase, tf.test.TestCase):
    """Each launcher, in one subprocess (`tests.flagfile_check`), fed each committed file."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.empty = tempfile.mkdtemp(prefix="empty_data")
        cls.outputs = os.path.join(tempfile.mkdtemp(prefix="flagfile_runs"), "runs")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        done = subprocess.run([sys.executable, "-m", "tests.flagfile_check", cls.empty,
                               cls.outputs], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=600)
        if done.returncode:
            raise AssertionError(f"tests.flagfile_check failed:\n{done.stderr[-3000:]}")
        cls.results = json.loads(done.stdout.strip().splitlines()[-1])

    def test_every_flagfile_was_checked(self):
        self.assertCountEqual(self.results, FLAGFILES)

    @parameterized.parameters(sorted(FLAGFILES))
    def test_launcher_stops_only_on_the_absent_data(self, name):
        result = self.results[name]
        self.assertEqual(result["foreign_flags"], [], f"{name}: flags its launcher lacks")
        self.assertEqual(result["stopped"], "LaunchError", f"{name}: {result['message']}")
        self.assertEqual(result["mismatched_settings"], {}, f"{name}: [launcher, grid]")
        self.assertIn(self.empty, result["message"])  # it stopped on the data directory
        self.assertFalse(result["wrote_output_dir"])


if __name__ == "__main__":
    tf.test.main()
