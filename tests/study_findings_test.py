"""Tests of the findings' criteria in `experiments.study.findings` on hand-made results.

Each finding is judged on results built to agree with the paper, to contradict it (the
opposite direction, beyond seed noise) and to leave it not shown (the right direction within
seed noise), so that a criterion that always (or never) agrees fails here. Fixtures with more
than two measurement steps (intermediate steps unlike the last) and multi-digit sweep values
(sigma 10, C 12, listed out of order) check that "after training" is the last step and that
sweeps are ordered by number, not by text.
"""

from absl.testing import parameterized
import numpy as np
import scipy.stats
import tensorflow as tf

from experiments.study import findings
from experiments.study import grid as grid_lib
from experiments.study import results as results_lib

SEEDS = 3


def _offsets(noise, seeds=SEEDS):
    """Per-seed offsets -noise, 0, +noise (sample std = noise for 3 seeds)."""
    return noise * (np.arange(seeds) - (seeds - 1) / 2)


def _results(**groups):
    """StudyResults of the JSON objects of `groups` (training=..., smooth_init=..., ...)."""
    return results_lib.StudyResults.from_json({"title": "t", **groups})


def _entry(init_last=0.6, final_last=0.1, smooth_init=1.85, smooth_final=1.7, slope=0.02,
           noise=0.0, seeds=SEEDS, layers=4, convs=3, rotate=0, steps=(0, 10),
           train_accuracy=1.0, first_seed=0):
    """The JSON object of ConditionCurves: last-layer sensitivity init_last -> final_last,
    smoothness smooth_init -> smooth_final + slope * conv index; every seed shifted by its offset
    (the offsets rotated by `rotate` seeds, so that entries with different `rotate` differ per
    seed). Steps between the first and the last keep the sensitivity at init and a rougher
    smoothness (init + 0.5), so that reading one as "after training" changes the verdicts."""
    sensitivity, smoothness = [], []
    middle, last = max(len(steps) - 2, 0), int(len(steps) > 1)  # an init-only entry: no last
    for offset in np.roll(_offsets(noise, seeds), rotate):
        init = list(np.linspace(0.1, init_last + offset, layers))
        sensitivity.append([init] * (middle + 1)
                           + [list(np.linspace(0.1, final_last + offset, layers))] * last)
        smoothness.append([[smooth_init + offset] * convs]
                          + [[smooth_init + 0.5 + offset] * convs] * middle
                          + [[smooth_final + slope * c + offset for c in range(convs)]] * last)
    return {
        "seeds": list(range(first_seed, first_seed + seeds)),
        "layers": [f"l{i}" for i in range(layers)],
        "conv_layers": [f"c{i}" for i in range(convs)], "steps": list(steps),
        "sensitivity": {"cosine": sensitivity, "euclidean": sensitivity},
        "relative_stability": [[[1.0] * layers] * len(steps)] * seeds,
        "smoothness": smoothness, "accuracy": [0.9] * seeds,
        "train_accuracy": [train_accuracy] * seeds,
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


class EffectTest(parameterized.TestCase, tf.test.TestCase):

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

    @parameterized.named_parameters(
        ("shown", [2.0, 3.0, 4.0], True, False),  # 3 > 2 x 0.58
        ("within_noise", [-1.0, 0.0, 2.5], False, False),  # |0.5| < 2 x 1.04
        ("opposite", [-2.0, -3.0, -4.0], False, True))
    def test_shown_and_contradicted(self, values, shown, contradicted):
        effect = findings.mean_effect("x", values)
        self.assertEqual((effect.shown, effect.contradicted), (shown, contradicted))

    def test_detectable_effect_and_power(self):
        effect = findings.Effect("x", 0.3, 0.1, 4)
        self.assertAllClose(effect.detectable, 0.28)
        # z = 3: P(estimate > 2 SE) = Phi(1), from scipy's normal distribution.
        self.assertAllClose(effect.power, scipy.stats.norm.cdf(1.0))
        self.assertAllClose(findings.Effect("x", 0.2, 0.1, 4).power, 0.5)

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
        ("pooling_higher", dict(pooled_init=0.7, other_init=0.6, rotate=True),
         findings.CONTRADICTS),
        ("gap_within_noise", dict(pooled_init=0.55, other_init=0.6, noise=0.1, rotate=True),
         findings.NOT_SHOWN))
    def test_finding_1_does_not_agree(self, kwargs, verdict):
        finding = findings.finding_1(_results(training={"real": _training(**kwargs)}))
        self.assertEqual(finding.verdict, verdict)
        self.assertIn("80% probability", finding.measured)

    def test_finding_1_one_pooled_variant_above_one_other_contradicts(self):
        real = _training()
        real["strided"] = _entry(0.19, noise=0.01)
        self.assertEqual(findings.finding_1(_results(training={"real": real})).verdict,
                         findings.CONTRADICTS)

    def test_finding_1_counts_the_init_only_seeds(self):
        # Real-label runs at seeds 0-2 and init-only runs at seeds 3-8: gaps 0.4 at seeds 0-2,
        # 0.4 +- 0.2 (rotated per variant) at seeds 3-8, so every pair has 9 seeds.
        init = {v: _entry(0.2 if v in grid_lib.POOLED else 0.6, seeds=6, first_seed=3,
                          noise=0.1, rotate=i, steps=(0,))
                for i, v in enumerate(grid_lib.POOLED + grid_lib.NOT_POOLED)}
        finding = findings.finding_1(_results(training={"real": _training()}, init=init))
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertEqual({e.count for e in finding.effects}, {9})
        # Without them, the 3 real-label seeds alone.
        alone = findings.finding_1(_results(training={"real": _training()}))
        self.assertEqual({e.count for e in alone.effects}, {3})

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

    def test_finding_2_contradicts_when_variants_stay_apart(self):
        real = _training()
        real["strided"] = _entry(0.6, 0.4, noise=0.01)  # spread 0.3 of 0.4 at init
        finding = findings.finding_2(_results(training={"real": real}))
        self.assertEqual(finding.verdict, findings.CONTRADICTS)
        self.assertAllClose(finding.headline.value, 0.5 - 0.3 / 0.4)

    def test_findings_2_and_5_read_the_last_of_several_steps(self):
        # Four measurement steps; at the middle ones the variants are still apart and the
        # filters rougher than at init: only the last step agrees with the paper.
        steps = (0, 50, 100, 150)
        random = {v: _entry(smooth_final=1.5 + 0.1 * i, noise=0.01, steps=steps)
                  for i, v in enumerate(grid_lib.POOLED + grid_lib.NOT_POOLED)}
        results = _results(training={"real": _training(steps=steps), "random": random})
        self.assertEqual(findings.finding_2(results).verdict, findings.AGREES)
        self.assertAllClose(findings.finding_2(results).headline.value, 0.5)
        finding = findings.finding_5(results)
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertAllClose(finding.effects[0].value, 1.85 - 1.72)  # init - last, 3 convs

    def test_finding_3_agrees_when_every_layer_is_lower(self):
        results = _smooth_init([0.1, 0.5, 0.6], [0.1, 0.3, 0.4], noise=0.01, shared=0.2)
        finding = findings.finding_3(results)
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertLen(finding.effects, 2)  # layers past the input
        self.assertAllClose([e.value for e in finding.effects], [0.2, 0.2])

    @parameterized.named_parameters(
        ("one_layer_higher", [0.1, 0.3, 0.7], 0.01, findings.CONTRADICTS),
        ("within_noise", [0.1, 0.48, 0.58], 0.05, findings.NOT_SHOWN))
    def test_finding_3_does_not_agree(self, high, noise, verdict):
        results = _smooth_init([0.1, 0.5, 0.6], high, noise=noise)
        self.assertEqual(findings.finding_3(results).verdict, verdict)

    def test_finding_3_orders_sigmas_by_number(self):
        # Sigmas 0, 2, 10, listed 10, 2, 0: sigma 2 is rougher than sigma 0 at layer "b"
        # (text order would compare 0 with 2 and contradict), sigma 10 is smoother everywhere.
        sensitivity = {"10": [[0.1, 0.2, 0.3]] * 3, "2": [[0.1, 0.5, 0.9]] * 3,
                       "0": [[0.1, 0.4, 0.6]] * 3}
        results = _results(smooth_init={
            "sigmas": [10.0, 2.0, 0.0], "layers": ["input", "a", "b"],
            "seeds": {k: [0, 1, 2] for k in sensitivity}, "sensitivity": sensitivity,
            "smoothness": {k: [[1.0]] * 3 for k in sensitivity}})
        finding = findings.finding_3(results)
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertAllClose([e.value for e in finding.effects], [0.2, 0.3])
        self.assertIn("sigma = 0's sensitivity minus sigma = 10's", finding.criterion)
        self.assertIn("sigma 0 0.600, sigma 2 0.900, sigma 10 0.300", finding.measured)

    def test_finding_4_agrees_when_larger_c_is_smoother(self):
        finding = findings.finding_4(_synthetic((1.8, 1.7, 1.6), noise=0.01))
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertAllClose(finding.headline.value, 0.2)
        self.assertIn("C=1 - C=3 +0.2000", finding.measured)

    @parameterized.named_parameters(
        ("reversed", (1.6, 1.7, 1.8), 0.01, findings.CONTRADICTS),
        ("within_noise", (1.72, 1.71, 1.7), 0.1, findings.NOT_SHOWN))
    def test_finding_4_does_not_agree(self, means, noise, verdict):
        finding = findings.finding_4(_synthetic(means, noise=noise))
        self.assertEqual(finding.verdict, verdict)

    def test_finding_4_orders_strengths_by_number(self):
        # C = 1, 4, 12 listed 12, 4, 1: C = 4 is rougher than C = 1 (text order would take
        # "4" as the largest and contradict), C = 12 the smoothest.
        final = {"12": [[1.5, 1.5]] * 3, "4": [[1.9, 1.9]] * 3, "1": [[1.8, 1.8]] * 3}
        results = _results(synthetic={
            "strengths": [12.0, 4.0, 1.0], "conv_layers": ["c1", "c2"],
            "seeds": {k: [0, 1, 2] for k in final},
            "smoothness_init": {k: [[1.86] * 2] * 3 for k in final},
            "smoothness_final": final, "accuracy": {k: [0.9] * 3 for k in final}})
        finding = findings.finding_4(results)
        self.assertEqual(finding.verdict, findings.AGREES)
        self.assertAllClose(finding.headline.value, 0.3)
        self.assertIn("C=1 1.800 ± 0.000, C=4 1.900 ± 0.000, C=12 1.500 ± 0.000",
                      finding.measured)

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
        ("rougher_than_init", dict(smooth_final=1.9), findings.CONTRADICTS),
        ("smoother_with_depth", dict(slope=-0.02), findings.CONTRADICTS),
        ("random_spread_not_larger", dict(random_spread=0.0), findings.NOT_SHOWN))
    def test_finding_5_does_not_agree(self, change, verdict):
        random_spread = change.pop("random_spread", 0.1)
        random = {v: _entry(smooth_final=1.5 + random_spread * i, noise=0.01)
                  for i, v in enumerate(grid_lib.POOLED + grid_lib.NOT_POOLED)}
        results = _results(training={"real": _training(**change), "random": random})
        self.assertEqual(findings.finding_5(results).verdict, verdict)

    @parameterized.named_parameters(("one_run_below", [1.0, 0.89, 1.0]),
                                    ("not_recorded", [1.0, float("nan"), 1.0]))
    def test_finding_5_judges_random_labels_only_when_every_run_fits(self, fit):
        random = {v: _entry(smooth_final=1.5 + 0.1 * i, noise=0.01)
                  for i, v in enumerate(grid_lib.POOLED + grid_lib.NOT_POOLED)}
        random["strided"]["train_accuracy"] = fit
        finding = findings.finding_5(_results(training={"real": _training(),
                                                        "random": random}))
        # The other parts agree, the spread is large: still only "not shown".
        self.assertEqual(finding.verdict, findings.NOT_SHOWN)
        self.assertLen(finding.effects, 5 + 1)
        self.assertIn("fitting their labels (train accuracy >= 0.9): 14 of 15", finding.measured)
        self.assertIn("1 of 15 random-label runs did not fit their labels", finding.measured)

    def test_missing_sections_are_not_measured(self):
        judged = findings.judge(results_lib.StudyResults("empty"))
        self.assertEqual({f.verdict for f in judged}, {findings.NOT_MEASURED})


if __name__ == "__main__":
    tf.test.main()
