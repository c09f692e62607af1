"""Tests of `experiments.study.report`: what report.md states."""

import os
import re

import tensorflow as tf

from experiments.study import findings
from experiments.study import report
from experiments.study import results as results_lib
from tests import study_fakes


class ReportTest(tf.test.TestCase):

    def test_report_lists_notes_findings_accuracy_and_figures(self):
        directory = self.get_temp_dir()
        results = study_fakes.fake_results(smooth_init=False)
        judged = report.write_report(results, {"fig3": "figures/fig3.png"}, directory,
                                     ["a note"])
        with open(os.path.join(directory, "report.md")) as f:
            text = f.read()
        self.assertStartsWith(text, f"# Reproduction report: {results.title}\n")
        self.assertIn("- a note", text)
        self.assertIn("### Fig. 3: per-layer deformation sensitivity", text)
        self.assertIn("![fig3](figures/fig3.png)", text)
        self.assertEqual([f.number for f in judged], [1, 2, 3, 4, 5])
        for finding in judged:
            self.assertIn(f"### Finding {finding.number}: {finding.verdict}", text)
        # Finding 3 needs the smooth-init sweep: not measured, no criterion, no effect.
        self.assertEqual(judged[2].verdict, findings.NOT_MEASURED)
        self.assertIn(f"| 3 | {findings.STATEMENTS[3]} | **not measured** | - | - |", text)
        self.assertEqual(text.count("Criterion: "), 4)
        # Finding 1's weakest effect in the table: value ± SE (SE, seeds), four decimals.
        headline = judged[0].headline
        self.assertRegex(text, rf"\| 1 \| .* \| \*\*{judged[0].verdict}\*\* \| "
                               rf"{re.escape(headline.name)} "
                               r"\+\d\.\d{4} ± \d\.\d{4} \(SE, 3 seeds\) \| "
                               rf"{2.8 * headline.se:.4f} \|")
        # Every run's training and test accuracy, per seed.
        curves = results.training["random"]["avg_pool"]
        self.assertIn("| random/avg_pool | 0, 1, 2 | "
                      + ", ".join(f"{a:.3f}" for a in curves.train_accuracy) + " | "
                      + ", ".join(f"{a:.3f}" for a in curves.accuracy) + " |", text)

    def test_three_verdicts_and_unrecorded_training_accuracy(self):
        directory = self.get_temp_dir()
        data = study_fakes.fake_results_json(synthetic=False)
        del data["training"]["real"]["strided"]["train_accuracy"]  # written before it existed
        # Pooled nets far more sensitive at init than every other: finding 1 contradicts.
        for variant in ("max_pool", "avg_pool"):
            for seed in data["training"]["real"][variant]["sensitivity"]["cosine"]:
                seed[0][-1] = 5.0
        results = results_lib.StudyResults.from_json(data)
        judged = report.write_report(results, {}, directory)
        with open(os.path.join(directory, "report.md")) as f:
            text = f.read()
        self.assertEqual(judged[0].verdict, findings.CONTRADICTS)
        self.assertIn("### Finding 1: contradicts", text)
        self.assertIn("| real/strided | 0, 1, 2 | -, -, - |", text)
        self.assertIn("*contradicts* when an effect is below -2 SE", text)


if __name__ == "__main__":
    tf.test.main()
