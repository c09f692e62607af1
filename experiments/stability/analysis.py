"""Petrini et al.'s claims judged on a stability study's results, with bootstrap intervals.

Input: the records of results.json (`experiments.stability.report`), one per architecture,
seed and stage ("init" / "trained"), each with the test error and, per deformation ("diffeo",
"tps"), the measures at every point; the analysis uses the last point, the network's output.
One point per architecture is the mean over its seeds (arithmetic, of the error and of each
measure), as in Petrini et al.'s figures.

Intervals are percentile bootstrap intervals (95%) from `RESAMPLES` resamples of a seeded numpy
Generator, resampling at two levels: the architectures (with replacement, separately among the
fully connected nets and the others, so that both groups keep their sizes), then within each
drawn architecture its seeds (with replacement, the same seeds for every measure and stage of
that architecture, so paired values stay paired). A resample whose statistic is undefined (e.g.
all drawn architectures alike) is left out; the count of those used is kept. Claim (a) is judged
per architecture over its seeds, where a bootstrap over 2 or 3 values would be far too narrow:
there the interval is Student's t (`seed_interval`).

The verdicts follow the paper's study (experiments/study/findings.py) in three ways: *agrees*
when the interval of every effect lies above 0, *contradicts* when one lies below 0, *not shown*
otherwise, stating the smallest effect the run would detect with 80% probability, 2.8 times the
bootstrap standard error (`experiments.verdicts`, shared with the paper's study). Claims
(`STATEMENTS`): (a) R_f is about 1 at initialization, (b) it falls during training for CNNs,
not for fully connected nets, (c) the test error rises with R_f across architectures, (d) R_f
predicts it better than D_f alone, (e) the slope of log error against log R_f is about 0.5
(Petrini's fit on CIFAR-10, error ~ 0.2 R_f^0.5).
"""

import dataclasses
import math

import numpy as np

from experiments import verdicts as verdicts_lib

AGREES, CONTRADICTS = verdicts_lib.AGREES, verdicts_lib.CONTRADICTS
NOT_SHOWN, NOT_MEASURED = verdicts_lib.NOT_SHOWN, verdicts_lib.NOT_MEASURED
DETECTABLE_SE = verdicts_lib.DETECTABLE_SE
RESAMPLES = 2000
CONFIDENCE = 0.95
MEASURES = ("R_f", "D_f", "G_f")
STAGES = ("init", "trained")
DEFORMATIONS = ("diffeo", "tps")
FULLY_CONNECTED = "fully_connected"
# Claim (a): "about 1" means within this factor of 1 (0.5 <= R_f <= 2).
INIT_FACTOR = 2.0
PETRINI_SLOPE = 0.5
PETRINI_PREFACTOR = 0.2
PETRINI_DATASET = "cifar10"

