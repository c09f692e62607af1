"""Tests of the findings' criteria in `launch.study.findings` on hand-made results.

Each finding is judged on results built to agree with the paper and on results built to
disagree (the opposite direction, or the right direction within seed noise), so that a criterion
that always (or never) agrees fails here.
"""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from launch.study import findings
from launch.study import grid as grid_lib
from launch.study import results as results_lib

SEEDS = 3


def _offsets(noise, seeds=SEEDS):
    """Per-seed offsets -noise, 0, +noise (sample std = noise for 3 seeds)."""
    return noise * (np.arange(seeds) - (seeds - 1) / 2)


def _results(**groups):
    """StudyResults of the JSON objects of `groups` (training=..., smooth_init=..., ...)."""
    return results_lib.StudyResults.from_json({"title": "t", **groups})


def _entry(init_last=0.6, final_last=0.1, smooth_init=1.85, smooth_final=1.7, slope=0.02,
           noise=0.0, seeds=SEEDS, layers=4, convs=3, rotate=0):
    """The JSON object of ConditionCurves: last-layer sensitivity init_last -> final_last,
    smoothness smooth_init -> smooth_final + slope * conv index; every seed shifted by its offset
    (the offsets rotated by `rotate` seeds, so that entries with different `rotate` differ per
    seed)."""
    sensitivity, smoothness = [], []
    for offset in np.roll(_offsets(noise, seeds), rotate):
        sensitivity.append([list(np.linspace(0.1, init_last + offset, layers)),
                            list(np.linspace(0.1, final_last + offset, layers))])
        smoothness.append([[smooth_init + offset] * convs,
                           [smooth_final + slope * c + offset for c in range(convs)]])
    return {
        "seeds": list(range(seeds)), "layers": [f"l{i}" for i in range(layers)],
        "conv_layers": [f"c{i}" for i in range(convs)], "steps": [0, 10],
        "sensitivity": {"cosine": sensitivity, "euclidean": sensitivity},
        "relative_stability": [[[1.0] * layers] * 2] * seeds,
        "smoothness": smoothness, "accuracy": [0.9] * seeds,
    }


def _training(pooled_init=0.2, other_init=0.6, final=0.1, noise=0.01, rotate=False, **kwargs):
    """The five variants; with `rotate`, each variant's seed offsets are rotated differently."""
    return {v: _entry(pooled_init if v in grid_lib.POOLED else other_init, final, noise=noise,
                      rotate=i if rotate else 0, **kwargs)
            for i, v in enumerate(grid_lib.POOLED + grid_lib.NOT_POOLED)}


def _smooth_init(low, high, noise=0.0, shared=0.0):
    """Sensitivity per layer at sigma 0 and 2: seed offsets `shared` (common to both sigmas,
    as from the same filters) and `noise` (only at sigma 2)."""
    def rows(values, own):
        return [list(np.add(values, s + o)) for s, o in zip(_offsets(shared), _offsets(own))]
    return _results(smooth_init={
        "sigmas": [0.0, 2.0], "layers": ["input", "a", "b"],
        "seeds": {"0": [0, 1, 2], "2": [0, 1, 2]},
        "sensitivity": {"0": rows(low, 0.0), "2": rows(high, noise)},
        "smoothness": {"0": [[1.85]] * 3, "2": [[1.7]] * 3}})


def _synthetic(means, noise=0.0, shared=0.0, seeds=((0, 1, 2),) * 3):
    """Trained smoothness (2 conv layers) per C = 1, 2, 3; per-seed offsets `shared` (common
    to every C, as from the same initial filters) plus `noise` offsets rotated with C."""
    strengths = ("1", "2", "3")
    final = {}
    for i, (key, mean) in enumerate(zip(strengths, means)):
        own = np.roll(_offsets(noise), i)
        final[key] = [[mean + s + o] * 2 for s, o in zip(_offsets(shared), own)]
    final = {k: [v[s] for s in seed_ids] for (k, v), seed_ids in zip(final.items(), seeds)}
    return _results(synthetic={
        "strengths": [1.0, 2.0, 3.0], "conv_layers": ["c1", "c2"],
        "seeds": {k: list(s) for k, s in zip(strengths, seeds)},
        "smoothness_init": {k: [[1.86] * 2] * len(s) for k, s in zip(strengths, seeds)},
        "smoothness_final": final,
        "accuracy": {k: [0.9] * len(s) for k, s in zip(strengths, seeds)}})


