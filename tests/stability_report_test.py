"""Tests of `experiments.stability.report`: results.json's records from the runs' stability.json,
and report.md's numbers read back and checked against results.json (scipy's linregress and
spearmanr on the records are the oracles), the figures written as PNG."""

import json
import os
import re

import numpy as np
import scipy.stats
import tensorflow as tf

from experiments.stability import analysis
from experiments.stability import report

# (model, kind, test error, R_f and D_f at the output, trained), at seed 0.
MODELS = (("fc2", "fully_connected", 0.30, 1.1, 0.12), ("fc4", "fully_connected", 0.28, 0.9, 0.2),
          ("lenet", "cnn", 0.15, 0.12, 0.05), ("vgg", "cnn", 0.10, 0.05, 0.09),
          ("resnet18", "resnet", 0.08, 0.03, 0.04))


def _points(r_out, d_out):
    return [{"name": "input", "relative_depth": 0.0, "layer_type": "InputLayer", "D_f": 0.2,
             "G_f": 0.2, "R_f": 1.0, "sensitivity_cosine": 0.1},
            {"name": "relu", "relative_depth": 0.5, "layer_type": "ReLU", "D_f": 0.1,
             "G_f": None, "R_f": None, "sensitivity_cosine": 0.1},  # an undefined point
            {"name": "logits", "relative_depth": 1.0, "layer_type": "Dense", "D_f": d_out,
             "G_f": d_out / r_out, "R_f": r_out, "sensitivity_cosine": 0.2}]


def _stability(model, kind, error, r_trained, d_trained, seed):
    scale = 1.0 + 0.1 * seed
    return {
        "model": model, "kind": kind, "seed": seed, "dataset": "fashion_mnist",
        "num_images": 8, "test_error": error * scale, "train_error": 0.01,
        "deformations": {"diffeo": {"text": "diffeo T = 0.001, cutoff 3"},
                         "tps": {"text": "TPS 3x3 grid, C = 2 px"}},
        "stages": {"init": {"diffeo": _points(1.0 * scale, 0.5), "tps": _points(0.9, 0.5)},
                   "trained": {"diffeo": _points(r_trained * scale, d_trained * scale),
                               "tps": _points(r_trained * 1.5, d_trained)}},
    }


def _results():
    stabilities = [_stability(*model, seed) for seed in range(3) for model in MODELS]
    return report.collect(stabilities, "test study", "fashion_mnist")


class CollectTest(tf.test.TestCase):

    def test_one_record_per_architecture_seed_and_stage(self):
        results = _results()
        records = results["records"]
        self.assertLen(records, len(MODELS) * 3 * 2)
        keys = {(r["model"], r["seed"], r["stage"]) for r in records}
        self.assertLen(keys, len(records))
        init = [r for r in records if r["stage"] == "init"]
        self.assertTrue(all(r["test_error"] is None for r in init))
        trained = [r for r in records if r["stage"] == "trained" and r["model"] == "vgg"]
        self.assertAllClose(sorted(r["test_error"] for r in trained), [0.10, 0.11, 0.12])
        point = trained[0]["deformations"]["diffeo"]["points"][-1]
        self.assertEqual(set(point), {"name", "relative_depth", "D_f", "G_f", "R_f"})
        self.assertEqual(results["deformations"]["tps"]["text"], "TPS 3x3 grid, C = 2 px")

    def test_results_json_round_trip(self):
        directory = self.get_temp_dir()
        report.write_results(_results(), directory)
        self.assertEqual(report.read_results(directory), json.loads(json.dumps(_results())))
        with self.assertRaisesRegex(FileNotFoundError, "run the study first"):
            report.read_results(os.path.join(directory, "missing"))


class ReportTest(tf.test.TestCase):

    def test_report_numbers_read_back_from_results_json(self):
        directory = self.get_temp_dir()
        report.write_results(_results(), directory)
        with open(os.path.join(directory, report.RESULTS_FILE)) as f:
            results = json.load(f)
        report.write_report(results, directory, notes=["Runs: 15."], resamples=200)
        with open(os.path.join(directory, report.REPORT_FILE)) as f:
            text = f.read()
        # The oracle: the records' trained outputs, averaged per model, fitted by scipy.
        per_model = {}
        for r in results["records"]:
            if r["stage"] == "trained":
                out = r["deformations"]["diffeo"]["points"][-1]
                per_model.setdefault(r["model"], []).append((r["test_error"], out["R_f"],
                                                             out["D_f"]))
        means = np.array([np.mean(v, axis=0) for v in per_model.values()])
        oracle = scipy.stats.linregress(np.log10(means[:, 1]), np.log10(means[:, 0]))
        diffeo = text.split("## Fit and correlations: diffeo")[1]
        slope = float(re.search(r"slope b = ([-0-9.e]+)", diffeo).group(1))
        prefactor = float(re.search(r"prefactor 10\^a = ([-0-9.e]+)", diffeo).group(1))
        self.assertAllClose(slope, oracle.slope, atol=5e-3)
        self.assertAllClose(prefactor, 10 ** oracle.intercept, rtol=5e-3)
        rho = float(re.search(r"\| R_f \(trained, output\) \| ([-+0-9.]+)", diffeo).group(1))
        self.assertAllClose(rho, scipy.stats.spearmanr(means[:, 0], means[:, 1]).statistic,
                            atol=1e-3)
        rho_d = float(re.search(r"\| D_f \(trained, output\) \| ([-+0-9.]+)", diffeo).group(1))
        self.assertAllClose(rho_d, scipy.stats.spearmanr(means[:, 0], means[:, 2]).statistic,
                            atol=1e-3)
        # The per-architecture table: vgg's mean test error over its seeds.
        row = re.search(r"\| vgg \| cnn \| 3 \| ([0-9.]+) ± ([0-9.]+)", text)
        self.assertAllClose(float(row.group(1)), np.mean([0.10, 0.11, 0.12]), atol=5e-4)
        for claim in "abcde":
            self.assertRegex(text, rf"\*\*\({claim}\) .*Verdict: \*\*(agrees|contradicts|not "
                                   r"shown|not measured)\*\*")
        self.assertIn("only meaningful there", text)  # trained on Fashion-MNIST
        self.assertIn("Runs: 15.", text)
        for name in ("error_vs_rf.png", "profiles_diffeo.png", "profiles_tps.png"):
            with open(os.path.join(directory, "figures", name), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_verdicts_follow_the_data(self):
        # Error rises with R_f across these five architectures: Spearman +1 (agrees with (c)
        # once the interval lies above 0, which three seeds of 10% noise allow).
        analyses = report.write_report(_results(), self.get_temp_dir(),
                                       resamples=200)
        self.assertAllClose(analyses["diffeo"].spearman["R_f"].value, 1.0)
        verdicts = {v.claim: v.verdict for v in analyses["diffeo"].verdicts}
        self.assertEqual(verdicts["c"], analysis.AGREES)

    def test_refuses_results_without_diffeo(self):
        results = _results()
        for r in results["records"]:
            del r["deformations"]["diffeo"]
        with self.assertRaisesRegex(ValueError, "no diffeo"):
            report.write_report(results, self.get_temp_dir(), resamples=10)


if __name__ == "__main__":
    tf.test.main()
