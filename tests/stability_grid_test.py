"""Tests of `experiments.stability.grid` and `launch.stability_study`: the profiles' runs, the
commands they generate (parsed by launch.train's own flags, in a subprocess, and resolved to the
grid's settings), and one end-to-end run of the micro profile (2 tiny nets, 2 steps) that a
second invocation continues without training or measuring again. The end-to-end run also checks
`experiments.stability.measure` against an independent path: the training loop's own TPS
measurements at its first and last step."""

import json
import os
import subprocess
import sys

from absl.testing import parameterized
import tensorflow as tf

from experiments import models
from experiments.stability import grid as grid_lib
from pipelines import idx
from tests.launch_test import REPO

# Parses launch.train commands read from stdin with launch.train's flags; prints, per command,
# the settings they resolve to (launch.common.settings_from_flags) or the flags error.
_PARSE = r"""
import json, shlex, sys
from absl import flags
from launch import common, train
FLAGS = flags.FLAGS
out = []
for line in sys.stdin.read().splitlines():
    args = shlex.split(line)
    assert args[:3] == ["python", "-m", "launch.train"], args[:3]
    FLAGS.unparse_flags()
    try:
        FLAGS(["launch.train"] + args[3:])
        out.append({"settings": common.settings_from_flags("train"),
                    "output_dir": FLAGS.output_dir})
    except flags.Error as e:
        out.append({"error": str(e)})
print(json.dumps(out))
"""


def _run(args, timeout=300):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable] + args, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


class ProfileTest(tf.test.TestCase, parameterized.TestCase):

    def test_quick_profile_spans_kinds(self):
        profile = grid_lib.PROFILES["quick"]
        names = [a.model for a in profile.architectures]
        self.assertGreaterEqual(len(names), 10)
        self.assertContainsSubset({"fc2", "fc4", "fc6", "lenet", "resnet18",
                                   "mobilenet_v2_035"}, names)
        kinds = {models.get(n).kind for n in names}
        self.assertContainsSubset({"fully_connected", "cnn", "resnet", "mobile"}, kinds)
        self.assertGreaterEqual(profile.seeds, 2)
        self.assertEqual(profile.data_dir, grid_lib.idx.EMBEDDED_FASHION_MNIST_DIR)

    @parameterized.parameters(*grid_lib.PROFILES)
    def test_runs_one_per_architecture_and_seed(self, name):
        profile = grid_lib.PROFILES[name]
        runs = grid_lib.grid(profile, "/data")
        self.assertLen(runs, len(profile.architectures) * profile.seeds)
        self.assertLen({r.name for r in runs}, len(runs))
        for run in runs:
            self.assertEqual(run.name, f"{run.model}/seed{run.seed}")
            self.assertEqual(run.settings["seed"], run.seed)
            self.assertEqual(run.settings["data_dir"], "/data")
            models.get(run.model)  # a registry name

    def test_paper_profile_has_petrini_training_settings(self):
        profile = grid_lib.PROFILES["paper"]
        self.assertEqual(profile.dataset, "cifar10")
        self.assertEqual((profile.learning_rate, profile.batch_size, profile.weight_decay,
                          profile.epochs, profile.train_steps), (0.1, 128, 5e-4, 200, None))
        self.assertFalse(profile.allow_embedded)
        names = [a.model for a in profile.architectures]
        self.assertIn("mobilenet_v2", names)  # full width, as Petrini et al. trained it
        self.assertIn("efficientnet_b0", names)
        self.assertEqual({a.width for a in profile.architectures}, {None})

    def test_finished_runs_detected(self):
        root = self.get_temp_dir()
        run = grid_lib.grid(grid_lib.PROFILES["micro"])[0]
        self.assertFalse(grid_lib.is_finished(run, root))
        os.makedirs(os.path.join(root, run.name))
        with open(os.path.join(root, run.name, "final.json"), "w") as f:
            f.write("{}")
        self.assertTrue(grid_lib.is_finished(run, root))


