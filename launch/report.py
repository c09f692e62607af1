"""Judges the paper's five findings (SPEC §6) on a results dict and writes report.md.

Every verdict comes from an explicit numeric criterion stated in the report next to the numbers
it used, so a reader can disagree with the criterion without re-running anything. Sections whose
runs are missing say "not measured".
"""

import os

import numpy as np
import tensorflow as tf

POOLED = ("max_pool", "avg_pool")
NOT_POOLED = ("subsample", "strided", "strided_relu")
AGREES, DISAGREES, NOT_MEASURED = "agrees", "does not agree", "not measured"
INCONCLUSIVE = "inconclusive (right direction, within seed noise)"


def _last_layer(entry, step_index, distance="cosine"):
    """Mean over seeds of the last measured layer's sensitivity at a measurement step."""
    return float(np.mean([seed[step_index][-1] for seed in entry["sensitivity"][distance]]))


def _mean_smoothness(entry, step_index):
    return float(np.mean([np.mean(seed[step_index]) for seed in entry["smoothness"]]))


def _fmt(values):
    return ", ".join(f"{k} {v:.3f}" for k, v in values.items())


def finding_1(results):
    real = results.get("training", {}).get("real", {})
    pooled = {v: _last_layer(real[v], 0) for v in POOLED if v in real}
    other = {v: _last_layer(real[v], 0) for v in NOT_POOLED if v in real}
    statement = ("At initialization, pooling (max/avg) lowers deformation sensitivity; "
                 "strided and subsampled nets are more sensitive (Fig. 3a/c).")
    if not pooled or not other:
        return dict(statement=statement, verdict=NOT_MEASURED, measured="needs pooled and "
                    "non-pooled variants")
    ok = max(pooled.values()) < min(other.values())
    return dict(statement=statement, verdict=AGREES if ok else DISAGREES,
                criterion="every pooled variant's last-layer sensitivity at init is below "
                "every non-pooled variant's",
                measured=f"last-layer cosine sensitivity at init (mean over seeds): "
                f"{_fmt({**pooled, **other})}")


def finding_2(results):
    real = results.get("training", {}).get("real", {})
    statement = ("After training, the per-layer sensitivity pattern is nearly the same whatever "
                 "the downsampling; pooled nets' sensitivity can rise during training (Fig. 3b/d).")
    if len(real) < 2:
        return dict(statement=statement, verdict=NOT_MEASURED, measured="needs 2+ variants")
    init = {v: _last_layer(e, 0) for v, e in real.items()}
    final = {v: _last_layer(e, -1) for v, e in real.items()}
    spread_init = max(init.values()) - min(init.values())
    spread_final = max(final.values()) - min(final.values())
    ok = spread_final < 0.5 * spread_init
    rises = []
    for v in POOLED:
        if v in real:
            e = real[v]
            mean_init = np.mean([s[0] for s in e["sensitivity"]["cosine"]], axis=0)
            mean_final = np.mean([s[-1] for s in e["sensitivity"]["cosine"]], axis=0)
            rises.append(f"{v}: {int(np.sum(mean_final[1:] > mean_init[1:]))} of "
                         f"{len(mean_init) - 1} layers rose")
    return dict(statement=statement, verdict=AGREES if ok else DISAGREES,
                criterion="the spread (max - min over variants) of last-layer sensitivity "
                "after training is less than half the spread at init",
                measured=f"spread at init {spread_init:.3f}, after training {spread_final:.3f}; "
                f"after training: {_fmt(final)}; " + "; ".join(rises))


def finding_3(results):
    smooth = results.get("smooth_init")
    statement = "Smoother random filters (larger sigma) give lower sensitivity at every layer " \
                "(Fig. 4)."
    if not smooth or len(smooth["sigmas"]) < 2:
        return dict(statement=statement, verdict=NOT_MEASURED, measured="needs 2+ sigmas")
    keys = sorted(smooth["sensitivity"], key=float)
    means = np.array([np.mean(smooth["sensitivity"][k], axis=0) for k in keys])  # [sigma, layer]
    layers = means.shape[1] - 1  # the input (layer 0) does not depend on the filters
    lower = int(np.sum(means[-1, 1:] < means[0, 1:]))
    monotone = int(np.sum(np.all(np.diff(means[:, 1:], axis=0) <= 0, axis=0)))
    ok = lower == layers
    return dict(statement=statement, verdict=AGREES if ok else DISAGREES,
                criterion="at every layer past the input, the largest sigma's mean sensitivity "
                "is below sigma = 0's",
                measured=f"lower at {lower} of {layers} layers; monotone in sigma at {monotone} "
                f"of {layers}; last layer: " + _fmt({f"sigma {k}": means[i, -1]
                                                     for i, k in enumerate(keys)}))


