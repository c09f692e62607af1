"""Tests of `deform_tf.figures.profile`: panels, undefined values as gaps, layer names."""

import numpy as np
import tensorflow as tf

from deform_tf.figures import profile as profile_figure


def _rows(model, names, cosine):
    return [{"model": model, "layer": name, "index": k, "relative_depth": k / (len(names) - 1),
             "sensitivity_cosine": c, "sensitivity_euclidean": c, "relative_stability": c}
            for k, (name, c) in enumerate(zip(names, cosine))]


class PlotProfilesTest(tf.test.TestCase):

    def test_one_model_names_its_points_on_the_top_axis_and_draws_r_f_one(self):
        figure = profile_figure.plot_profiles(_rows("a", ["input", "conv", "logits"],
                                                    [0.1, None, 0.3]))
        axes = figure.axes[:3]
        # The undefined value is a gap (NaN), the others as given.
        ydata = axes[0].get_lines()[0].get_ydata()
        self.assertAllClose(ydata[[0, 2]], [0.1, 0.3])
        self.assertTrue(np.isnan(ydata[1]))
        top = axes[0].child_axes  # the secondary x axis
        self.assertLen(top, 1)
        self.assertEqual([t.get_text() for t in top[0].get_xticklabels()],
                         ["input", "conv", "logits"])
        self.assertIn("lower = more stable", axes[2].get_ylabel())
        self.assertIn(1.0, [line.get_ydata()[0] for line in axes[2].get_lines()[1:]])

    def test_models_with_different_points_are_annotated_when_they_fit(self):
        rows = _rows("a", ["input", "x", "y"], [0.1, 0.2, 0.3]) + _rows(
            "b", ["input", "z"], [0.1, 0.4])
        texts = [t.get_text() for t in profile_figure.plot_profiles(rows).axes[0].texts]
        self.assertCountEqual(texts, ["input", "x", "y", "input", "z"])
        many = sum((_rows(m, [f"l{k}" for k in range(20)], np.linspace(0.1, 0.5, 20))
                    for m in ("a", "b")), [])
        many[-1]["layer"] = "other"
        self.assertEmpty(profile_figure.plot_profiles(many).axes[0].texts)


if __name__ == "__main__":
    tf.test.main()