STATEMENTS = {
    "a": "R_f is about 1 at initialization, for every kind of network.",
    "b": "R_f falls during training for CNNs (by decades for the best ones), not for fully "
         "connected nets.",
    "c": "Across architectures, the test error rises with R_f (at the output, trained).",
    "d": "R_f predicts the test error better than the deformation sensitivity D_f alone.",
    "e": f"log error against log R_f has slope about {PETRINI_SLOPE} (Petrini's fit on "
         f"CIFAR-10: error ~ {PETRINI_PREFACTOR} R_f^{PETRINI_SLOPE}).",
}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One architecture's output measures over its seeds.

    Attributes:
      model: registry name; kind: its `experiments.models` kind.
      seeds: the seeds (ints) measured at both stages, in order.
      error: [len(seeds)] float64 test error of the trained nets (fraction, 0..1).
      values: {stage: {measure: [len(seeds)] float64}} at the output, NaN where undefined.
      train_error: [len(seeds)] float64 training error of the trained nets in inference mode,
        NaN where not recorded (how well each net fits its training data).
    """

    model: str
    kind: str
    seeds: tuple
    error: np.ndarray
    values: dict
    train_error: np.ndarray = None

    def take(self, index):
        """The architecture restricted to (or resampled at) seed positions `index`."""
        index = np.asarray(index)
        return Architecture(self.model, self.kind, tuple(np.asarray(self.seeds)[index]),
                            self.error[index],
                            {stage: {m: v[index] for m, v in measures.items()}
                             for stage, measures in self.values.items()},
                            None if self.train_error is None else self.train_error[index])

    def mean(self, stage, measure):
        values = self.values[stage][measure]
        values = values[np.isfinite(values)]
        return float(np.mean(values)) if len(values) else math.nan

    @property
    def mean_error(self):
        return float(np.mean(self.error))


def output_point(record, deformation):
    """The last measured point (the network's output) of a record: {"name", "D_f", ...}."""
    return record["deformations"][deformation]["points"][-1]


def _number(value):
    return math.nan if value is None else float(value)


def architectures(records, deformation="diffeo"):
    """The records grouped into `Architecture`s (in order of first appearance).

    Only seeds with both an init and a trained record enter. Raises ValueError on records
    without the fields of results.json or an unknown deformation.
    """
    if deformation not in DEFORMATIONS:
        raise ValueError(f"Unknown deformation {deformation!r}: choose {DEFORMATIONS}.")
    by_model = {}
    for record in records:
        try:
            key = (record["model"], record["seed"], record["stage"])
            point = output_point(record, deformation)
            by_model.setdefault(record["model"], {"kind": record["kind"], "runs": {}})
            by_model[record["model"]]["runs"][key[1:]] = (
                _number(record.get("test_error")), {m: _number(point[m]) for m in MEASURES},
                _number(record.get("train_error")))
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"A stability record lacks {e} (model, kind, seed, stage, "
                             f"test_error, deformations.{deformation}.points).") from None
    result = []
    for model, entry in by_model.items():
        runs = entry["runs"]
        seeds = sorted(s for (s, stage) in runs if stage == "trained" and (s, "init") in runs)
        if not seeds:
            continue
        result.append(Architecture(
            model, entry["kind"], tuple(seeds),
            np.array([runs[(s, "trained")][0] for s in seeds], np.float64),
            {stage: {m: np.array([runs[(s, stage)][1][m] for s in seeds], np.float64)
                     for m in MEASURES} for stage in STAGES},
            np.array([runs[(s, "trained")][2] for s in seeds], np.float64)))
    return result


# --- Statistics ---------------------------------------------------------------------------------

