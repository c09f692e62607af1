"""Tests of the paper's result figures (`experiments.study.figures`, Fig. 3-7 and two extras).

The figures are drawn from synthetic study results, built as the JSON object of a results.json
and read with `StudyResults.from_json`. Each must return a Figure with the expected axes and lines
(one per condition, the mean over seeds, with a +-2 std band only with 2 or more seeds), keep the
colour of each downsampling variant, save to a readable PNG, skip missing conditions and raise a
ValueError naming a missing section.
"""

import copy
import os
import tempfile

from absl.testing import parameterized
import matplotlib.colors
from matplotlib import collections as mcollections
from matplotlib import image as mpimg
from matplotlib.figure import Figure
import numpy as np
import tensorflow as tf

from experiments.study import figures as study_figures
from experiments.study import grid as grid_lib
from experiments.study import results as results_lib
from tests import study_fakes

def bands(ax):
    return [c for c in ax.collections if isinstance(c, mcollections.PolyCollection)]


def data_lines(ax):
    """The condition lines (not the dashed/dotted horizontal reference lines)."""
    return [line for line in ax.get_lines() if len(line.get_xdata()) > 2]


def reference_lines(ax):
    return [line for line in ax.get_lines() if len(line.get_xdata()) == 2]


def band_limits(band):
    """{x: (lowest y, highest y)} of a fill_between band's outline."""
    limits = {}
    for path in band.get_paths():
        for x, y in path.vertices:
            low, high = limits.get(round(x, 6), (np.inf, -np.inf))
            limits[round(x, 6)] = (min(low, y), max(high, y))
    return limits


def layer_axes(figure):
    """The axes with data lines (skips the Fig. 5 image grid)."""
    return [ax for ax in figure.axes if not ax.images]


class MeanAndBandTest(tf.test.TestCase):

    def test_hand_computed(self):
        values = [[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]]
        mean, lower, upper = study_figures.mean_and_band(values)
        # Column 0: mean 3, deviations -2, 0, 2 -> sample variance 8 / 2 = 4, std 2.
        # Column 1: mean 5, deviations -3, -1, 4 -> sample variance 26 / 2 = 13.
        self.assertAllClose(mean, [3.0, 5.0])
        self.assertAllClose(lower, [3.0 - 4.0, 5.0 - 2 * np.sqrt(13.0)])
        self.assertAllClose(upper, [3.0 + 4.0, 5.0 + 2 * np.sqrt(13.0)])

    def test_two_seeds_uses_sample_std(self):
        mean, lower, upper = study_figures.mean_and_band([[0.0], [2.0]])
        # Sample std of {0, 2} is sqrt(2) (ddof=1), not 1.
        self.assertAllClose(mean, [1.0])
        self.assertAllClose(upper - mean, [2 * np.sqrt(2.0)])
        self.assertAllClose(mean - lower, [2 * np.sqrt(2.0)])

    def test_one_seed_has_no_spread(self):
        mean, lower, upper = study_figures.mean_and_band([[0.3, 0.7, 0.1]])
        self.assertAllClose(mean, [0.3, 0.7, 0.1])
        self.assertAllEqual(lower, mean)
        self.assertAllEqual(upper, mean)

    def test_geometric_band(self):
        mean, lower, upper = study_figures.mean_and_band([[1.0], [4.0]], log=True)
        # log values 0 and ln 4: mean ln 2, sample std sqrt(2) ln 2.
        self.assertAllClose(mean, [2.0])
        self.assertAllClose(upper, [2.0 * 2.0 ** (2 * np.sqrt(2.0))])
        self.assertAllClose(lower, [2.0 * 2.0 ** (-2 * np.sqrt(2.0))])

    def test_three_dimensional_input_reduces_the_seed_axis(self):
        mean, _, _ = study_figures.mean_and_band(np.arange(24.0).reshape(2, 3, 4))
        self.assertEqual(mean.shape, (3, 4))
        self.assertAllClose(mean, np.arange(24.0).reshape(2, 3, 4).mean(0))

    def test_no_seed_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "at least one seed"):
            study_figures.mean_and_band([])


