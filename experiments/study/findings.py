"""Judges the paper's five findings on a study's results (`experiments.study.report` writes them).

The findings and their criteria are described in docs/method.md#findings. Each finding is
reduced to one or more *effects*: numbers that are positive when the run shows what the paper
found, each the mean over seeds (or runs) with its standard error (SE). Three verdicts: a
finding *agrees* when every one of its effects exceeds twice its SE, *contradicts* when an
effect is below -2 SE (the run shows the opposite), and is *not shown* otherwise. The report
states every effect as value ± SE with the number of seeds behind it, and for every finding the
smallest effect the run would detect with 80% probability (2.8 SE of its weakest effect), so a
reader sees how large an effect could have gone unseen. Conditions are compared seed by seed:
runs with the same seed share their data order, measured images and deformations, and their
initial filters wherever the layers have the same shapes, so each effect is the mean of per-seed
differences (seeds that only one condition has are left out). A finding whose runs are missing
is "not measured"; with a single seed there is no SE and the finding is undecided. Each
`finding_<n>(results)` takes a `experiments.study.results.StudyResults` and returns a `Finding`.
"""

import dataclasses
import math
from typing import Optional

import numpy as np

from experiments import verdicts
from experiments.study import grid as grid_lib

AGREES, CONTRADICTS, NOT_SHOWN = verdicts.AGREES, verdicts.CONTRADICTS, verdicts.NOT_SHOWN
NOT_MEASURED = verdicts.NOT_MEASURED
UNDECIDED = "undecided (one seed: no standard error)"
DETECTABLE_SE = verdicts.DETECTABLE_SE
# Random-label runs count for finding 5 only when they fit their random labels: training
# accuracy (inference mode, on their fixed random-labelled training set) at least this.
FIT_ACCURACY = 0.9


@dataclasses.dataclass(frozen=True)
class Effect:
    """A number that is positive when the run shows the paper's finding, with its uncertainty.

    value: mean over `count` independent values (seeds, or runs); se: its standard error
    (sample std / sqrt(count)), NaN when count < 2.
    """

    name: str
    value: float
    se: float
    count: int
    unit: str = "seeds"

    @property
    def defined(self):
        """The effect has a standard error (two or more values)."""
        return bool(np.isfinite(self.se))

    @property
    def shown(self):
        """The run shows the effect: value > 2 SE (False when there is no SE)."""
        return bool(self.value > 2 * self.se)

    @property
    def contradicted(self):
        """The run shows the opposite: value < -2 SE (False when there is no SE)."""
        return bool(self.value < -2 * self.se)

    @property
    def detectable(self):
        """The effect this run's criterion (> 2 SE) would show with 80% probability: 2.8 SE."""
        return verdicts.detectable(self.se)

    @property
    def power(self):
        """Probability that a rerun shows an effect as large as this one (> 2 SE), with the
        estimate normally distributed around it with this SE: Phi(value / SE - 2)."""
        return float(0.5 * math.erfc(-(self.z - 2) / math.sqrt(2)))

    @property
    def z(self):
        """value / SE (+-inf for an exact nonzero value, 0 for an exact zero)."""
        if self.se > 0:
            return self.value / self.se
        return float(np.sign(self.value)) * np.inf

    def __str__(self):
        return f"{self.name} {self.value:+.4f} ± {self.se:.4f} (SE, {self.count} {self.unit})"


def mean_effect(name, values, unit="seeds"):
    """Effect of independent per-seed (or per-run) values: their mean and its SE."""
    values = np.asarray(values, np.float64)
    count = len(values)
    se = float(np.std(values, ddof=1) / np.sqrt(count)) if count > 1 else float("nan")
    return Effect(name, float(np.mean(values)), se, count, unit)


def weakest(effects):
    """The effect closest to failing its criterion (smallest value / SE)."""
    return min(effects, key=lambda effect: effect.z)


@dataclasses.dataclass(frozen=True)
class Finding:
    """The verdict of a study's results on one of the paper's five findings.

    Attributes:
      number: 1-5, as in docs/method.md#findings; `statement` is what the paper found.
      verdict: AGREES, CONTRADICTS, NOT_SHOWN, UNDECIDED or NOT_MEASURED.
      criterion: how the verdict follows from the effects; None when not measured.
      measured: what the run measured (the numbers behind the verdict), or why it is not
        measured.
      effects: the Effects the verdict rests on (empty when not measured).
      headline: the weakest of the effects, None when not measured.
    """

    number: int
    verdict: str
    criterion: Optional[str]
    measured: str
    effects: list
    headline: Optional[Effect]

    @property
    def statement(self):
        """What the paper found, `STATEMENTS[number]`."""
        return STATEMENTS[self.number]