def finding_4(results):
    synthetic = results.get("synthetic")
    statement = "Tasks that need more stability (larger C) give smoother trained filters (Fig. 5)."
    if not synthetic or len(synthetic["strengths"]) < 2:
        return dict(statement=statement, verdict=NOT_MEASURED, measured="needs 2+ strengths")
    keys = sorted(synthetic["smoothness_final"], key=float)
    per_seed = {k: np.mean(synthetic["smoothness_final"][k], axis=1) for k in keys}
    means = {k: float(np.mean(v)) for k, v in per_seed.items()}
    corr = float(np.corrcoef([float(k) for k in keys], list(means.values()))[0, 1])
    low, high = per_seed[keys[0]], per_seed[keys[-1]]
    difference = means[keys[0]] - means[keys[-1]]
    # Standard error of the difference of two seed means (sample std over seeds).
    stderr = float(np.sqrt(sum(np.var(v, ddof=1) / len(v) for v in (low, high)
                               if len(v) > 1)))
    if corr < 0 and difference > 2 * stderr:
        verdict = AGREES
    elif corr < 0 and difference > 0:
        verdict = INCONCLUSIVE
    else:
        verdict = DISAGREES
    init = float(np.mean([np.mean(synthetic["smoothness_init"][k]) for k in keys]))
    spread = {f"C={k}": f"{means[k]:.3f} ± {np.std(per_seed[k], ddof=1) if len(per_seed[k]) > 1 else 0:.3f}"
              for k in keys}
    return dict(statement=statement, verdict=verdict,
                criterion="mean trained smoothness measure (lower = smoother) falls with C "
                "(negative correlation) and the smallest-vs-largest-C difference exceeds two "
                "standard errors over seeds",
                measured="mean smoothness measure after training (± std over seeds): "
                + ", ".join(f"{k} {v}" for k, v in spread.items())
                + f" (init {init:.3f}); correlation with C {corr:.2f}; difference C={keys[0]} "
                f"- C={keys[-1]}: {difference:.4f}, 2 standard errors {2 * stderr:.4f}")


def finding_5(results):
    training = results.get("training", {})
    statement = ("Trained filters are smoother than at init; on CIFAR-10 smoothness falls with "
                 "depth; with random labels smoothness depends on the architecture (Fig. 6, 7).")
    real, random = training.get("real", {}), training.get("random", {})
    if not real:
        return dict(statement=statement, verdict=NOT_MEASURED, measured="needs trained runs")
    smoother = {v: (_mean_smoothness(e, 0), _mean_smoothness(e, -1)) for v, e in real.items()}
    n_smoother = sum(final < init for init, final in smoother.values())
    slopes = []
    for e in real.values():
        per_layer = np.mean([seed[-1] for seed in e["smoothness"]], axis=0)
        slopes.append(np.polyfit(np.arange(len(per_layer)), per_layer, 1)[0])
    slope = float(np.mean(slopes))
    parts = [f"{n_smoother} of {len(real)} variants end smoother than at init (mean measure "
             + _fmt({v: f for v, (_, f) in smoother.items()}) + f"; init mean "
             f"{np.mean([i for i, _ in smoother.values()]):.3f})",
             f"slope of the trained smoothness measure over conv depth {slope:+.4f} per layer "
             f"({'rising measure = less smooth with depth' if slope > 0 else 'falling measure = smoother with depth'})"]
    ok = n_smoother == len(real) and slope > 0
    if random:
        spread = lambda group: np.ptp([_mean_smoothness(e, -1) for e in group.values()])
        spread_real, spread_random = float(spread(real)), float(spread(random))
        parts.append(f"spread of mean smoothness across variants: real labels "
                     f"{spread_real:.3f}, random labels {spread_random:.3f}")
        ok = ok and spread_random > spread_real
    return dict(statement=statement, verdict=AGREES if ok else DISAGREES,
                criterion="every variant ends smoother than at init, the measure rises with "
                "depth (CIFAR-10 pattern), and the across-variant spread is larger with random "
                "labels",
                measured="; ".join(parts))


FINDINGS = (finding_1, finding_2, finding_3, finding_4, finding_5)