class EffectTest(tf.test.TestCase):

    def test_mean_effect_is_mean_and_standard_error(self):
        effect = findings.mean_effect("x", [1.0, 2.0, 6.0])
        # Mean 3; deviations -2, -1, 3: sample variance 14 / 2 = 7; SE sqrt(7 / 3).
        self.assertAllClose([effect.value, effect.se], [3.0, np.sqrt(7 / 3)])
        self.assertEqual(effect.count, 3)
        self.assertFalse(effect.shown)  # 3 < 2 * 1.53
        self.assertTrue(findings.mean_effect("x", [2.0, 3.0, 4.0]).shown)  # 3 > 2 * 0.58

    def test_paired_effect_uses_the_seeds_both_have(self):
        effect = findings.paired_effect("b - a", {0: 4.0, 1: 6.0, 5: 9.0}, {1: 2.0, 0: 1.0, 2: 7.0})
        # Seeds 0 and 1: differences 3 and 4.
        self.assertAllClose([effect.value, effect.se, effect.count], [3.5, 0.5, 2])

    def test_one_seed_has_no_standard_error(self):
        effect = findings.mean_effect("x", [0.5])
        self.assertTrue(np.isnan(effect.se))
        self.assertFalse(effect.shown)

    def test_text_states_value_error_and_seeds(self):
        self.assertEqual(str(findings.mean_effect("x", [1.0, 2.0, 6.0])),
                         "x +3.0000 ± 1.5275 (SE, 3 seeds)")