def _finding(number, criterion, effects, measured, unjudged=None):
    """Finding `number` judged on its effects: the verdict, headline = the weakest effect.

    unjudged: None, or why a part of the finding could not be judged (the finding then cannot
    agree: at best it is not shown).
    """
    verdict = verdicts.three_way(effects, undefined=UNDECIDED)
    headline = weakest(effects)
    if unjudged is not None:
        measured += f"; {unjudged}"
        if verdict == AGREES:
            verdict = NOT_SHOWN
    if np.isfinite(headline.se):
        measured += (f"; power: at this seed noise an effect of {headline.detectable:.4f} "
                     f"(2.8 SE) in {headline.name} would be shown (> 2 SE) with 80% "
                     f"probability; an effect as large as the one measured, "
                     f"{headline.value:+.4f}, with probability {headline.power:.2f}")
    return Finding(number, verdict, criterion, measured, effects, headline)


def _not_measured(number, why):
    return Finding(number, NOT_MEASURED, None, why, [], None)


def _by_seed(values, seeds):
    """{seed: value} of a list along a [seed] axis whose seed numbers are `seeds`."""
    return dict(zip(seeds, values, strict=True))


def _common_seeds(*mappings):
    common = set.intersection(*(set(m) for m in mappings))
    return sorted(common)


def paired_effect(name, larger, smaller):
    """Effect of larger - smaller compared seed by seed: {seed: value} mappings, common seeds."""
    seeds = _common_seeds(larger, smaller)
    return mean_effect(name, [larger[s] - smaller[s] for s in seeds])


def mean_std_text(values):
    """The text "mean ± std" of values (sample std, 0 for one value), three decimals."""
    values = np.asarray(values, np.float64)
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.3f}"


def _last_layer(curves, step_index):
    """Per-seed cosine sensitivity of the last measured layer at a measurement step."""
    return [seed[step_index][-1] for seed in curves.sensitivity["cosine"]]


def _mean_smoothness(curves, step_index):
    """Per-seed smoothness measure averaged over conv layers at a measurement step."""
    return [float(np.mean(seed[step_index])) for seed in curves.smoothness]


def _spreads(variants, values_of):
    """{seed: max - min over the variants' values_of(curves)[seed]}, seeds common to all."""
    per_variant = [_by_seed(values_of(curves), curves.seeds) for curves in variants]
    return {s: float(np.ptp([v[s] for v in per_variant])) for s in _common_seeds(*per_variant)}


STATEMENTS = {
    1: "At initialization, pooling (max/avg) lowers deformation sensitivity; strided and "
       "subsampled nets are more sensitive (Fig. 3a/c).",
    2: "After training, the per-layer sensitivity pattern is nearly the same whatever the "
       "downsampling; pooled nets' sensitivity can rise during training (Fig. 3b/d).",
    3: "Smoother random filters (larger sigma) give lower sensitivity at every layer (Fig. 4).",
    4: "Tasks that need more stability (larger C) give smoother trained filters (Fig. 5).",
    5: "Trained filters are smoother than at init; on CIFAR-10 smoothness falls with depth; "
       "with random labels smoothness depends on the architecture (Fig. 6, 7).",
}


def _at_init(results):
    """{variant: {seed: last-layer sensitivity at init}}: the real-label runs' first
    measurement and the init-only runs' (`results.init`), whose seeds the former lack."""
    init = {}
    for group in (results.training.get("real", {}), results.init):
        for variant, curves in group.items():
            init.setdefault(variant, {}).update(_by_seed(_last_layer(curves, 0), curves.seeds))
    return init


def finding_1(results):
    """Pooling lowers sensitivity at init: non-pooled minus pooled last-layer sensitivity."""
    init = _at_init(results)
    pooled = [v for v in grid_lib.POOLED if v in init]
    other = [v for v in grid_lib.NOT_POOLED if v in init]
    if not pooled or not other or not _common_seeds(*init.values()):
        return _not_measured(1, "needs pooled and non-pooled variants measured at init "
                             "with a common seed")
    effects = [paired_effect(f"{n} - {p}", init[n], init[p]) for p in pooled for n in other]
    return _finding(
        1,
        "for every pair of a non-pooled and a pooled variant, the non-pooled variant's "
        "last-layer sensitivity at init minus the pooled one's, per seed (same seed = same "
        "filters where the layers have the same shapes, same measured images and "
        "deformations), exceeds 2 SE",
        effects,
        "last-layer cosine sensitivity at init (mean ± std over seeds): "
        + ", ".join(f"{v} {mean_std_text(list(init[v].values()))}" for v in pooled + other)
        + f"; smallest gap: {weakest(effects)}")


