"""The stability study's outputs: results.json, report.md and the figures (PNG).

`collect` gathers the runs' stability.json files (`experiments.stability.measure`) into the
records of results.json: one per architecture, seed and stage ("init" / "trained"), each with
`model`, `kind`, `seed`, `stage`, `test_error` (of the trained net; None at init) and, per
deformation ("diffeo", "tps"), the points measured with their name, relative depth, D_f, G_f
and R_f. `write_report` judges Petrini et al.'s claims on them (`experiments.stability.
analysis`) and writes report.md and the figures:

  figures/error_vs_rf.png        test error against R_f at the output (trained), log-log, one
                                 point per architecture (mean over seeds, error bars: min to
                                 max over seeds) and the fitted line, per deformation;
  figures/profiles_<deformation>.png  D_f, G_f and R_f against relative depth, at init and
                                 trained, one curve per architecture (mean over seeds).
"""

import json
import math
import os

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from experiments.stability import analysis  # pylint: disable=wrong-import-position
from experiments.stability import measure  # pylint: disable=wrong-import-position

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
MEASURE_NAMES = {"D_f": "D_f (deformation)", "G_f": "G_f (noise)", "R_f": "R_f = D_f / G_f"}


def records_of(stability):
    """The two results.json records (init, trained) of one run's stability.json dict."""
    records = []
    for stage in measure.STAGES:
        records.append({
            "model": stability["model"], "kind": stability["kind"], "seed": stability["seed"],
            "stage": stage,
            "test_error": stability["test_error"] if stage == "trained" else None,
            "train_error": stability.get("train_error") if stage == "trained" else None,
            "deformations": {
                name: {"points": [{key: point[key] for key in
                                   ("name", "relative_depth", "D_f", "G_f", "R_f")}
                                  for point in points]}
                for name, points in stability["stages"][stage].items()},
        })
    return records


def collect(stabilities, title, dataset):
    """results.json's dict from the runs' stability.json dicts (in grid order)."""
    records = [r for s in stabilities for r in records_of(s)]
    settings = stabilities[0]["deformations"] if stabilities else {}
    return {"title": title, "dataset": dataset, "deformations": settings,
            "records": records}


def write_results(results, directory):
    path = os.path.join(directory, RESULTS_FILE)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    return path


def read_results(directory):
    path = os.path.join(directory, RESULTS_FILE)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: run the study first.") from None
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}).") from None


# --- Text ---------------------------------------------------------------------------------------

def _g(value, digits=3):
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def _mean_std(values):
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return "n/a"
    std = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{np.mean(values):.3g} ± {std:.2g}"