class FindingsTest(parameterized.TestCase, tf.test.TestCase):

    def test_finding_1_agrees_when_pooling_is_lower(self):
        finding = findings.finding_1(_results(training={"real": _training(rotate=True)}))
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertLen(finding.effects, 6)  # 2 pooled x 3 non-pooled pairs
        self.assertAllClose(finding.headline.value, 0.4)
        self.assertIn("max_pool 0.200 ± 0.010", finding.measured)

    def test_finding_1_compares_seed_by_seed(self):
        # Seeds differ by +-0.3 in every variant alike (as from shared filters): per-seed
        # differences still show a gap of 0.1.
        finding = findings.finding_1(_results(training={"real": _training(0.5, 0.6, noise=0.3)}))
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertAllClose([finding.headline.value, finding.headline.se], [0.1, 0.0])

    @parameterized.named_parameters(
        ("pooling_higher", dict(pooled_init=0.7, other_init=0.6, rotate=True)),
        ("gap_within_noise", dict(pooled_init=0.55, other_init=0.6, noise=0.1, rotate=True)))
    def test_finding_1_disagrees(self, kwargs):
        finding = findings.finding_1(_results(training={"real": _training(**kwargs)}))
        self.assertEqual(finding.verdict, findings.DISAGREES)
        self.assertIn("80% probability", finding.measured)

    def test_finding_1_one_pooled_variant_above_one_other_disagrees(self):
        real = _training()
        real["strided"] = _entry(0.19, noise=0.01)
        self.assertEqual(findings.finding_1(_results(training={"real": real})).verdict,
                         findings.DISAGREES)

    def test_finding_1_one_seed_is_undecided(self):
        real = {v: _entry(0.2 if v in grid_lib.POOLED else 0.6, seeds=1)
                for v in grid_lib.POOLED + grid_lib.NOT_POOLED}
        self.assertEqual(findings.finding_1(_results(training={"real": real})).verdict,
                         findings.UNDECIDED)

    def test_finding_2_agrees_when_the_spread_shrinks(self):
        finding = findings.finding_2(_results(training={"real": _training(final=0.1)}))
        self.assertEqual(finding.verdict, findings.AGREES)
        # Every variant ends at 0.1 + the same seed offset: spread ratio 0.
        self.assertAllClose(finding.headline.value, 0.5)

    def test_finding_2_disagrees_when_variants_stay_apart(self):
        real = _training()
        real["strided"] = _entry(0.6, 0.4, noise=0.01)  # spread 0.3 of 0.4 at init
        finding = findings.finding_2(_results(training={"real": real}))
        self.assertEqual(finding.verdict, findings.DISAGREES)
        self.assertAllClose(finding.headline.value, 0.5 - 0.3 / 0.4)

    def test_finding_3_agrees_when_every_layer_is_lower(self):
        results = _smooth_init([0.1, 0.5, 0.6], [0.1, 0.3, 0.4], noise=0.01, shared=0.2)
        finding = findings.finding_3(results)
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertLen(finding.effects, 2)  # layers past the input
        self.assertAllClose([e.value for e in finding.effects], [0.2, 0.2])

    @parameterized.named_parameters(
        ("one_layer_higher", [0.1, 0.3, 0.7], 0.01),
        ("within_noise", [0.1, 0.48, 0.58], 0.05))
    def test_finding_3_disagrees(self, high, noise):
        results = _smooth_init([0.1, 0.5, 0.6], high, noise=noise)
        self.assertEqual(findings.finding_3(results).verdict, findings.DISAGREES)

    def test_finding_4_agrees_when_larger_c_is_smoother(self):
        finding = findings.finding_4(_synthetic((1.8, 1.7, 1.6), noise=0.01))
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertAllClose(finding.headline.value, 0.2)
        self.assertIn("C=1 - C=3 +0.2000", finding.measured)

    @parameterized.named_parameters(
        ("reversed", (1.6, 1.7, 1.8), 0.01),
        ("within_noise", (1.72, 1.71, 1.7), 0.1))
    def test_finding_4_disagrees(self, means, noise):
        finding = findings.finding_4(_synthetic(means, noise=noise))
        self.assertEqual(finding.verdict, findings.DISAGREES)

    def test_finding_4_compares_seed_by_seed(self):
        # Seeds differ by +-0.3 in every C (same initial filters), much more than the effect:
        # per-seed differences still show it; unpaired means would not.
        finding = findings.finding_4(_synthetic((1.8, 1.7, 1.75), noise=0.005, shared=0.3))
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertAllClose(finding.headline.value, 0.05)

    def test_finding_4_pairs_by_seed_number(self):
        # C = 3 has seeds 2, 0 only, in that order: seed 0 of C = 1 pairs with seed 0 of C = 3.
        results = _synthetic((1.8, 1.7, 1.6), shared=0.3, seeds=((0, 1, 2), (0, 1, 2), (2, 0)))
        finding = findings.finding_4(results)
        self.assertEqual(finding.headline.count, 2)
        self.assertAllClose([finding.headline.value, finding.headline.se], [0.2, 0.0])

    def test_finding_5_agrees_on_paper_like_numbers(self):
        random = {v: _entry(smooth_final=1.5 + 0.1 * i, noise=0.01)
                  for i, v in enumerate(grid_lib.POOLED + grid_lib.NOT_POOLED)}
        results = _results(training={"real": _training(), "random": random})
        finding = findings.finding_5(results)
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertLen(finding.effects, 5 + 2)  # per variant, depth slope, spread
        self.assertAllClose(finding.effects[-1].value, 0.4)  # random spread 0.4, real 0

    @parameterized.named_parameters(
        ("rougher_than_init", dict(smooth_final=1.9)),
        ("smoother_with_depth", dict(slope=-0.02)),
        ("random_spread_not_larger", dict(random_spread=0.0)))
    def test_finding_5_disagrees(self, change):
        random_spread = change.pop("random_spread", 0.1)
        random = {v: _entry(smooth_final=1.5 + random_spread * i, noise=0.01)
                  for i, v in enumerate(grid_lib.POOLED + grid_lib.NOT_POOLED)}
        results = _results(training={"real": _training(**change), "random": random})
        self.assertEqual(findings.finding_5(results).verdict, findings.DISAGREES)

    def test_missing_sections_are_not_measured(self):
        judged = findings.judge(results_lib.StudyResults("empty"))
        self.assertEqual({f.verdict for f in judged}, {findings.NOT_MEASURED})


if __name__ == "__main__":
    tf.test.main()
