"""Tests of the findings' criteria in `launch.report` on hand-made results."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from launch import report


def _entry(init_last, final_last, smooth_init=1.85, smooth_final=1.8, seeds=3, layers=4):
    """A training entry whose last-layer sensitivity goes from init_last to final_last."""
    def curve(last):
        return list(np.linspace(0.1, last, layers))
    return {
        "layers": [f"l{i}" for i in range(layers)], "conv_layers": ["c1", "c2", "c3"],
        "steps": [0, 10],
        "sensitivity": {d: [[curve(init_last), curve(final_last)]] * seeds
                        for d in ("cosine", "euclidean")},
        "relative_stability": [[[1.0] * layers] * 2] * seeds,
        "smoothness": [[[smooth_init] * 3, [smooth_final - 0.01, smooth_final,
                                            smooth_final + 0.01]]] * seeds,
        "accuracy": [0.8] * seeds,
    }


def _results(pooled_init=0.2, other_init=0.6, final=0.1):
    real = {v: _entry(pooled_init if v in report.POOLED else other_init, final)
            for v in report.POOLED + report.NOT_POOLED}
    return {"title": "test", "training": {"real": real}}


class FindingsTest(parameterized.TestCase, tf.test.TestCase):

    def test_finding_1_and_2_agree_on_paper_like_numbers(self):
        findings = report.judge(_results())
        self.assertEqual(findings[0]["verdict"], report.AGREES)
        self.assertEqual(findings[1]["verdict"], report.AGREES)
        self.assertIn("max_pool 0.200", findings[0]["measured"])

    def test_finding_1_disagrees_when_pooling_is_not_lower(self):
        findings = report.judge(_results(pooled_init=0.7, other_init=0.6))
        self.assertEqual(findings[0]["verdict"], report.DISAGREES)

    def test_finding_2_disagrees_when_variants_stay_apart(self):
        results = _results()
        results["training"]["real"]["strided"] = _entry(0.6, 0.9)
        self.assertEqual(report.judge(results)[1]["verdict"], report.DISAGREES)

    def test_finding_3_smooth_init(self):
        results = {"title": "t", "smooth_init": {"sigmas": [0.0, 1.0], "layers": ["a", "b"],
                                                 "sensitivity": {"0": [[0.1, 0.5]] * 2,
                                                                 "1": [[0.1, 0.3]] * 2}}}
        self.assertEqual(report.finding_3(results)["verdict"], report.AGREES)
        results["smooth_init"]["sensitivity"]["1"] = [[0.1, 0.6]] * 2
        self.assertEqual(report.finding_3(results)["verdict"], report.DISAGREES)

    @parameterized.parameters(((1.8, 1.7, 1.6), 0.01, report.AGREES),
                              ((1.8, 1.7, 1.6), 0.2, report.INCONCLUSIVE),
                              ((1.6, 1.7, 1.8), 0.01, report.DISAGREES))
    def test_finding_4_synthetic(self, means, noise, verdict):
        # Three seeds per C at mean m with seed values m - noise, m, m + noise.
        results = {"title": "t", "synthetic": {
            "strengths": [1.0, 2.0, 3.0], "conv_layers": ["c"],
            "smoothness_init": {k: [[1.86]] * 3 for k in ("1", "2", "3")},
            "smoothness_final": {k: [[m - noise], [m], [m + noise]]
                                 for k, m in zip(("1", "2", "3"), means)}}}
        self.assertEqual(report.finding_4(results)["verdict"], verdict)

    def test_missing_sections_are_not_measured(self):
        findings = report.judge({"title": "empty"})
        self.assertEqual({f["verdict"] for f in findings}, {report.NOT_MEASURED})

    def test_report_lists_every_figure(self):
        directory = self.get_temp_dir()
        report.write_report(_results(), {"fig3": "figures/fig3.png"}, directory, ["a note"])
        with open(f"{directory}/report.md") as f:
            text = f.read()
        self.assertIn("![fig3](figures/fig3.png)", text)
        self.assertIn("- a note", text)
        self.assertIn("### Finding 5:", text)


if __name__ == "__main__":
    tf.test.main()
