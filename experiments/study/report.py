"""Writes a reproduction's outputs: results.json, the CSV tables, the figures and report.md.

report.md states the run's title and notes, the verdict of each of the paper's five findings
(`experiments.study.findings`) with the effects behind it and the run's power, the training and test
accuracy of every trained run, and every figure drawn (`experiments.study.figures`; Fig. 1/2 by
`launch.deformation_figures`).
"""

import json
import os

import numpy as np
import tensorflow as tf

from deform_tf import tps
from experiments.study import figures as study_figures
from experiments.study import findings as findings_lib
from experiments.study import results as results_lib
from pipelines import mnist

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


def write_report(results, figures, directory, notes=()):
    """Writes directory/report.md: `notes`, the findings on `results`, `figures` (file stem ->
    PNG path relative to `directory`); returns the Findings."""
    findings = findings_lib.judge(results)
    lines = [f"# Reproduction report: {results.title}", ""]
    lines += [f"- {note}" for note in notes]
    lines += ["", "## Findings of the paper (docs/method.md#findings in the repository)", "",
              "A finding *agrees* when each of its effects (positive = as the paper found) "
              "exceeds twice its standard error (SE) over seeds, *contradicts* when an effect "
              "is below -2 SE, and is *not shown* otherwise. The table gives the weakest "
              "effect and the effect the run would show with 80% probability (2.8 SE of the "
              "weakest effect).", "",
              "| # | finding | verdict | weakest effect: mean ± SE (seeds) | shown at 80% from |",
              "| --- | --- | --- | --- | --- |"]
    for finding in findings:
        headline = str(finding.headline) if finding.headline else "-"
        detectable = (f"{finding.headline.detectable:.4f}"
                      if finding.headline and np.isfinite(finding.headline.se) else "-")
        lines.append(f"| {finding.number} | {finding.statement} | **{finding.verdict}** | "
                     f"{headline} | {detectable} |")
    lines.append("")
    for finding in findings:
        lines += [f"### Finding {finding.number}: {finding.verdict}", "", finding.statement, ""]
        if finding.criterion is not None:
            lines.append(f"Criterion: {finding.criterion}.")
            lines.append("")
        lines += [f"Measured: {finding.measured}.", ""]
    lines += accuracy_lines(results)
    lines += ["## Figures", ""]
    for stem, filename in figures.items():
        lines += [f"### {FIGURE_CAPTIONS.get(stem, stem)}", "", f"![{stem}]({filename})", ""]
    with tf.io.gfile.GFile(os.path.join(directory, "report.md"), "w") as f:
        f.write("\n".join(lines))
    return findings


def _per_seed_text(values):
    return ", ".join("-" if not np.isfinite(v) else f"{v:.3f}" for v in values)


def accuracy_lines(results):
    """The report's accuracy section: per trained condition, the training accuracy (on the
    training set as trained, inference mode) and the test accuracy of every seed."""
    rows = []
    for group, variants in results.training.items():
        for variant, curves in variants.items():
            train = list(curves.train_accuracy) or [float("nan")] * len(curves.seeds)
            rows.append(f"| {group}/{variant} | {', '.join(map(str, curves.seeds))} | "
                        f"{_per_seed_text(train)} | {_per_seed_text(curves.accuracy)} |")
    if not rows:
        return []
    return ["## Accuracy after training, per run", "",
            "Training accuracy is measured in inference mode on the training set the run was "
            "trained on, with its labels (random ones for random-label runs: how well the net "
            f"fits them; finding 5 counts random-label runs when every one reaches "
            f"{findings_lib.FIT_ACCURACY:g}); test accuracy on the test set (real labels). "
            "\"-\": not recorded.", "",
            "| condition | seeds | training accuracy (per seed) | test accuracy (per seed) |",
            "| --- | --- | --- | --- |", *rows, ""]


def synthetic_samples(strengths, data_dir=None, per_row=6, seed=0):
    """Fig. 5a: deformed prototypes of the synthetic task, {C: [per_row, 32, 32] in [0, 1]}."""
    prototypes, _ = mnist.prototypes("fashion_mnist", data_dir)
    chosen = prototypes[np.arange(per_row) % len(prototypes)]
    samples = {}
    for c in strengths:
        deformed = tps.random_tps_deformation(chosen, 3, float(c), [seed, int(c * 1000)])
        samples[c] = np.clip(deformed.numpy()[..., 0], 0.0, 1.0)
    return samples


def make_figures_and_report(results, directory, notes=(), data_dir=None):
    """Writes results.json, the CSV tables, every figure `results` has data for and report.md.

    Fig. 1/2 (`fig1_examples.png`, `fig2_*.png`) are drawn by `launch.deformation_figures`;
    they are shown if present in `directory/figures`. Returns the findings.
    """
    figures_dir = os.path.join(directory, "figures")
    tf.io.gfile.makedirs(figures_dir)
    with tf.io.gfile.GFile(os.path.join(directory, "results.json"), "w") as f:
        json.dump(results.to_json(), f)
    results_lib.write_tables(results, os.path.join(directory, "tables"))
    written, skipped = study_figures.render_all(results, figures_dir)
    if results.synthetic is not None:
        samples = synthetic_samples(results.synthetic.strengths, data_dir)
        study_figures.save(study_figures.plot_fig5(results, sample_images=samples),
                           os.path.join(figures_dir, "fig5.png"))
    figures = {}
    for stem in ("fig1_examples", "fig2_photo", "fig2_digit", *study_figures.FIGURES):
        if tf.io.gfile.exists(os.path.join(figures_dir, f"{stem}.png")):
            figures[stem] = f"figures/{stem}.png"
    notes = list(notes) + [f"{name}: not drawn ({reason})" for name, reason in skipped.items()]
    return write_report(results, figures, directory, notes)
