"""Tests of `experiments.stability.analysis`: the fit, its bootstrap intervals, the Spearman
correlations and the verdicts on Petrini's claims (a)-(e).

The fit is checked on synthetic results with a known slope and prefactor (scipy's linregress
and spearmanr are the oracles of the point estimates); each verdict on hand-made results built
to agree with the claim, to contradict it, and to leave it not shown (too few architectures or
the relation lost in seed noise), so that a criterion that always (or never) agrees fails.
"""

from absl.testing import parameterized
import numpy as np
import scipy.stats
import tensorflow as tf

from experiments.stability import analysis

RESAMPLES = 400  # enough for the intervals' checks, fast


def _record(model, kind, seed, stage, error, r_f, d_f, depth=3):
    """One results.json record with `depth` points; the last (the output) has D_f = d_f,
    R_f = r_f, G_f = d_f / r_f; both deformations get the same values."""
    points = [{"name": f"p{k}", "relative_depth": k / (depth - 1), "D_f": 0.1, "G_f": 0.1,
               "R_f": 1.0} for k in range(depth - 1)]
    points.append({"name": "logits", "relative_depth": 1.0, "D_f": d_f, "G_f": d_f / r_f,
                   "R_f": r_f})
    return {"model": model, "kind": kind, "seed": seed, "stage": stage,
            "test_error": error if stage == "trained" else None,
            "deformations": {"diffeo": {"points": points}, "tps": {"points": points}}}


def _study(errors, r_trained, d_trained=None, r_init=None, kinds=None, noise=0.0, seeds=3,
           rng_seed=0):
    """Records of len(errors) architectures; per seed the error, R_f (init and trained) and D_f
    are multiplied by exp(noise * standard normal) (log-normal seed noise)."""
    rng = np.random.default_rng(rng_seed)
    n = len(errors)
    d_trained = d_trained if d_trained is not None else [0.1] * n
    r_init = r_init if r_init is not None else [1.0] * n
    kinds = kinds or ["cnn"] * n
    records = []
    for k in range(n):
        for seed in range(seeds):
            jitter = np.exp(noise * rng.standard_normal(4))
            records.append(_record(f"m{k}", kinds[k], seed, "init", None,
                                   r_init[k] * jitter[3], 0.5))
            records.append(_record(f"m{k}", kinds[k], seed, "trained", errors[k] * jitter[0],
                                   r_trained[k] * jitter[1], d_trained[k] * jitter[2]))
    return records


def _verdicts(records, dataset="cifar10"):
    result = analysis.analyse(records, dataset, resamples=RESAMPLES, seed=1)
    return result, {v.claim: v.verdict for v in result.verdicts}


class StatisticsTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(([3.0, 1.0, 2.0, 2.0, 5.0],), ([1.0, 1.0, 1.0],),
                              ([0.5, -2.0, 7.0, 0.5, 0.5, 3.0],))
    def test_ranks_match_scipy(self, values):
        self.assertAllClose(analysis.ranks(values), scipy.stats.rankdata(values) - 1)

    def test_spearman_matches_scipy(self):
        rng = np.random.default_rng(3)
        x, y = rng.normal(size=9), rng.normal(size=9)
        y[2] = y[5]  # a tie
        self.assertAllClose(analysis.spearman(x, y), scipy.stats.spearmanr(x, y).statistic)

    def test_t_quantiles_match_scipy(self):
        for df in (*range(1, 40), 60, 200, 10**4):
            self.assertAllClose(analysis.t_quantile(df), scipy.stats.t.ppf(0.975, df),
                                rtol=5e-4, msg=f"df={df}")

    @parameterized.parameters(2, 3, 7)
    def test_seed_interval_matches_scipy(self, n):
        values = np.random.default_rng(n).normal(0.3, 0.2, n)
        low, high = scipy.stats.t.interval(0.95, n - 1, loc=values.mean(),
                                           scale=scipy.stats.sem(values))
        interval = analysis.seed_interval("x", values)
        self.assertAllClose([interval.low, interval.value, interval.high],
                            [low, values.mean(), high], rtol=1e-3)
        self.assertTrue(np.isnan(analysis.seed_interval("x", values[:1]).low))

    def test_spearman_undefined(self):
        self.assertTrue(np.isnan(analysis.spearman([1, 2], [3, 4])))
        self.assertTrue(np.isnan(analysis.spearman([1, 1, 1], [3, 4, 5])))


