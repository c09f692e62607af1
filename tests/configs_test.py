"""launch/configs/*.cfg: generated from the grid, and every one accepted by its launcher.

A flagfile is accepted when its launcher parses it (every flag defined by that launcher, every
value valid), turns it into the settings of the grid run it stands for, and then stops only
because the data is absent (--data_dir points at an empty directory), writing nothing.
"""

import os
import re
import tempfile

from absl import flags
from absl.testing import parameterized
import tensorflow as tf

from launch import common
from launch import experiments
from launch import write_configs
# The launchers (importing them defines their flags).
from launch import cifar10
from launch import imagenet
from launch import synthetic_mnist

FLAGS = flags.FLAGS
LAUNCHERS = {m.__name__: m for m in (cifar10, imagenet, synthetic_mnist)}
FLAGFILES = {f.name: f for f in experiments.flagfiles()}


def committed(name):
    with open(os.path.join(experiments.CONFIGS_DIR, name)) as f:
        return f.read()


def flag_names(text):
    """Flag names set by a flagfile's lines (`--no<name>` counts as <name>)."""
    names = []
    for line in text.splitlines():
        if line.startswith("--"):
            name = re.match(r"--([^=]+)", line).group(1)
            if name not in FLAGS and name.startswith("no"):
                name = name[2:]
            names.append(name)
    return names


class GeneratedTest(tf.test.TestCase):

    def test_committed_flagfiles_are_the_generated_ones(self):
        on_disk = sorted(n for n in os.listdir(experiments.CONFIGS_DIR) if n.endswith(".cfg"))
        self.assertEqual(on_disk, sorted(FLAGFILES))
        for name, flagfile in FLAGFILES.items():
            self.assertEqual(committed(name), flagfile.text(),
                             f"{name} differs from the grid: run python -m launch.write_configs")

    def test_write_configs_writes_each_file_once(self):
        directory = os.path.join(self.get_temp_dir(), "configs")
        self.assertCountEqual(write_configs.write(directory), FLAGFILES)
        self.assertEqual(write_configs.write(directory), [])  # up to date
        with open(os.path.join(directory, "cifar10_max_pool.cfg")) as f:
            self.assertEqual(f.read(), committed("cifar10_max_pool.cfg"))

    def test_paper_and_flagfile_cadences_agree(self):
        # The drift that generation prevents: the paper grid's synthetic runs and their files.
        run = FLAGFILES["synthetic_c3.cfg"].run
        self.assertIn(f"--measure_every={run.settings['measure_every']}",
                      committed("synthetic_c3.cfg").splitlines())
        self.assertEqual(run.settings["train_steps"], experiments.PROFILES["paper"].synthetic_steps)


class AcceptedTest(parameterized.TestCase, tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.flags_were_parsed = FLAGS.is_parsed()

    def tearDown(self):
        FLAGS.unparse_flags()  # every flag back to its default
        if self.flags_were_parsed:
            FLAGS([__name__])
        super().tearDown()

    @parameterized.parameters(sorted(FLAGFILES))
    def test_launcher_stops_only_on_the_absent_data(self, name):
        flagfile = FLAGFILES[name]
        launcher = LAUNCHERS[flagfile.run.launcher]
        own = {f.name for module in ("launch.common", flagfile.run.launcher)
               for f in FLAGS.get_flags_for_module(module)}
        for flag in flag_names(committed(name)):
            self.assertIn(flag, own, f"{name}: --{flag} is not a flag of {launcher.__name__}")

        empty = tempfile.mkdtemp(dir=self.get_temp_dir())
        output_dir = os.path.join(self.get_temp_dir(), name)
        FLAGS.unparse_flags()
        FLAGS([launcher.__name__, f"--flagfile={experiments.CONFIGS_DIR}/{name}",
               f"--data_dir={empty}", f"--output_dir={output_dir}"])  # validators run here
        settings = common.settings_from_flags(launcher.DEFAULTS)
        for key, value in flagfile.run.settings.items():
            if key not in experiments.COMMAND_LINE_SETTINGS:
                self.assertEqual(settings[key], value, f"{name}: --{key}")
        with self.assertRaises(common.LaunchError) as stopped:
            launcher.main([launcher.__name__])
        self.assertIn(empty, stopped.exception.message)
        self.assertFalse(os.path.exists(output_dir))


if __name__ == "__main__":
    tf.test.main()
