"""The experiment grids of `experiments.study.grid`: what each profile runs."""

import collections
import dataclasses

from absl.testing import parameterized
import tensorflow as tf

from deform_tf import models
from experiments.study import grid as grid_lib

FULL_FASHION_MNIST_TRAIN = 60_000


def seeds_by_condition(runs, group):
    seeds = collections.defaultdict(list)
    for run in runs:
        if run.group == group:
            seeds[run.condition].append(run.seed)
    return seeds


class GridTest(parameterized.TestCase, tf.test.TestCase):

    def test_pooled_and_not_pooled_split_the_variants(self):
        self.assertEmpty(set(grid_lib.POOLED) & set(grid_lib.NOT_POOLED))
        self.assertCountEqual(grid_lib.POOLED + grid_lib.NOT_POOLED, models.DOWNSAMPLING)

    @parameterized.parameters("quick", "standard", "paper")
    def test_grid_has_what_every_finding_needs(self, name):
        profile = grid_lib.PROFILES[name]
        runs = grid_lib.grid(profile)
        self.assertLen({r.name for r in runs}, len(runs))
        for group in ("real", "random"):  # findings 1, 2, 5: every variant, the same seeds
            seeds = seeds_by_condition(runs, group)
            self.assertCountEqual(seeds, models.DOWNSAMPLING)
            self.assertLen({tuple(s) for s in seeds.values()}, 1)
            self.assertGreaterEqual(len(seeds["max_pool"]), 3)
        sigmas = seeds_by_condition(runs, "smooth_init")  # finding 3: sigma 0 and the largest
        self.assertEqual(sigmas["0"], sigmas["2"])
        strengths = seeds_by_condition(runs, "synthetic")  # finding 4: C = 1 vs 4, same seeds
        self.assertEqual(strengths["1"], strengths["4"])
        self.assertGreaterEqual(len(strengths["1"]), 3)

    def test_standard_profile_is_the_documented_size(self):
        profile = grid_lib.PROFILES["standard"]
        self.assertGreaterEqual(profile.width, 0.5)
        self.assertGreaterEqual(profile.seeds, 3)
        self.assertFalse(profile.allow_embedded)
        self.assertIsNone(profile.max_train_examples)
        epochs = profile.train_steps * profile.batch_size / FULL_FASHION_MNIST_TRAIN
        self.assertAllClose(epochs, 2.0, atol=0.01)
        self.assertEqual(profile.train_steps % profile.measure_every, 0)
        self.assertIn("2 hours", grid_lib.standard.__doc__)

    def test_quick_synthetic_task_has_more_seeds_where_finding_4_compares(self):
        runs = [r for r in grid_lib.grid(grid_lib.PROFILES["quick"])
                if r.group == "synthetic"]
        seeds = seeds_by_condition(runs, "synthetic")
        self.assertEqual({c: len(s) for c, s in seeds.items()}, {"1": 6, "2": 3, "3": 3, "4": 6})
        self.assertEqual({r.settings["width"] for r in runs}, {0.25})

    @parameterized.parameters(("quick", 512, 400, 12), ("standard", 2048, 800, 10))
    def test_random_labels_on_a_subset_and_more_seeds_at_init(self, name, examples, steps,
                                                              init_seeds):
        profile = grid_lib.PROFILES[name]
        runs = grid_lib.grid(profile)
        random = [r for r in runs if r.group == "random"]
        self.assertEqual({(r.settings["max_train_examples"], r.settings["train_steps"],
                           r.settings["random_labels"]) for r in random},
                         {(examples, steps, True)})
        real = [r for r in runs if r.group == "real"]
        self.assertEqual({(r.settings["max_train_examples"], r.settings["train_steps"],
                           r.settings["random_labels"]) for r in real},
                         {(None, profile.train_steps, False)})
        # Finding 1: the real-label runs' seeds at init, init-only runs for the rest.
        init = seeds_by_condition(runs, "init")
        self.assertEqual({v: sorted(s) for v, s in init.items()},
                         {v: list(range(profile.seeds, init_seeds))
                          for v in models.DOWNSAMPLING})
        self.assertEqual({r.settings["train_steps"] for r in runs if r.group == "init"}, {0})
        self.assertEqual({len(s) for s in seeds_by_condition(runs, "smooth_init").values()},
                         {init_seeds})
        self.assertIn(f"{init_seeds} seeds at init", profile.title)

    def test_without_init_seeds_every_seed_is_trained(self):
        runs = grid_lib.grid(grid_lib.PROFILES["micro"])
        self.assertEmpty([r for r in runs if r.group == "init"])
        self.assertEqual(seeds_by_condition(runs, "smooth_init")["0"], [0, 1])

    def test_synthetic_prototypes_come_from_data_dir_only_for_fashion_mnist(self):
        for dataset, expected in (("fashion_mnist", "/data/fm"), ("cifar10", None)):
            profile = dataclasses.replace(grid_lib.PROFILES["quick"],
                                          dataset=dataset)
            runs = grid_lib.grid(profile, data_dir="/data/fm" if expected else "/data/c10")
            synthetic = {r.settings["data_dir"] for r in runs if r.group == "synthetic"}
            real = {r.settings["data_dir"] for r in runs if r.group == "real"}
            self.assertEqual(synthetic, {expected})
            self.assertEqual(real, {"/data/fm" if expected else "/data/c10"})

    def test_command_gives_every_setting(self):
        (run,) = [r for r in grid_lib.grid(grid_lib.PROFILES["quick"])
                  if r.name == "real/subsample/seed0"]
        command = run.command("/runs")
        self.assertStartsWith(command, "python -m launch.cifar10 "
                              "--output_dir=/runs/real/subsample/seed0 ")
        for flag in ("--downsampling=subsample", "--norandom_labels", "--seed=0",
                     "--train_steps=150", "--width=0.125"):
            self.assertIn(flag, command.split())
        self.assertNotIn("--data_dir", command)  # None settings are left out
        self.assertNotIn("--seed=0", run.flags(exclude=("seed",)))


if __name__ == "__main__":
    tf.test.main()
