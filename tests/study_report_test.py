"""Tests of `launch.study.report`: what report.md states."""

import os
import re

import numpy as np
import tensorflow as tf

from launch.study import findings
from launch.study import report
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
        self.assertIn(f"| 3 | {findings.STATEMENTS[3]} | **not measured** | - |", text)
        self.assertEqual(text.count("Criterion: "), 4)
        # Finding 1's weakest effect in the table: value ± SE (SE, seeds), four decimals.
        headline = judged[0].headline
        self.assertRegex(text, rf"\| 1 \| .* \| \*\*{judged[0].verdict}\*\* \| "
                               rf"{re.escape(headline.name)} "
                               r"\+\d\.\d{4} ± \d\.\d{4} \(SE, 3 seeds\) \|")
        accuracy = np.asarray(results.training["random"]["avg_pool"].accuracy)
        self.assertIn(f"| random/avg_pool | {accuracy.mean():.3f} ± {accuracy.std(ddof=1):.3f} |",
                      text)


if __name__ == "__main__":
    tf.test.main()
