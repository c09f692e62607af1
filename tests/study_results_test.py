"""Tests of `experiments.study.results`: collecting runs, the JSON form of results.json, the
tables."""

import csv
import json
import os
import tempfile

import numpy as np
import tensorflow as tf

from experiments.study import grid as grid_lib
from experiments.study import results as results_lib
from tests import study_fakes

LAYERS = ["input", "block1_relu1", "block1_down"]
SMOOTHNESS_LAYERS = ["block1_conv1", "block1_down"]  # The 2x2 downsampling conv is left out.


def write_run(directory, seed, steps=(0, 5), finished=True):
    """A run directory as train_lib writes it: measurements.json (+ final.json if finished).

    Seed s measures sensitivity (s + 1) * (step + 1) * (layer + 1) / 100 (Euclidean: twice
    that), relative stability 1 + that, smoothness 1.8 - step / 100 + seed / 10 at both convs.
    """
    measurements = []
    for step in steps:
        cosine = [(seed + 1) * (step + 1) * (k + 1) / 100 for k in range(len(LAYERS))]
        measurements.append({
            "step": step,
            "sensitivity_cosine": {"layers": LAYERS, "sensitivity": cosine},
            "sensitivity_euclidean": {"layers": LAYERS, "sensitivity": [2 * v for v in cosine]},
            "relative_stability": {"layers": LAYERS,
                                   "relative_stability": [1 + v for v in cosine]},
            "smoothness": [{"layer": name, "index": i + 1, "smoothness": 1.8 - step / 100 +
                            seed / 10} for i, name in enumerate(SMOOTHNESS_LAYERS)],
        })
    os.makedirs(directory)
    with open(os.path.join(directory, "measurements.json"), "w") as f:
        json.dump(measurements, f)
    if finished:
        with open(os.path.join(directory, "final.json"), "w") as f:
            json.dump({"step": steps[-1], "accuracy": 0.5 + seed / 10,
                       "train_accuracy": 0.9 + seed / 100}, f)


def run(group, condition, seed):
    return grid_lib.Run(f"{group}/{condition}/seed{seed}", group, condition, seed,
                        "launch.cifar10", {})


class CollectTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = os.path.join(tempfile.mkdtemp(prefix="collect"), "runs")
        cls.runs = [run("real", "max_pool", 0), run("real", "max_pool", 2),
                    run("real", "max_pool", 1),  # unfinished: left out
                    run("smooth_init", "2", 0), run("smooth_init", "0.5", 0),
                    run("synthetic", "1", 0), run("synthetic", "3", 1),
                    run("init", "max_pool", 4), run("init", "max_pool", 3)]
        for r in cls.runs:
            write_run(os.path.join(cls.root, r.name), r.seed,
                      steps=(0,) if r.group in ("smooth_init", "init") else (0, 5),
                      finished=r.seed != 1 or r.group != "real")
        cls.results = results_lib.collect(cls.runs, cls.root, "a title")

    def test_training_curves_stack_the_finished_seeds(self):
        self.assertEqual(list(self.results.training), ["real"])
        curves = self.results.training["real"]["max_pool"]
        self.assertEqual(curves.seeds, [0, 2])
        self.assertEqual(curves.steps, [0, 5])
        self.assertEqual(curves.layers, LAYERS)
        self.assertEqual(curves.conv_layers, ["block1_conv1"])
        # [seed][step][layer]: seed 2 at step 5, layer 1 = 3 * 6 * 2 / 100.
        self.assertAllClose(curves.sensitivity["cosine"][1][1][1], 0.36)
        self.assertAllClose(curves.sensitivity["euclidean"][1][1][1], 0.72)
        self.assertAllClose(curves.relative_stability[1][1][1], 1.36)
        self.assertAllClose(curves.smoothness, [[[1.8], [1.75]], [[2.0], [1.95]]])
        self.assertAllClose(curves.accuracy, [0.5, 0.7])
        self.assertAllClose(curves.train_accuracy, [0.9, 0.92])
        self.assertEqual(self.results.imagenet, {})

    def test_init_only_runs_are_their_own_group(self):
        self.assertEqual(list(self.results.init), ["max_pool"])
        curves = self.results.init["max_pool"]
        self.assertEqual((curves.seeds, curves.steps), ([4, 3], [0]))
        # Seed 3 at step 0, last layer: 4 * 1 * 3 / 100.
        self.assertAllClose(curves.sensitivity["cosine"][1], [[0.04, 0.08, 0.12]])

    def test_sweeps_are_in_ascending_order(self):
        sweep = self.results.smooth_init
        self.assertEqual(sweep.sigmas, [0.5, 2.0])
        self.assertEqual(list(sweep.sensitivity), ["0.5", "2"])
        self.assertAllClose(sweep.sensitivity["2"], [[0.01, 0.02, 0.03]])
        synthetic = self.results.synthetic
        self.assertEqual(synthetic.strengths, [1.0, 3.0])
        self.assertEqual(synthetic.seeds, {"1": [0], "3": [1]})
        self.assertAllClose(synthetic.smoothness_init["3"], [[1.9]])
        self.assertAllClose(synthetic.smoothness_final["3"], [[1.85]])

    def test_json_round_trip(self):
        data = json.loads(json.dumps(self.results.to_json()))
        self.assertEqual(list(data), ["title", "training", "init", "smooth_init", "synthetic"])
        self.assertEqual(results_lib.StudyResults.from_json(data), self.results)

    def test_tables_are_means_and_std_over_seeds(self):
        directory = os.path.join(self.get_temp_dir(), "tables")
        results_lib.write_tables(self.results, directory)
        with open(os.path.join(directory, "sensitivity.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertLen(rows, 2 * 3)  # steps x layers of real/max_pool
        row = rows[4]  # step 5, layer 1
        self.assertEqual((row["step"], row["layer"]), ("5", "block1_relu1"))
        values = np.array([1, 3]) * 6 * 2 / 100  # seeds 0 and 2
        self.assertAllClose([float(row["sensitivity_mean"]), float(row["sensitivity_std"])],
                            [values.mean(), values.std()])
        with open(os.path.join(directory, "smoothness.csv")) as f:
            rows = list(csv.DictReader(f))
        self.assertEqual([(r["group"], r["variant"], r["step"]) for r in rows[2:]],
                         [("synthetic", "C=1", "init"), ("synthetic", "C=1", "final"),
                          ("synthetic", "C=3", "init"), ("synthetic", "C=3", "final")])
        with open(os.path.join(directory, "smooth_init.csv")) as f:
            self.assertEqual([r["sigma"] for r in csv.DictReader(f)], ["0.5"] * 3 + ["2"] * 3)


class JsonTest(tf.test.TestCase):

    def test_stored_object_is_read_back_unchanged(self):
        data = json.loads(json.dumps(study_fakes.fake_results_json()))
        self.assertEqual(results_lib.StudyResults.from_json(data).to_json(), data)

    def test_results_without_training_accuracy_are_read(self):
        # results.json written before runs recorded their training accuracy.
        data = json.loads(json.dumps(study_fakes.fake_results_json()))
        for variants in data["training"].values():
            for curves in variants.values():
                del curves["train_accuracy"]
        results = results_lib.StudyResults.from_json(data)
        self.assertEqual(results.training["real"]["max_pool"].train_accuracy, [])

    def test_groups_not_run_are_left_out(self):
        self.assertEqual(results_lib.StudyResults("t").to_json(), {"title": "t"})

    def test_missing_field_is_named(self):
        data = study_fakes.fake_results_json()
        del data["training"]["real"]["max_pool"]["steps"]
        with self.assertRaisesRegex(ValueError, r"training/real/max_pool: missing .*'steps'"):
            results_lib.StudyResults.from_json(data)

    def test_unknown_group_is_named(self):
        with self.assertRaisesRegex(ValueError, "unknown fields.*'cifar100'"):
            results_lib.StudyResults.from_json({"title": "t", "cifar100": {}})


if __name__ == "__main__":
    tf.test.main()