def finding_2(results):
    """Training evens out the variants: the last layer's spread over variants shrinks."""
    real = results.training.get("real", {})
    if len(real) < 2:
        return _not_measured(2, "needs 2+ variants")
    variants = list(real.values())
    init = _spreads(variants, lambda curves: _last_layer(curves, 0))
    final = _spreads(variants, lambda curves: _last_layer(curves, -1))
    seeds = [s for s in _common_seeds(init, final) if init[s] > 0]
    if not seeds:
        return _not_measured(2, "needs a seed trained with every variant (and "
                             "variants that differ at init)")
    ratios = [final[s] / init[s] for s in seeds]
    effect = mean_effect("0.5 - spread ratio", [0.5 - r for r in ratios])
    rises = []
    for v in grid_lib.POOLED:
        if v in real:
            cosine = np.asarray(real[v].sensitivity["cosine"], np.float64)
            mean_init, mean_final = cosine[:, 0].mean(0), cosine[:, -1].mean(0)
            rises.append(f"{v}: {int(np.sum(mean_final[1:] > mean_init[1:]))} of "
                         f"{len(mean_init) - 1} layers rose")
    return _finding(
        2,
        "per seed, the spread (max - min over variants) of last-layer sensitivity after "
        "training divided by its spread at init; its mean over seeds is below 0.5 by more than "
        "2 SE",
        [effect],
        f"spread ratio {np.mean(ratios):.3f} (per seed: "
        + ", ".join(f"{r:.3f}" for r in ratios) + "); mean spread at init "
        f"{np.mean([init[s] for s in seeds]):.3f}, after training "
        f"{np.mean([final[s] for s in seeds]):.3f}; last layer after training (mean over "
        "seeds): " + ", ".join(f"{v} {np.mean(_last_layer(curves, -1)):.3f}"
                               for v, curves in real.items())
        + "; " + "; ".join(rises) + f"; {effect}")


def finding_3(results):
    """Smoother init filters lower sensitivity: smallest minus largest sigma, every layer."""
    sweep = results.smooth_init
    if sweep is None or len(sweep.sigmas) < 2:
        return _not_measured(3, "needs 2+ sigmas")
    keys = sorted(sweep.sensitivity, key=float)
    low = _by_seed(sweep.sensitivity[keys[0]], sweep.seeds[keys[0]])
    high = _by_seed(sweep.sensitivity[keys[-1]], sweep.seeds[keys[-1]])
    common = _common_seeds(low, high)
    if not common:
        return _not_measured(3, "needs a seed measured at both sigmas")
    differences = np.array([np.subtract(low[s], high[s]) for s in common])  # [seed, layer]
    names = sweep.layers
    effects = [mean_effect(f"layer {k} ({names[k]})", differences[:, k])
               for k in range(1, differences.shape[1])]  # the input does not depend on filters
    means = np.array([np.mean(sweep.sensitivity[k], axis=0) for k in keys])  # [sigma, layer]
    monotone = int(np.sum(np.all(np.diff(means[:, 1:], axis=0) <= 0, axis=0)))
    return _finding(
        3,
        f"at every layer past the input, sigma = {keys[0]}'s sensitivity minus sigma = "
        f"{keys[-1]}'s, per seed (same seed = same filters before smoothing), exceeds 2 SE",
        effects,
        f"sigma {keys[0]} - sigma {keys[-1]} shown at {sum(e.shown for e in effects)} of "
        f"{len(effects)} layers; weakest {weakest(effects)}; last: {effects[-1]}; monotone "
        f"in sigma at {monotone} of {len(effects)} layers; last-layer means: "
        + ", ".join(f"sigma {k} {means[i, -1]:.3f}" for i, k in enumerate(keys)))