def ranks(values):
    """Ranks 0..n-1 of `values` (1-D), ties given their average rank."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="mergesort")
    positions = np.empty(len(values), np.float64)
    positions[order] = np.arange(len(values))
    _, inverse = np.unique(values, return_inverse=True)
    return (np.bincount(inverse, positions) / np.bincount(inverse))[inverse]


def spearman(x, y):
    """Spearman rank correlation of two 1-D sequences; NaN if fewer than 3 values or either is
    constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3:
        return math.nan
    rx, ry = ranks(x), ranks(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _log_means(archs, stage, measure):
    """(log10 mean measure, log10 mean error) per architecture, only where both are > 0."""
    x = np.array([a.mean(stage, measure) for a in archs])
    y = np.array([a.mean_error for a in archs])
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    return np.log10(x[keep]), np.log10(y[keep])


def fit(archs, measure="R_f"):
    """(slope, log10 prefactor) of the least-squares line log10 error = a + b log10 measure
    over architectures (trained, the means over seeds); NaNs if fewer than 2 distinct x."""
    x, y = _log_means(archs, "trained", measure)
    if len(x) < 2 or np.ptp(x) == 0:
        return math.nan, math.nan
    dx = x - x.mean()
    slope = float(np.dot(dx, y - y.mean()) / np.dot(dx, dx))
    return slope, float(y.mean() - slope * x.mean())


def rank_correlation(archs, measure):
    """Spearman correlation of the mean test error and the mean trained `measure`."""
    values = np.array([a.mean("trained", measure) for a in archs])
    errors = np.array([a.mean_error for a in archs])
    keep = np.isfinite(values) & np.isfinite(errors)
    return spearman(errors[keep], values[keep])


def mean_fall(archs):
    """Mean over architectures of the mean over seeds of log10 R_init - log10 R_trained (> 0:
    R_f falls during training); NaN without architectures."""
    falls = []
    for a in archs:
        init, trained = a.values["init"]["R_f"], a.values["trained"]["R_f"]
        keep = (init > 0) & (trained > 0)
        if keep.any():
            falls.append(float(np.mean(np.log10(init[keep]) - np.log10(trained[keep]))))
    return float(np.mean(falls)) if falls else math.nan


def _fc(archs):
    return [a for a in archs if a.kind == FULLY_CONNECTED]


def _cnn(archs):
    return [a for a in archs if a.kind != FULLY_CONNECTED]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A statistic with its 95% interval; `shown` when the interval lies above 0.

    value: the statistic on the data; low, high: the percentile bootstrap interval (or, over
    seeds, Student's t: `seed_interval`); se: the standard deviation of the bootstrap values
    (the standard error of the mean over seeds); count: the architectures (or seeds, `unit`)
    behind it; resamples: how many resamples defined it (0 for a t interval).
    """

    name: str
    value: float
    low: float
    high: float
    se: float
    count: int
    resamples: int
    unit: str = "architectures"

    @property
    def defined(self):
        """The statistic and its interval are defined."""
        return bool(np.isfinite(self.low) and np.isfinite(self.value))

    @property
    def shown(self):
        return bool(self.low > 0)

    @property
    def contradicted(self):
        return bool(self.high < 0)

    @property
    def detectable(self):
        """The effect this run would show with 80% probability: 2.8 bootstrap SE."""
        return verdicts_lib.detectable(self.se)

    def contains(self, value):
        return bool(self.low <= value <= self.high)

    def __str__(self):
        if not np.isfinite(self.value):
            return f"{self.name} undefined ({self.count} {self.unit})"
        return (f"{self.name} {self.value:+.3f} (95% CI {self.low:+.3f} to {self.high:+.3f}, "
                f"{self.count} {self.unit})")


def _resample(archs, rng):
    """Two-level resample: architectures within the FC / other groups, then seeds."""
    drawn = []
    for group in (_fc(archs), _cnn(archs)):
        for k in rng.integers(0, len(group), len(group)):
            arch = group[k]
            drawn.append(arch.take(rng.integers(0, len(arch.seeds), len(arch.seeds))))
    return drawn


def bootstrap(archs, statistics, resamples=RESAMPLES, seed=0):
    """Bootstrap values of several statistics on the same resamples.

    Args:
      archs: list of `Architecture`.
      statistics: {name: fn(list of Architecture) -> float (NaN when undefined)}.
      resamples: number of resamples; seed: the numpy Generator's seed.

    Returns:
      {name: `Interval`} (NaN bounds when fewer than 2 resamples defined it).
    """
    rng = np.random.default_rng(seed)
    values = {name: [] for name in statistics}
    for _ in range(resamples):
        drawn = _resample(archs, rng)
        for name, fn in statistics.items():
            values[name].append(fn(drawn))
    alpha = (1 - CONFIDENCE) / 2
    intervals = {}
    for name, fn in statistics.items():
        samples = np.array(values[name], np.float64)
        samples = samples[np.isfinite(samples)]
        if len(samples) >= 2:
            low, high = np.quantile(samples, [alpha, 1 - alpha])
            se = float(np.std(samples, ddof=1))
        else:
            low = high = se = math.nan
        intervals[name] = Interval(name, fn(archs), float(low), float(high), se, len(archs),
                                   len(samples))
    return intervals


# --- Verdicts -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Verdict:
    """The run's verdict on one of Petrini's claims (`STATEMENTS[claim]`).

    verdict: AGREES, CONTRADICTS, NOT_SHOWN or NOT_MEASURED; criterion: how it follows from the
    intervals; measured: the numbers behind it, the detectable effect, caveats; intervals: the
    `Interval`s it rests on.
    """

    claim: str
    verdict: str
    criterion: str
    measured: str
    intervals: tuple = ()

    @property
    def statement(self):
        return STATEMENTS[self.claim]


def _power_text(interval):
    if not np.isfinite(interval.se):
        return f"{interval.name}: too few architectures or seeds for an interval"
    return (f"the run would show (interval above 0) an effect of {interval.detectable:.3f} in "
            f"{interval.name} with 80% probability (2.8 bootstrap SE)")


def init_ranges(archs):
    """{kind: (min, max)} of R_f at the output at init over the kind's architectures and seeds."""
    ranges = {}
    for a in archs:
        values = a.values["init"]["R_f"]
        values = values[np.isfinite(values)]
        if len(values):
            low, high = ranges.get(a.kind, (math.inf, -math.inf))
            ranges[a.kind] = (min(low, float(values.min())), max(high, float(values.max())))
    return ranges


def verdict_a(archs):
    """(a) R_f about 1 at init: per architecture, the 95% Student-t interval (over its seeds)
    of the mean of log10 R_init; agrees when every one lies within log10 INIT_FACTOR of 0,
    contradicts when one lies entirely outside, else not shown."""
    band = math.log10(INIT_FACTOR)
    criterion = (f"agrees when, for every architecture, the 95% Student-t interval of the mean "
                 f"over seeds of log10 R_f at init lies within ±{band:.3f} (R_f within a factor "
                 f"{INIT_FACTOR:g} of 1); contradicts when one lies entirely outside it")
    intervals = [seed_interval(f"log10 R_init of {a.model}", _log_init(a)) for a in archs]
    if not intervals:
        return Verdict("a", NOT_MEASURED, criterion, "no architecture measured at init")
    finite = [i for i in intervals if np.isfinite(i.low)]
    if any(i.low > band or i.high < -band for i in finite):
        verdict = CONTRADICTS
    elif len(finite) == len(intervals) and all(-band <= i.low and i.high <= band
                                               for i in finite):
        verdict = AGREES
    else:
        verdict = NOT_SHOWN
    ranges = "; ".join(f"{kind}: {low:.3g} to {high:.3g}"
                       for kind, (low, high) in sorted(init_ranges(archs).items()))
    measured = f"R_f at the output at init, range per kind: {ranges}"
    outside = [i.name for i in finite if i.low > band or i.high < -band]
    if outside:
        measured += f"; outside the band: {', '.join(outside)}"
    widest = max(finite, key=lambda i: i.high - i.low, default=None)
    if widest is not None:
        measured += (f"; the widest interval ({widest.name}, {widest.count} seeds) spans a "
                     f"factor {10 ** ((widest.high - widest.low) / 2):.2f} either side of its "
                     f"mean, against the band's factor {INIT_FACTOR:g}")
    if len(finite) < len(intervals):
        measured += "; an architecture with fewer than 2 seeds has no interval"
    return Verdict("a", verdict, criterion, measured, tuple(intervals))


def _log_init(arch):
    """log10 R_f at init over the architecture's seeds (defined, positive values only)."""
    values = arch.values["init"]["R_f"]
    return np.log10(values[np.isfinite(values) & (values > 0)])


# Two-sided 95% quantiles of Student's t distribution, t_{0.975}(df), for df = 1..30; beyond,
# the first two terms of its expansion around the normal quantile (Cornish-Fisher).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
NORMAL_975 = 1.960


def t_quantile(df):
    """t_{0.975} with `df` degrees of freedom (>= 1)."""
    if df <= len(T_975):
        return T_975[df - 1]
    z = NORMAL_975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def seed_interval(name, values):
    """The 95% Student-t interval of the mean of independent per-seed `values`: mean ± t(n - 1)
    SE. A percentile bootstrap over 2 or 3 seeds would be far too narrow (over 2 seeds it is
    the span of the two values). NaN bounds with fewer than 2 values."""
    values = np.asarray(values, np.float64)
    n = len(values)
    mean = float(np.mean(values)) if n else math.nan
    if n < 2:
        return Interval(name, mean, math.nan, math.nan, math.nan, n, 0, "seeds")
    se = float(np.std(values, ddof=1) / math.sqrt(n))
    half = t_quantile(n - 1) * se
    return Interval(name, mean, mean - half, mean + half, se, n, 0, "seeds")


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Everything report.md states for one deformation.

    fit: {"slope", "log10_prefactor"} Intervals of log10 error = a + b log10 R_f; spearman:
    {measure: Interval} of the rank correlation of error and the trained measure;
    verdicts: [Verdict] for (a)-(e); dataset: the data set trained on.
    """

    deformation: str
    dataset: str
    architectures: list
    fit: dict
    spearman: dict
    fall: dict
    verdicts: list

    @property
    def prefactor(self):
        """(value, low, high) of the prefactor 10^a."""
        i = self.fit["log10_prefactor"]
        return tuple(10 ** v if np.isfinite(v) else math.nan for v in (i.value, i.low, i.high))


def analyse(records, dataset, deformation="diffeo", resamples=RESAMPLES, seed=0):
    """The fit, the Spearman correlations and the verdicts (a)-(e) on results.json's records."""
    archs = architectures(records, deformation)
    statistics = {
        "slope": lambda d: fit(d)[0],
        "log10_prefactor": lambda d: fit(d)[1],
        **{f"spearman {m}": (lambda d, m=m: rank_correlation(d, m)) for m in MEASURES},
        "spearman R_f - D_f": lambda d: rank_correlation(d, "R_f") - rank_correlation(d, "D_f"),
        "CNN fall": lambda d: mean_fall(_cnn(d)),
        "CNN fall - FC fall": lambda d: mean_fall(_cnn(d)) - mean_fall(_fc(d)),
    }
    intervals = bootstrap(archs, statistics, resamples, seed) if archs else {}
    fits = {k: intervals[k] for k in ("slope", "log10_prefactor")} if archs else {}
    spearmans = {m: intervals[f"spearman {m}"] for m in MEASURES} if archs else {}
    falls = {k: intervals[k] for k in ("CNN fall", "CNN fall - FC fall")} if archs else {}
    verdicts = [verdict_a(archs)]
    verdicts += [_verdict_b(archs, falls), _verdict_c(archs, spearmans),
                 _verdict_d(archs, intervals), _verdict_e(archs, fits, dataset)]
    return Analysis(deformation, dataset, archs, fits, spearmans, falls, verdicts)


def _verdict_b(archs, falls):
    criterion = ("effects: the CNNs' mean fall of log10 R_f from init to trained, and that fall "
                 "minus the fully connected nets'; agrees when both intervals lie above 0, "
                 "contradicts when one lies below 0")
    if not _cnn(archs):
        return Verdict("b", NOT_MEASURED, criterion, "no CNN (non fully connected net) measured")
    cnn, diff = falls["CNN fall"], falls["CNN fall - FC fall"]
    if not _fc(archs):
        verdict = CONTRADICTS if cnn.contradicted else NOT_SHOWN
        return Verdict("b", verdict, criterion, f"{cnn}; no fully connected net measured, so "
                       "the contrast is not judged; " + _power_text(cnn), (cnn,))
    measured = (f"{cnn} (decades); {diff}; fully connected nets' fall "
                f"{mean_fall(_fc(archs)):+.3f}; " + _power_text(min((cnn, diff), key=_z)))
    return Verdict("b", verdicts_lib.three_way((cnn, diff)), criterion, measured, (cnn, diff))


def _z(interval):
    return interval.value / interval.se if interval.se > 0 else math.copysign(math.inf,
                                                                              interval.value)


def _verdict_c(archs, spearmans):
    criterion = ("the Spearman correlation of mean test error and mean trained R_f over "
                 "architectures; agrees when its interval lies above 0, contradicts when below")
    if len(archs) < 3:
        return Verdict("c", NOT_MEASURED, criterion, "fewer than 3 architectures")
    r = spearmans["R_f"]
    measured = (f"{r}; for comparison {spearmans['D_f']}, {spearmans['G_f']}; "
                + _power_text(r))
    return Verdict("c", verdicts_lib.three_way((r,)), criterion, measured, (r,))


def _verdict_d(archs, intervals):
    criterion = ("the Spearman correlation of error with R_f minus that with D_f; agrees when "
                 "its interval lies above 0, contradicts when below")
    if len(archs) < 3:
        return Verdict("d", NOT_MEASURED, criterion, "fewer than 3 architectures")
    diff = intervals["spearman R_f - D_f"]
    return Verdict("d", verdicts_lib.three_way((diff,)), criterion,
                   f"{diff}; " + _power_text(diff), (diff,))


def _verdict_e(archs, fits, dataset):
    criterion = (f"agrees when the slope's interval contains {PETRINI_SLOPE} and lies above 0; "
                 f"contradicts when it excludes {PETRINI_SLOPE}; not shown when it contains both "
                 "0 and it (or is undefined)")
    if len(archs) < 2:
        return Verdict("e", NOT_MEASURED, criterion, "fewer than 2 architectures")
    slope = fits["slope"]
    if not np.isfinite(slope.low):
        verdict = NOT_SHOWN
    elif not slope.contains(PETRINI_SLOPE):
        verdict = CONTRADICTS
    else:
        verdict = AGREES if slope.low > 0 else NOT_SHOWN
    prefactor = fits["log10_prefactor"]
    measured = (f"{slope}; prefactor {10 ** prefactor.value:.3g}" if np.isfinite(prefactor.value)
                else f"{slope}")
    if np.isfinite(slope.se):
        measured += f"; interval half-width {(slope.high - slope.low) / 2:.3f}"
    if dataset != PETRINI_DATASET:
        measured += (f"; trained on {dataset}, not CIFAR-10: Petrini's slope was fitted on "
                     "CIFAR-10 with nets trained to convergence, so the comparison is only "
                     "meaningful there")
    return Verdict("e", verdict, criterion, measured, (slope,))