class FigureTest(parameterized.TestCase, tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.results = study_fakes.fake_results()
        cls.one_seed = study_fakes.fake_results(seeds=1)

    def assert_variant_lines(self, ax, count, seeds):
        lines = data_lines(ax)
        self.assertLen(lines, count)
        self.assertLen(bands(ax), count if seeds > 1 else 0)
        # Legend order and colours: pooled (warm) first, each variant its own colour.
        expected = [v for v in study_figures.VARIANT_ORDER if v in study_fakes.VARIANTS][:count]
        for line, variant in zip(lines, expected):
            self.assertEqual(matplotlib.colors.to_hex(line.get_color()),
                             study_figures.VARIANT_COLORS[variant].lower())
            self.assertStartsWith(line.get_label(), study_figures.VARIANT_LABELS[variant])

    @parameterized.parameters(("cosine",), ("euclidean",))
    def test_fig3(self, distance):
        figure = study_figures.plot_fig3(self.results, distance=distance)
        self.assertIsInstance(figure, Figure)
        self.assertLen(figure.axes, 2)
        for ax, step in zip(figure.axes, (0, -1)):
            self.assert_variant_lines(ax, 5, seeds=3)
            self.assertEmpty(reference_lines(ax))
            # The max_pool line is the mean over seeds at that step.
            values = np.asarray(
                self.results.training["real"]["max_pool"].sensitivity[distance])
            self.assertAllClose(data_lines(ax)[0].get_ydata(), values[:, step, :].mean(0))
            self.assertAllEqual(data_lines(ax)[0].get_xdata(), np.arange(13))
            # Its band spans mean +- 2 sample std over seeds at every layer.
            limits = band_limits(bands(ax)[0])
            std = values[:, step, :].std(0, ddof=1)
            for x in range(13):
                expected = values[:, step, x].mean() + np.array([-2.0, 2.0]) * std[x]
                self.assertAllClose(limits[x], expected)
        self.assertIn("initialization", figure.axes[0].get_title(loc="left"))
        self.assertIn("after training", figure.axes[1].get_title(loc="left"))
        labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
        self.assertLen(labels, 13)
        self.assertStartsWith(labels[0], "input")
        self.assertStartsWith(labels[3], "down1")

    def test_fig3_one_seed_has_no_bands(self):
        figure = study_figures.plot_fig3(self.one_seed)
        for ax in figure.axes:
            self.assert_variant_lines(ax, 5, seeds=1)

    def test_fig3_index_ticks_without_names(self):
        figure = study_figures.plot_fig3(self.results, layer_names=False)
        labels = [t.get_text() for t in figure.axes[0].get_xticklabels()]
        self.assertEqual(labels, [str(k) for k in range(13)])

    def test_fig3_rejects_unknown_distance(self):
        with self.assertRaisesRegex(ValueError, "distance"):
            study_figures.plot_fig3(self.results, distance="l1")

    def test_fig4_darker_for_larger_sigma(self):
        figure = study_figures.plot_fig4(self.results)
        self.assertLen(figure.axes, 1)
        lines = data_lines(figure.axes[0])
        self.assertLen(lines, 4)
        self.assertLen(bands(figure.axes[0]), 4)
        self.assertIn("\u03c3 = 0.5", lines[1].get_label())
        smoothness = np.mean(self.results.smooth_init.smoothness["0.5"])
        self.assertIn(f"(smoothness {smoothness:.2f})", lines[1].get_label())
        for line, sigma in zip(lines, ("0", "0.5", "1", "2")):
            self.assertAllClose(line.get_ydata(), np.mean(
                self.results.smooth_init.sensitivity[sigma], axis=0))
        luminance = [np.dot(matplotlib.colors.to_rgb(line.get_color()), [0.299, 0.587, 0.114])
                     for line in lines]
        self.assertAllEqual(np.diff(luminance) < 0, [True] * 3)
        self.assertIn("smoother filters", figure.axes[0].get_title(loc="left"))

    def test_fig5_without_and_with_samples(self):
        figure = study_figures.plot_fig5(self.results)
        self.assertLen(figure.axes, 1)
        ax = figure.axes[0]
        self.assertLen(data_lines(ax), 4)
        (init_line,) = reference_lines(ax)
        init = np.concatenate([np.ravel(v) for v in
                               self.results.synthetic.smoothness_init.values()])
        self.assertAllClose(init_line.get_ydata(), [init.mean()] * 2)
        self.assertEqual(matplotlib.colors.to_hex(init_line.get_color()), "#000000")
        self.assertEqual(init_line.get_label().split(" ")[:2], ["init", "mean"])
        self.assertAllEqual(data_lines(ax)[0].get_xdata(), np.arange(1, 9))
        for line, c in zip(data_lines(ax), ("1", "2", "3", "4")):
            self.assertAllClose(line.get_ydata(), np.mean(
                self.results.synthetic.smoothness_final[c], axis=0))
            accuracy = np.mean(self.results.synthetic.accuracy[c])
            self.assertIn(f"(acc {accuracy:.3f})", line.get_label())

        rng = np.random.default_rng(1)
        samples = {1: rng.uniform(size=(3, 32, 32)), 2: rng.uniform(size=(3, 32, 32, 1)),
                   3: rng.uniform(size=(2, 32, 32)), 4: rng.uniform(size=(3, 32, 32))}
        figure = study_figures.plot_fig5(self.results, sample_images=samples)
        self.assertLen(figure.axes, 4 * 3 + 1)
        self.assertLen([ax for ax in figure.axes if ax.images], 3 + 3 + 2 + 3)
        self.assertLen(layer_axes(figure)[-1].get_lines(), 5)

    def test_fig5_rejects_bad_sample_shape(self):
        with self.assertRaisesRegex(ValueError, "sample_images"):
            study_figures.plot_fig5(self.results, sample_images={1: np.zeros((2, 3, 4, 5))})

    def test_fig6_real_and_random(self):
        figure = study_figures.plot_fig6(self.results)
        self.assertLen(figure.axes, 2)
        for ax, kind in zip(figure.axes, ("real", "random")):
            self.assert_variant_lines(ax, 5, seeds=3)
            (init_line,) = reference_lines(ax)
            init = np.concatenate([np.asarray(v.smoothness)[:, 0, :].ravel()
                                   for v in self.results.training[kind].values()])
            self.assertAllClose(init_line.get_ydata(), [init.mean()] * 2)
            self.assertIn(f"{kind} labels", ax.get_title(loc="left"))
            # Each variant's line is its smoothness at the LAST step (not at init), per conv.
            for line, variant in zip(data_lines(ax), study_figures.VARIANT_ORDER):
                values = np.asarray(self.results.training[kind][variant].smoothness)
                self.assertAllClose(line.get_ydata(), values[:, -1].mean(0))
                self.assertNotAllClose(line.get_ydata(), values[:, 0].mean(0))
                self.assertAllEqual(line.get_xdata(), np.arange(1, 9))
        self.assertEqual(figure.axes[0].get_title(loc="left")[:3], "(a)")

    def test_fig7(self):
        figure = study_figures.plot_fig7(self.results)
        self.assertLen(figure.axes, 1)
        self.assert_variant_lines(figure.axes[0], 5, seeds=3)
        values = np.asarray(
            self.results.training["random"]["avg_pool"].sensitivity["cosine"])
        self.assertAllClose(data_lines(figure.axes[0])[1].get_ydata(), values[:, -1].mean(0))
        for line, variant in zip(data_lines(figure.axes[0]), study_figures.VARIANT_ORDER):
            values = np.asarray(
                self.results.training["random"][variant].sensitivity["cosine"])
            self.assertAllClose(line.get_ydata(), values[:, -1].mean(0))
            self.assertNotAllClose(line.get_ydata(), values[:, 0].mean(0))

    def test_sensitivity_across_training(self):
        figure = study_figures.plot_sensitivity_across_training(self.results)
        self.assertLen(figure.axes, 5)
        for ax in figure.axes:
            lines = data_lines(ax)
            self.assertLen(lines, 3)
            self.assertLen(bands(ax), 2)  # First and last step only.
            self.assertEqual([line.get_label() for line in lines],
                             ["step 0", "step 50", "step 100"])
        for ax, variant in zip(figure.axes, study_figures.VARIANT_ORDER):
            values = np.asarray(self.results.training["real"][variant].sensitivity["cosine"])
            for step, line in enumerate(data_lines(ax)):
                self.assertAllClose(line.get_ydata(), values[:, step].mean(0))
            luminance = [np.dot(matplotlib.colors.to_rgb(line.get_color()),
                                [0.299, 0.587, 0.114]) for line in lines]
            self.assertAllEqual(np.diff(luminance) < 0, [True, True])
        self.assertEqual(figure.axes[0].get_title(), study_figures.VARIANT_LABELS["max_pool"])

    def test_relative_stability(self):
        figure = study_figures.plot_relative_stability(self.results)
        self.assertLen(figure.axes, 2)
        for ax, step in zip(figure.axes, (0, -1)):
            self.assertEqual(ax.get_yscale(), "log")
            self.assert_variant_lines(ax, 5, seeds=3)
            (one,) = reference_lines(ax)
            self.assertAllClose(one.get_ydata(), [1.0, 1.0])
            values = np.asarray(
                self.results.training["real"]["max_pool"].relative_stability)[:, step]
            self.assertAllClose(data_lines(ax)[0].get_ydata(), np.exp(np.log(values).mean(0)))

    @parameterized.parameters(sorted(study_figures.FIGURES))
    def test_saves_a_readable_png(self, name):
        figure = study_figures.FIGURES[name](self.results)
        path = os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "sub", f"{name}.png")
        self.assertEqual(study_figures.save(figure, path), path)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        pixels = mpimg.imread(path)
        self.assertEqual(pixels.ndim, 3)
        self.assertGreater(pixels.shape[0], 200)
        self.assertGreater(pixels.shape[1], 300)
        self.assertLess(pixels.min(), 0.5)  # Something is drawn.

    def test_registry(self):
        self.assertEqual(set(study_figures.FIGURES), {
            "fig3", "fig4", "fig5", "fig6", "fig7", "sensitivity_across_training",
            "relative_stability"})

    def test_variant_colours_warm_for_pooled_cool_for_the_rest(self):
        for variant, color in study_figures.VARIANT_COLORS.items():
            hue = matplotlib.colors.rgb_to_hsv(matplotlib.colors.to_rgb(color))[0] * 360
            if variant in grid_lib.POOLED:
                self.assertLess(hue, 60, variant)
            else:
                self.assertTrue(150 <= hue <= 290, (variant, hue))


