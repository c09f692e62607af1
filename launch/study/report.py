"""Writes a reproduction's outputs: results.json, the CSV tables, the figures and report.md.

report.md states the run's title and notes, the verdict of each of the paper's five findings
(`launch.study.findings`) with the effects behind it, the test accuracy of the trained
conditions, and every figure drawn (`launch.study.figures`; Fig. 1/2 by
`launch.deformation_figures`).
"""

import json
import os

import numpy as np
import tensorflow as tf

from deform_tf import tps
from launch.study import figures as study_figures
from launch.study import findings as findings_lib
from launch.study import results as results_lib
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
              "A finding agrees when each of its effects (positive = as the paper found) "
              "exceeds twice its standard error (SE) over seeds; the table gives the weakest "
              "effect.", "",
              "| # | finding | verdict | weakest effect: mean ± SE (seeds) |",
              "| --- | --- | --- | --- |"]
    for finding in findings:
        headline = str(finding.headline) if finding.headline else "-"
        lines.append(f"| {finding.number} | {finding.statement} | **{finding.verdict}** | "
                     f"{headline} |")
    lines.append("")
    for finding in findings:
        lines += [f"### Finding {finding.number}: {finding.verdict}", "", finding.statement, ""]
        if finding.criterion is not None:
            lines.append(f"Criterion: {finding.criterion}.")
            lines.append("")
        lines += [f"Measured: {finding.measured}.", ""]
    accuracy = {f"{group}/{variant}": curves.accuracy
                for group, variants in results.training.items()
                for variant, curves in variants.items()}
    if accuracy:
        lines += ["## Test accuracy after training (mean ± std over seeds)", "",
                  "| run | accuracy |", "| --- | --- |"]
        lines += [f"| {k} | {findings_lib.mean_std_text(v)} |" for k, v in accuracy.items()]
        lines.append("")
    lines += ["## Figures", ""]
    for stem, filename in figures.items():
        lines += [f"### {FIGURE_CAPTIONS.get(stem, stem)}", "", f"![{stem}]({filename})", ""]
    with tf.io.gfile.GFile(os.path.join(directory, "report.md"), "w") as f:
        f.write("\n".join(lines))
    return findings


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