def architecture_table(result):
    """Markdown table: one row per architecture of an `analysis.Analysis`."""
    lines = ["| model | kind | seeds | test error | train error | R_f init | R_f trained | "
             "D_f trained | G_f trained |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for a in result.architectures:
        lines.append(
            f"| {a.model} | {a.kind} | {len(a.seeds)} | {_mean_std(a.error)} | "
            f"{_mean_std(a.train_error)} | "
            f"{_mean_std(a.values['init']['R_f'])} | {_mean_std(a.values['trained']['R_f'])} | "
            f"{_mean_std(a.values['trained']['D_f'])} | "
            f"{_mean_std(a.values['trained']['G_f'])} |")
    return lines


def _interval_cells(interval):
    return (f"{interval.value:+.3f} | {interval.low:+.3f} to {interval.high:+.3f}"
            if np.isfinite(interval.low) else f"{_g(interval.value)} | n/a")


def fit_lines(result):
    """The fit and Spearman correlations of one deformation's analysis, as markdown."""
    if not result.fit:
        return ["No architecture measured."]
    slope, prefactor = result.fit["slope"], result.prefactor
    lines = [f"Fit over {slope.count} architectures (means over seeds), log10 error = a + b "
             f"log10 R_f: slope b = {_g(slope.value)} (95% CI {_g(slope.low)} to "
             f"{_g(slope.high)}), prefactor 10^a = {_g(prefactor[0])} (95% CI "
             f"{_g(prefactor[1])} to {_g(prefactor[2])}); Petrini et al.: slope "
             f"{analysis.PETRINI_SLOPE}, prefactor {analysis.PETRINI_PREFACTOR} (CIFAR-10).", "",
             "| Spearman correlation of test error with | value | 95% CI |",
             "| --- | --- | --- |"]
    for name, interval in result.spearman.items():
        lines.append(f"| {name} (trained, output) | {_interval_cells(interval)} |")
    return lines


def report_text(results, analyses, notes=(), resamples=analysis.RESAMPLES):
    """report.md's text: verdicts on the primary (diffeo) deformation, then the tables."""
    primary = analyses["diffeo"]
    settings = results.get("deformations", {})
    lines = [f"# Relative stability and performance: {results['title']}", ""]
    lines += [f"- {note}" for note in notes]
    for name, spec in settings.items():
        lines.append(f"- Deformation `{name}`: {spec.get('text', '')}.")
    lines += ["", "Petrini et al. (NeurIPS 2021) relate the relative stability R_f = D_f / G_f "
              "(deformation sensitivity over the sensitivity to noise of the same norm) to the "
              "test error across architectures. Verdicts on the diffeomorphisms (their "
              "measure); intervals are 95% bootstrap intervals over architectures and seeds "
              f"({resamples} resamples).", "", "## Verdicts", ""]
    for v in primary.verdicts:
        lines += [f"**({v.claim}) {v.statement}** Verdict: **{v.verdict}**.", "",
                  f"Measured: {v.measured}.", "", f"Criterion: {v.criterion}.", ""]
    for name, result in analyses.items():
        lines += [f"## Fit and correlations: {name}", ""] + fit_lines(result) + [""]
    lines += ["## Architectures (diffeo, at the output; mean ± std over seeds)", ""]
    lines += architecture_table(primary)
    lines += ["", "Figures: `figures/error_vs_rf.png`, " + ", ".join(
        f"`figures/profiles_{name}.png`" for name in analyses) + "."]
    return "\n".join(lines) + "\n"


# --- Figures ------------------------------------------------------------------------------------

def plot_error_vs_rf(analyses, path):
    """Test error against R_f (trained, output), log-log, one panel per deformation."""
    fig, axes = plt.subplots(1, len(analyses), figsize=(5.5 * len(analyses), 4.5), squeeze=False)
    for ax, (name, result) in zip(axes[0], analyses.items()):
        kinds = sorted({a.kind for a in result.architectures})
        colors = {kind: plt.cm.tab10(k) for k, kind in enumerate(kinds)}
        for a in result.architectures:
            r = a.values["trained"]["R_f"]
            if not np.isfinite(r).any():
                continue
            x, y = a.mean("trained", "R_f"), a.mean_error
            # max(0, .): a mean can exceed the maximum by a rounding error
            xerr = np.maximum([[x - np.nanmin(r)], [np.nanmax(r) - x]], 0)
            yerr = np.maximum([[y - a.error.min()], [a.error.max() - y]], 0)
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color=colors[a.kind], capsize=2)
            ax.annotate(a.model, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        for kind in kinds:
            ax.plot([], [], "o", color=colors[kind], label=kind)
        if result.fit and np.isfinite(result.fit["slope"].value):
            xs = np.array([a.mean("trained", "R_f") for a in result.architectures])
            xs = xs[np.isfinite(xs) & (xs > 0)]
            line = np.logspace(np.log10(xs.min()), np.log10(xs.max()), 50)
            ax.plot(line, result.prefactor[0] * line ** result.fit["slope"].value, "k-",
                    label=f"fit: {result.prefactor[0]:.2g} R_f^{result.fit['slope'].value:.2f}")
            ax.plot(line, analysis.PETRINI_PREFACTOR * line ** analysis.PETRINI_SLOPE, "k:",
                    label="Petrini et al.: 0.2 R_f^0.5")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("R_f at the output (trained)")
        ax.set_ylabel("test error")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _curves(records, deformation, stage):
    """{model: (relative depths, {measure: mean over seeds per point})}."""
    grouped = {}
    for r in records:
        if r["stage"] == stage:
            grouped.setdefault(r["model"], []).append(r["deformations"][deformation]["points"])
    curves = {}
    for model, runs in grouped.items():
        depths = [p["relative_depth"] for p in runs[0]]
        values = {m: _finite_mean(np.array([[math.nan if p[m] is None else p[m]
                                              for p in points] for points in runs], np.float64))
                  for m in analysis.MEASURES}
        curves[model] = (depths, values)
    return curves


def _finite_mean(values):
    """Mean over axis 0 of the finite values; NaN where there is none."""
    finite = np.isfinite(values)
    count = finite.sum(axis=0)
    total = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), math.nan)


def plot_profiles(records, deformation, path):
    """D_f, G_f, R_f against relative depth (columns) at init and trained (rows)."""
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5), sharex=True)
    for row, stage in enumerate(measure.STAGES):
        for k, (model, (depths, values)) in enumerate(
                _curves(records, deformation, stage).items()):
            for col, m in enumerate(("D_f", "G_f", "R_f")):
                # distinct hues for the first ten, their light shades for the next ten
                axes[row, col].plot(depths, values[m], "-o", ms=2, lw=1, label=model,
                                    color=plt.cm.tab20((2 * k) % 20 + (k // 10) % 2))
        for col, m in enumerate(("D_f", "G_f", "R_f")):
            axes[row, col].set_yscale("log")
            axes[row, col].set_title(f"{MEASURE_NAMES[m]}, {stage}")
            axes[1, col].set_xlabel("relative depth")
    axes[0, 2].legend(fontsize=6, ncol=2)
    fig.suptitle(f"Per-point stability ({deformation}), mean over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(results, directory, notes=(), resamples=analysis.RESAMPLES, seed=0):
    """Analyses results.json's dict; writes report.md and figures/; returns {deformation:
    `analysis.Analysis`}."""
    analyses = {name: analysis.analyse(results["records"], results["dataset"], name, resamples,
                                       seed)
                for name in analysis.DEFORMATIONS
                if all(name in r["deformations"] for r in results["records"])}
    if "diffeo" not in analyses:
        raise ValueError("The results have no diffeo measurements: nothing to judge.")
    figures = os.path.join(directory, "figures")
    os.makedirs(figures, exist_ok=True)
    plot_error_vs_rf(analyses, os.path.join(figures, "error_vs_rf.png"))
    for name in analyses:
        plot_profiles(results["records"], name, os.path.join(figures, f"profiles_{name}.png"))
    with open(os.path.join(directory, REPORT_FILE), "w") as f:
        f.write(report_text(results, analyses, notes, resamples))
    return analyses