class MissingDataTest(parameterized.TestCase, tf.test.TestCase):

    @parameterized.named_parameters(
        ("no_random", dict(kinds=("real",)), {"fig7"}, r"results\.training\['random'\]"),
        ("no_synthetic", dict(synthetic=False), {"fig5"}, r"results\.synthetic\b"),
        ("no_smooth_init", dict(smooth_init=False), {"fig4"}, r"results\.smooth_init\b"),
        ("no_real", dict(kinds=("random",)),
         {"fig3", "sensitivity_across_training", "relative_stability"},
         r"results\.training\['real'\]"),
    )
    def test_missing_section(self, kwargs, failing, message):
        results = study_fakes.fake_results(**kwargs)
        for name, function in study_figures.FIGURES.items():
            if name in failing:
                with self.assertRaisesRegex(ValueError, message):
                    function(results)
            else:
                self.assertIsInstance(function(results), Figure, name)

    def test_render_all_skips_figures_without_data(self):
        results = study_fakes.fake_results(kinds=("real",), synthetic=False)
        directory = os.path.join(self.get_temp_dir(), "render_all")
        written, skipped = study_figures.render_all(results, directory,
                                                    names=["fig4", "fig5", "fig7"])
        self.assertEqual(written, [os.path.join(directory, "fig4.png")])
        self.assertEqual(sorted(skipped), ["fig5", "fig7"])
        self.assertIn("results.synthetic", skipped["fig5"])
        self.assertEqual(os.listdir(directory), ["fig4.png"])

    def test_no_training_at_all(self):
        results = study_fakes.fake_results_json()
        del results["training"]
        results = results_lib.StudyResults.from_json(results)
        for name in ("fig3", "fig6", "fig7", "sensitivity_across_training",
                     "relative_stability"):
            with self.assertRaisesRegex(ValueError, "training"):
                study_figures.FIGURES[name](results)
        self.assertIsInstance(study_figures.plot_fig4(results), Figure)
        self.assertIsInstance(study_figures.plot_fig5(results), Figure)

    def test_fig6_real_only_has_one_panel(self):
        figure = study_figures.plot_fig6(study_fakes.fake_results(kinds=("real",)))
        self.assertLen(figure.axes, 1)
        self.assertLen(data_lines(figure.axes[0]), 5)

    def test_missing_conditions_are_skipped(self):
        results = study_fakes.fake_results_json(variants=("max_pool", "strided"))
        del results["smooth_init"]["sensitivity"]["0.5"]
        del results["synthetic"]["smoothness_final"]["3"]
        results["synthetic"]["accuracy"] = {}
        results["training"]["real"]["strided"]["relative_stability"] = []
        results["training"]["real"]["strided"]["sensitivity"]["euclidean"] = []
        results["smooth_init"]["sensitivity"] = {
            f"{float(k)}": v for k, v in results["smooth_init"]["sensitivity"].items()}
        results["title"] = ""
        results = results_lib.StudyResults.from_json(results)
        self.assertLen(data_lines(study_figures.plot_fig3(results).axes[0]), 2)
        self.assertLen(data_lines(study_figures.plot_fig3(results, "euclidean").axes[0]), 1)
        self.assertLen(data_lines(study_figures.plot_fig4(results).axes[0]), 3)  # "1.0" matches 1.
        self.assertLen(data_lines(study_figures.plot_fig5(results).axes[0]), 3)
        self.assertLen(data_lines(study_figures.plot_relative_stability(results).axes[1]), 1)
        self.assertLen(study_figures.plot_sensitivity_across_training(results).axes, 2)
        self.assertLen(
            study_figures.plot_sensitivity_across_training(results, "euclidean").axes, 1)

    def test_no_data_in_a_section_is_an_error(self):
        results = study_fakes.fake_results_json()
        results["synthetic"]["smoothness_final"] = {}
        with self.assertRaisesRegex(ValueError, "smoothness_final"):
            study_figures.plot_fig5(results_lib.StudyResults.from_json(results))
        for variant in results["training"]["real"].values():
            variant["relative_stability"] = []
        results = results_lib.StudyResults.from_json(results)
        with self.assertRaisesRegex(ValueError, "relative stability"):
            study_figures.plot_relative_stability(results)

    def test_ragged_lists_are_an_error(self):
        results = study_fakes.fake_results_json()
        results["training"]["real"]["max_pool"]["sensitivity"]["cosine"][1][0].pop()
        results = results_lib.StudyResults.from_json(results)
        with self.assertRaisesRegex(ValueError, "rectangular"):
            study_figures.plot_fig3(results)

    def test_input_is_not_modified(self):
        results = study_fakes.fake_results()
        before = copy.deepcopy(results)
        for function in study_figures.FIGURES.values():
            function(results)
        self.assertEqual(results, before)