FIGURE_CAPTIONS = {
    "fig1_examples": "Fig. 1: images and their random TPS deformations.",
    "fig2_photo": "Fig. 2: how a deformation is built (grid, sources, field, result), photo.",
    "fig2_digit": "Fig. 2: the same construction on a Fashion-MNIST item.",
    "fig3": "Fig. 3: per-layer deformation sensitivity at init and after training, per "
            "downsampling variant (mean ± 2 std over seeds).",
    "fig4": "Fig. 4: sensitivity at init for Gaussian-smoothed initial filters (sigma sweep).",
    "fig5": "Fig. 5: synthetic task samples for C = 1..4 and trained filter smoothness per C.",
    "fig6": "Fig. 6: filter smoothness after training per variant, real and random labels.",
    "fig7": "Fig. 7: sensitivity after training on random labels per variant.",
    "sensitivity_across_training": "Beyond the paper: sensitivity at every measurement step.",
    "relative_stability": "Beyond the paper: Petrini et al.'s relative stability R_f per layer.",
}


def judge(results):
    """The five findings with verdicts and the numbers behind them."""
    return [dict(number=i + 1, **f(results)) for i, f in enumerate(FINDINGS)]


def write_report(results, figures, directory, notes=()):
    """Writes directory/report.md showing `figures` (file stems -> PNG names) and findings."""
    findings = judge(results)
    lines = [f"# Reproduction report: {results['title']}", ""]
    lines += [f"- {note}" for note in notes]
    lines += ["", "## Findings of the paper (SPEC §6)", "",
              "| # | finding | verdict |", "| --- | --- | --- |"]
    lines += [f"| {f['number']} | {f['statement']} | **{f['verdict']}** |" for f in findings]
    lines.append("")
    for f in findings:
        lines += [f"### Finding {f['number']}: {f['verdict']}", "", f["statement"], ""]
        if "criterion" in f:
            lines.append(f"Criterion: {f['criterion']}.")
            lines.append("")
        lines += [f"Measured: {f['measured']}.", ""]
    accuracy = {f"{g}/{v}": np.mean(e["accuracy"])
                for g, entries in results.get("training", {}).items()
                for v, e in entries.items()}
    if accuracy:
        lines += ["## Test accuracy after training (mean over seeds)", "",
                  "| run | accuracy |", "| --- | --- |"]
        lines += [f"| {k} | {v:.3f} |" for k, v in accuracy.items()]
        lines.append("")
    lines += ["## Figures", ""]
    for stem, filename in figures.items():
        lines += [f"### {FIGURE_CAPTIONS.get(stem, stem)}", "", f"![{stem}]({filename})", ""]
    with tf.io.gfile.GFile(os.path.join(directory, "report.md"), "w") as f:
        f.write("\n".join(lines))
    return findings


def synthetic_samples(strengths, data_dir=None, per_row=6, seed=0):
    """Fig. 5a: deformed prototypes of the synthetic task, {C: [per_row, 32, 32] in [0, 1]}."""
    from deform_tf import tps  # pylint: disable=g-import-not-at-top
    from pipelines import mnist  # pylint: disable=g-import-not-at-top
    prototypes, _ = mnist.prototypes("fashion_mnist", data_dir)
    chosen = prototypes[np.arange(per_row) % len(prototypes)]
    samples = {}
    for c in strengths:
        deformed = tps.random_tps_deformation(chosen, 3, float(c), [seed, int(c * 1000)])
        samples[c] = np.clip(deformed.numpy()[..., 0], 0.0, 1.0)
    return samples


def make_figures_and_report(results, directory, notes=(), data_dir=None):
    """Writes results.json, the CSV tables, every figure it has data for and report.md.

    Fig. 1/2 (`fig1_examples.png`, `fig2_*.png`) are drawn by `launch.deformation_figures`;
    they are shown if present in `directory/figures`. Returns the findings.
    """
    import json  # pylint: disable=g-import-not-at-top
    from deform_tf.figures import paper  # pylint: disable=g-import-not-at-top
    from launch import results as results_lib  # pylint: disable=g-import-not-at-top
    figures_dir = os.path.join(directory, "figures")
    tf.io.gfile.makedirs(figures_dir)
    with tf.io.gfile.GFile(os.path.join(directory, "results.json"), "w") as f:
        json.dump(results, f)
    results_lib.write_tables(results, os.path.join(directory, "tables"))
    written, skipped = paper.render_all(results, figures_dir)
    if "synthetic" in results:
        samples = synthetic_samples(results["synthetic"]["strengths"], data_dir)
        paper.save(paper.plot_fig5(results, sample_images=samples),
                   os.path.join(figures_dir, "fig5.png"))
    figures = {}
    for stem in ("fig1_examples", "fig2_photo", "fig2_digit", *paper.FIGURES):
        if tf.io.gfile.exists(os.path.join(figures_dir, f"{stem}.png")):
            figures[stem] = f"figures/{stem}.png"
    notes = list(notes) + [f"{name}: not drawn ({reason})" for name, reason in skipped.items()]
    return write_report(results, figures, directory, notes)