class FitTest(tf.test.TestCase):

    def _synthetic(self, noise):
        r = np.logspace(-2.5, 0, 12)
        return _study(list(0.2 * r ** 0.5), list(r), noise=noise, seeds=3, rng_seed=5)

    def test_recovers_known_slope_and_prefactor_exactly(self):
        result = analysis.analyse(self._synthetic(0.0), "cifar10", resamples=RESAMPLES)
        self.assertAllClose(result.fit["slope"].value, 0.5)
        self.assertAllClose(result.prefactor[0], 0.2)
        # Without noise every resample lies on the line: a degenerate interval at the truth.
        self.assertAllClose([result.fit["slope"].low, result.fit["slope"].high], [0.5, 0.5])

    def test_noisy_slope_within_interval_and_point_estimate_matches_scipy(self):
        records = self._synthetic(0.3)
        result = analysis.analyse(records, "cifar10", resamples=RESAMPLES)
        slope = result.fit["slope"]
        self.assertTrue(slope.contains(0.5), str(slope))
        self.assertGreater(slope.high - slope.low, 0.01)  # noise widens it
        archs = analysis.architectures(records)
        x = np.log10([np.mean(a.values["trained"]["R_f"]) for a in archs])
        y = np.log10([np.mean(a.error) for a in archs])
        oracle = scipy.stats.linregress(x, y)
        self.assertAllClose(slope.value, oracle.slope)
        self.assertAllClose(result.fit["log10_prefactor"].value, oracle.intercept)
        errors = [np.mean(a.error) for a in archs]
        for measure in analysis.MEASURES:
            values = [np.mean(a.values["trained"][measure]) for a in archs]
            self.assertAllClose(result.spearman[measure].value,
                                scipy.stats.spearmanr(errors, values).statistic)

    def test_bootstrap_is_seeded(self):
        records = self._synthetic(0.3)
        first = analysis.analyse(records, "cifar10", resamples=100, seed=4).fit["slope"]
        again = analysis.analyse(records, "cifar10", resamples=100, seed=4).fit["slope"]
        other = analysis.analyse(records, "cifar10", resamples=100, seed=5).fit["slope"]
        self.assertEqual(first, again)
        self.assertNotEqual(first.low, other.low)

    def test_seeds_resampled_together(self):
        # Per-seed init and trained values move together: the fall is the same at every seed,
        # so resampling seeds jointly gives a zero-width interval of the CNN fall.
        records = []
        for seed, scale in enumerate((1.0, 3.0, 0.3)):
            for k in range(4):
                records.append(_record(f"m{k}", "cnn", seed, "init", None, scale, 0.5))
                records.append(_record(f"m{k}", "cnn", seed, "trained", 0.1 * (k + 1),
                                       scale / 10, 0.1))
        fall = analysis.analyse(records, "cifar10", resamples=RESAMPLES).fall["CNN fall"]
        self.assertAllClose([fall.value, fall.low, fall.high], [1.0, 1.0, 1.0])


class VerdictTest(tf.test.TestCase):

    def test_all_agree(self):
        r = np.logspace(-2, -0.3, 8)
        kinds = ["cnn"] * 6 + ["fully_connected"] * 2
        r_trained = list(r[:6]) + [1.0, 1.2]
        errors = list(0.2 * np.array(r_trained) ** 0.5)
        d = list(np.linspace(0.3, 0.1, 8))  # D_f falls as the error rises
        _, verdicts = _verdicts(_study(errors, r_trained, d, kinds=kinds, noise=0.02))
        self.assertEqual(verdicts, {k: analysis.AGREES for k in "abcde"})

    def test_all_contradict(self):
        kinds = ["cnn"] * 6 + ["fully_connected"] * 2
        r_trained = list(np.logspace(1.1, 2, 8))  # R_f rises during training...
        errors = list(0.5 * np.array(r_trained) ** -0.5)  # ...and the error falls with it
        d = list(np.array(errors) * 3)  # D_f tracks the error perfectly
        r_init = [8.0] * 8  # far from 1
        _, verdicts = _verdicts(_study(errors, r_trained, d, r_init=r_init, kinds=kinds,
                                       noise=0.02))
        self.assertEqual(verdicts, {k: analysis.CONTRADICTS for k in "abcde"})

    def test_not_shown_in_noise(self):
        kinds = ["cnn"] * 3 + ["fully_connected"] * 2
        r_trained = [0.5, 0.6, 0.55, 0.7, 0.65]
        errors = [0.2, 0.3, 0.25, 0.22, 0.28]
        r_init = [1.9, 1.0, 2.0, 1.2, 0.55]  # some near the edge of the factor-2 band
        _, verdicts = _verdicts(_study(errors, r_trained, r_init=r_init, kinds=kinds,
                                       noise=0.3))
        for claim in "abcd":
            self.assertEqual(verdicts[claim], analysis.NOT_SHOWN, claim)

    def test_slope_caveat_off_cifar10(self):
        r = np.logspace(-2, 0, 6)
        result, _ = _verdicts(_study(list(0.2 * r ** 0.5), list(r), noise=0.02),
                              dataset="fashion_mnist")
        (e,) = [v for v in result.verdicts if v.claim == "e"]
        self.assertIn("only meaningful there", e.measured)
        self.assertEqual(e.verdict, analysis.AGREES)

    def test_no_fully_connected_nets_cannot_agree_on_b(self):
        r = np.logspace(-2, -0.5, 5)
        _, verdicts = _verdicts(_study(list(0.2 * r ** 0.5), list(r), noise=0.02))
        self.assertEqual(verdicts["b"], analysis.NOT_SHOWN)

    def test_init_claim_over_two_seeds_is_not_judged_from_their_span_alone(self):
        # Two seeds at R_init 0.09 and 0.49 both lie below the band (0.5 to 2), yet their mean's
        # t interval (12.7 SE either side) reaches into it: not shown, not contradicted.
        records = _study([0.1, 0.2, 0.3], [0.1, 0.3, 1.0], seeds=2)
        for record in records:
            if record["model"] == "m0" and record["stage"] == "init":
                value = 0.09 if record["seed"] == 0 else 0.49
                point = record["deformations"]["diffeo"]["points"][-1]
                point.update(R_f=value, G_f=point["D_f"] / value)
        result, verdicts = _verdicts(records)
        self.assertEqual(verdicts["a"], analysis.NOT_SHOWN)
        first = result.verdicts[0].intervals[0]
        self.assertAllClose(first.value, np.mean(np.log10([0.09, 0.49])))
        self.assertLess(first.low, -1.0)

    def test_bad_records_named(self):
        with self.assertRaisesRegex(ValueError, "lacks"):
            analysis.architectures([{"model": "x"}])
        with self.assertRaisesRegex(ValueError, "Unknown deformation"):
            analysis.architectures([], "warp")


if __name__ == "__main__":
    tf.test.main()