class MultiDigitSweepAndStepsTest(tf.test.TestCase):
    """Sweeps with multi-digit values listed out of order (sigma 10, C 12) and four measurement
    steps: the figures order conditions by number and draw "after training" at the last step."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.results = study_fakes.fake_results(steps=(0, 40, 80, 120), sigmas=(10, 2, 0.5, 0),
                                               strengths=(12, 4, 2, 1))

    def test_fig4_orders_sigmas_by_number(self):
        lines = data_lines(study_figures.plot_fig4(self.results).axes[0])
        self.assertEqual([line.get_label().split("  ")[0] for line in lines],
                         ["\u03c3 = 0", "\u03c3 = 0.5", "\u03c3 = 2", "\u03c3 = 10"])
        for line, sigma in zip(lines, ("0", "0.5", "2", "10")):
            self.assertAllClose(line.get_ydata(), np.mean(
                self.results.smooth_init.sensitivity[sigma], axis=0))
        luminance = [np.dot(matplotlib.colors.to_rgb(line.get_color()), [0.299, 0.587, 0.114])
                     for line in lines]
        self.assertAllEqual(np.diff(luminance) < 0, [True] * 3)  # darkest: sigma 10

    def test_fig5_orders_strengths_by_number(self):
        samples = {c: np.full((2, 32, 32), c / 12) for c in (12, 4, 2, 1)}
        figure = study_figures.plot_fig5(self.results, sample_images=samples)
        lines = data_lines(layer_axes(figure)[-1])
        self.assertEqual([line.get_label().split("  ")[0] for line in lines],
                         ["C = 1", "C = 2", "C = 4", "C = 12"])
        for line, c in zip(lines, ("1", "2", "4", "12")):
            self.assertAllClose(line.get_ydata(), np.mean(
                self.results.synthetic.smoothness_final[c], axis=0))
        rows = [ax.get_ylabel() for ax in figure.axes if ax.get_ylabel().startswith("C = ")]
        self.assertEqual(rows, ["C = 1", "C = 2", "C = 4", "C = 12"])

    def test_after_training_is_the_last_of_four_steps(self):
        figure = study_figures.plot_fig3(self.results)
        self.assertIn("after training (step 120)", figure.axes[1].get_title(loc="left"))
        values = np.asarray(self.results.training["real"]["max_pool"].sensitivity["cosine"])
        self.assertAllClose(data_lines(figure.axes[1])[0].get_ydata(), values[:, 3].mean(0))
        self.assertNotAllClose(data_lines(figure.axes[1])[0].get_ydata(), values[:, 1].mean(0))
        for ax, kind in zip(study_figures.plot_fig6(self.results).axes, ("real", "random")):
            for line, variant in zip(data_lines(ax), study_figures.VARIANT_ORDER):
                values = np.asarray(self.results.training[kind][variant].smoothness)
                self.assertAllClose(line.get_ydata(), values[:, 3].mean(0))
        across = study_figures.plot_sensitivity_across_training(self.results)
        self.assertEqual([line.get_label() for line in data_lines(across.axes[0])],
                         ["step 0", "step 40", "step 80", "step 120"])


if __name__ == "__main__":
    tf.test.main()