def finding_4(results):
    """Larger C gives smoother trained filters: smallest minus largest C's trained measure."""
    synthetic = results.synthetic
    if synthetic is None or len(synthetic.strengths) < 2:
        return _not_measured(4, "needs 2+ strengths")
    keys = sorted(synthetic.smoothness_final, key=float)
    final = {k: _by_seed(synthetic.smoothness_final[k], synthetic.seeds[k]) for k in keys}
    common = _common_seeds(final[keys[0]], final[keys[-1]])
    if not common:
        return _not_measured(4, "needs a seed trained at both strengths")
    low, high = (np.array([final[k][s] for s in common]) for k in (keys[0], keys[-1]))
    effect = mean_effect(f"C={keys[0]} - C={keys[-1]}", low.mean(1) - high.mean(1))
    per_layer = low - high  # [seed, conv layer]
    init = float(np.mean([np.mean(v) for v in synthetic.smoothness_init.values()]))
    return _finding(
        4,
        f"the trained smoothness measure averaged over conv layers (lower = smoother), "
        f"C={keys[0]} minus C={keys[-1]}, per seed (same seed = same initial filters); its mean "
        "exceeds 2 SE",
        [effect],
        "smoothness measure after training (mean over conv layers, mean ± std over seeds): "
        + ", ".join(f"C={k} {mean_std_text([np.mean(x) for x in final[k].values()])}"
                    for k in keys)
        + f" (init {init:.3f}); {effect}; per conv layer: "
        + ", ".join(f"{m:+.3f} ± {se:.3f}" for m, se in zip(
            per_layer.mean(0), per_layer.std(0, ddof=1) / np.sqrt(len(common))
            if len(common) > 1 else np.full(per_layer.shape[1], np.nan))))


def finding_5(results):
    """Training smooths the filters, more deeply on CIFAR-10; random labels split variants."""
    real = results.training.get("real", {})
    random = results.training.get("random", {})
    if not real:
        return _not_measured(5, "needs trained runs")
    smoother = [mean_effect(f"{v} init - trained", np.subtract(_mean_smoothness(curves, 0),
                                                               _mean_smoothness(curves, -1)))
                for v, curves in real.items()]
    slopes = [np.polyfit(np.arange(len(seed[-1])), seed[-1], 1)[0]
              for curves in real.values() for seed in curves.smoothness]
    depth = mean_effect("slope over conv depth", slopes, unit="runs")
    effects = smoother + [depth]
    parts = [f"init - trained mean measure: weakest {weakest(smoother)} (trained means "
             + ", ".join(f"{v} {np.mean(_mean_smoothness(curves, -1)):.3f}"
                         for v, curves in real.items())
             + f"; init {np.mean([_mean_smoothness(curves, 0) for curves in real.values()]):.3f})",
             f"trained measure per conv layer: {depth} per layer (rising measure = less smooth "
             "with depth)"]
    criterion = ("every variant's mean smoothness measure falls from init to the end of "
                 "training by more than 2 SE (per-seed differences); the trained measure's "
                 "slope over conv depth (per run) is positive by more than 2 SE (the CIFAR-10 "
                 "pattern)")
    unjudged = None
    if random:
        fits = [a for curves in random.values() for a in curves.train_accuracy]
        runs = sum(len(curves.seeds) for curves in random.values())
        fitted = sum(a >= FIT_ACCURACY for a in fits)  # NaN (not recorded) does not fit
        parts.append(f"random-label runs fitting their labels (train accuracy >= "
                     f"{FIT_ACCURACY:g}): {fitted} of {runs}")
        real_spread = _spreads(real.values(), lambda curves: _mean_smoothness(curves, -1))
        random_spread = _spreads(random.values(), lambda curves: _mean_smoothness(curves, -1))
        seeds = _common_seeds(real_spread, random_spread)
        if seeds:
            spread = paired_effect("random - real spread", random_spread, real_spread)
            parts.append(f"spread of the trained mean measure across variants: real labels "
                         f"{np.mean([real_spread[s] for s in seeds]):.3f}, random labels "
                         f"{np.mean([random_spread[s] for s in seeds]):.3f}; {spread}")
            if fitted == runs:
                effects.append(spread)
                criterion += ("; per seed, the spread (max - min over variants) of the trained "
                              "mean measure is larger with random labels than with real ones by "
                              "more than 2 SE (random-label runs count when every one fits its "
                              f"labels: train accuracy >= {FIT_ACCURACY:g})")
            else:
                unjudged = (f"the random-label part is not judged: {runs - fitted} of {runs} "
                            "random-label runs did not fit their labels")
    return _finding(5, criterion, effects, "; ".join(parts), unjudged)


FINDINGS = (finding_1, finding_2, finding_3, finding_4, finding_5)


def judge(results):
    """The five Findings judged on `results` (a `experiments.study.results.StudyResults`)."""
    return [finding(results) for finding in FINDINGS]
