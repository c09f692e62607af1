"""End to end: `launch.reproduce --profile=micro` (tiny models, a few steps), resume, redraw."""

import json
import os
import subprocess
import sys

import tensorflow as tf

from pipelines import idx
from tests.launch_test import REPO

FIGURES = ("fig1_examples", "fig2_photo", "fig2_digit", "fig3", "fig4", "fig5", "fig6", "fig7",
           "sensitivity_across_training", "relative_stability")


def run(module, args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module] + args, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


class ReproduceTest(tf.test.TestCase):

    def test_micro_profile_resume_and_redraw(self):
        out = os.path.join(self.get_temp_dir(), "reproduce")
        result = run("launch.reproduce", ["--profile=micro", f"--output_dir={out}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn("[16/16]", result.stderr)
        with open(os.path.join(out, "report.md")) as f:
            report = f.read()
        for number in range(1, 6):
            self.assertIn(f"### Finding {number}: ", report)
        for stem in FIGURES:
            path = os.path.join(out, "figures", f"{stem}.png")
            self.assertGreater(os.path.getsize(path), 10_000, stem)
            self.assertIn(f"figures/{stem}.png", report)
        for table in ("sensitivity.csv", "smoothness.csv", "smooth_init.csv"):
            self.assertTrue(os.path.exists(os.path.join(out, "tables", table)), table)
        with open(os.path.join(out, "results.json")) as f:
            results = json.load(f)
        self.assertEqual(sorted(results["training"]), ["random", "real"])
        self.assertLen(results["training"]["real"]["max_pool"]["sensitivity"]["cosine"], 2)
        self.assertEqual(results["training"]["real"]["max_pool"]["steps"], [0, 2, 4])

        # The same command again skips every finished run.
        result = run("launch.reproduce", ["--profile=micro", f"--output_dir={out}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn("16 of 16 runs already finished", result.stderr)

        # launch.plot redraws the figures and report from the saved results alone.
        for stem in FIGURES[3:]:
            os.remove(os.path.join(out, "figures", f"{stem}.png"))
        os.remove(os.path.join(out, "report.md"))
        result = run("launch.plot", [f"--results_dir={out}"])
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        for stem in FIGURES[3:]:
            self.assertTrue(os.path.exists(os.path.join(out, "figures", f"{stem}.png")), stem)
        with open(os.path.join(out, "report.md")) as f:
            self.assertEqual(f.read().split("## Findings")[1], report.split("## Findings")[1])
        with open(os.path.join(out, "results.json")) as f:
            self.assertEqual(json.load(f), results)

    def test_standard_profile_refuses_the_embedded_subset(self):
        out = os.path.join(self.get_temp_dir(), "standard")
        result = run("launch.reproduce", ["--profile=standard", f"--output_dir={out}",
                                          f"--data_dir={idx.EMBEDDED_FASHION_MNIST_DIR}"])
        self.assertEqual(result.returncode, 2, result.stderr[-3000:])
        self.assertIn("embedded 4,000-image subset", result.stderr)
        self.assertFalse(os.path.exists(out))

    def test_plot_without_results_exits_2(self):
        result = run("launch.plot", [f"--results_dir={self.get_temp_dir()}/nothing"])
        self.assertEqual(result.returncode, 2)
        self.assertIn("grid.json", result.stderr)


if __name__ == "__main__":
    tf.test.main()