class LauncherTest(tf.test.TestCase):

    def test_printed_commands_are_accepted_by_launch_train(self):
        commands = []
        runs = []
        for name in ("quick", "paper"):
            proc = _run(["-m", "launch.stability_study", f"--profile={name}",
                         "--output_dir=/out", "--data_dir=/data", "--print_commands"])
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
            commands += proc.stdout.strip().splitlines()
            runs += grid_lib.grid(grid_lib.PROFILES[name], "/data")
        self.assertLen(commands, len(runs))
        proc = subprocess.run([sys.executable, "-c", _PARSE], input="\n".join(commands),
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        parsed = json.loads(proc.stdout.strip().splitlines()[-1])
        for run, result in zip(runs, parsed):
            self.assertNotIn("error", result, run.name)
            self.assertEqual(result["output_dir"], f"/out/{run.name}")
            for key, value in run.settings.items():
                if value is not None:
                    self.assertEqual(result["settings"][key], value, f"{run.name}: {key}")
            if run.settings["epochs"] is not None:
                self.assertIsNone(result["settings"]["train_steps"])

    def _check_matches_training_measurements(self, run_dir):
        """The rebuilt models (init: from the seed; trained: the checkpoint) measured with the
        TPS deformation give the R_f the training loop measured at its first and last step on
        the same images and seed (run_dir/measurements.json), point by point."""
        with open(os.path.join(run_dir, "stability.json")) as f:
            stability = json.load(f)
        with open(os.path.join(run_dir, "measurements.json")) as f:
            measurements = json.load(f)
        for stage, index in (("init", 0), ("trained", -1)):
            ours = {p["name"]: p["R_f"] for p in stability["stages"][stage]["tps"]}
            theirs = measurements[index]["relative_stability"]
            self.assertGreater(len(theirs["layers"]), 3)
            for layer, value in zip(theirs["layers"], theirs["relative_stability"]):
                self.assertAllClose(ours[layer], value, rtol=1e-4, msg=f"{run_dir} {layer}")

    def test_micro_profile_end_to_end_and_rerun(self):
        root = os.path.join(self.get_temp_dir(), "study")
        args = ["-m", "launch.stability_study", "--profile=micro", f"--output_dir={root}"]
        proc = _run(args)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        with open(os.path.join(root, "results.json")) as f:
            results = json.load(f)
        runs = grid_lib.grid(grid_lib.PROFILES["micro"])
        self.assertLen(results["records"], 2 * len(runs))
        for record in results["records"]:
            for deformation in ("diffeo", "tps"):
                points = record["deformations"][deformation]["points"]
                self.assertEqual(points[-1]["relative_depth"], 1.0)  # the output is measured
        for run in runs:
            self._check_matches_training_measurements(os.path.join(root, run.name))
        with open(os.path.join(root, "report.md")) as f:
            text = f.read()
        self.assertIn("## Verdicts", text)
        self.assertIn(f"training and measuring {len(runs)} of the {len(runs)} runs", text)
        with open(os.path.join(root, "grid.json")) as f:
            grid = json.load(f)
        # The embedded data's path is not recorded: a moved checkout continues the study.
        self.assertIsNone(grid["data_dir"])
        self.assertNotIn(os.path.dirname(idx.EMBEDDED_FASHION_MNIST_DIR), json.dumps(grid))
        self.assertTrue(os.path.exists(os.path.join(root, "figures", "error_vs_rf.png")))
        mtimes = {r.name: os.path.getmtime(os.path.join(root, r.name, "stability.json"))
                  for r in runs}
        again = _run(args)
        self.assertEqual(again.returncode, 0, again.stderr[-3000:])
        self.assertIn(f"{len(runs)} of {len(runs)} runs already finished", again.stderr)
        self.assertNotIn("training lenet", again.stderr)
        with open(os.path.join(root, "report.md")) as f:
            self.assertIn(f"All {len(runs)} runs were trained and measured before", f.read())
        for run in runs:
            self.assertEqual(os.path.getmtime(os.path.join(root, run.name, "stability.json")),
                             mtimes[run.name])

    def test_other_grid_in_output_dir_refused(self):
        root = self.get_temp_dir()
        with open(os.path.join(root, "grid.json"), "w") as f:
            json.dump({"profile": "another"}, f)
        proc = _run(["-m", "launch.stability_study", "--profile=micro", f"--output_dir={root}"])
        self.assertEqual(proc.returncode, 2)
        self.assertIn("holds another grid", proc.stderr)

    def test_training_flags_refused(self):
        root = os.path.join(self.get_temp_dir(), "out")
        proc = _run(["-m", "launch.stability_study", "--profile=micro", f"--output_dir={root}",
                     "--width=2", "--dataset=cifar10"])
        self.assertEqual(proc.returncode, 2)
        self.assertIn("--dataset, --width: the micro profile sets", proc.stderr)
        self.assertFalse(os.path.exists(root))


if __name__ == "__main__":
    tf.test.main()
