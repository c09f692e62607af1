"""Collects the measurements of a grid's runs into one results dict (and CSV tables).

The dict `R` is what `deform_tf.figures.paper` draws and `launch.report` judges:

  R["title"]
  R["training"][group][variant]  for group "real" / "random" (and R["imagenet"][variant]):
      seeds [seed], layers, conv_layers, steps,
      sensitivity{cosine, euclidean} [seed][step][layer], relative_stability [seed][step][layer],
      smoothness [seed][step][conv], accuracy [seed]
  R["smooth_init"]: sigmas, layers, seeds{sigma: [seed]}, sensitivity{sigma: [seed][layer]},
      smoothness{sigma: [seed][conv]}
  R["synthetic"]: strengths, conv_layers, seeds{C: [seed]}, smoothness_init{C: [seed][conv]},
      smoothness_final{C: [seed][conv]}, accuracy{C: [seed]}

`seeds` lists the seed number of each entry along the [seed] axes, so that conditions trained
with the same seeds (same initial weights) can be compared seed by seed (`launch.report`).

Only runs with a final.json count; seeds of one condition must share their measurement steps.
"""

import collections
import csv
import json
import os

import numpy as np
import tensorflow as tf


def _load(path):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _conv_rows(rows):
    """Smoothness of the 3x3 conv layers only (strided variants' 2x2 convs excluded)."""
    return [r for r in rows if "_conv" in r["layer"]]


def load_run(run_dir):
    """(measurements, final) of a finished run, or None if it has not finished."""
    if not tf.io.gfile.exists(os.path.join(run_dir, "final.json")):
        return None
    return _load(os.path.join(run_dir, "measurements.json")), _load(
        os.path.join(run_dir, "final.json"))


def _training_entry(runs):
    """Per-variant arrays from the finished runs [(seed, measurements, final)] of its seeds."""
    seeds = [seed for seed, _, _ in runs]
    runs = [(measurements, final) for _, measurements, final in runs]
    steps = [m["step"] for m in runs[0][0]]
    for measurements, _ in runs:
        if [m["step"] for m in measurements] != steps:
            raise ValueError(f"Seeds measured at different steps: {steps} vs "
                             f"{[m['step'] for m in measurements]}.")
    first = runs[0][0][0]
    return {
        "seeds": seeds,
        "layers": first["sensitivity_cosine"]["layers"],
        "conv_layers": [r["layer"] for r in _conv_rows(first["smoothness"])],
        "steps": steps,
        "sensitivity": {
            d: [[m[f"sensitivity_{d}"]["sensitivity"] for m in ms] for ms, _ in runs]
            for d in ("cosine", "euclidean")},
        "relative_stability": [[m["relative_stability"]["relative_stability"] for m in ms]
                               for ms, _ in runs],
        "smoothness": [[[r["smoothness"] for r in _conv_rows(m["smoothness"])] for m in ms]
                       for ms, _ in runs],
        "accuracy": [final.get("accuracy", float("nan")) for _, final in runs],
    }


def collect(runs, root, title):
    """The results dict R of the finished runs of a grid (see the module docstring)."""
    by_group = collections.defaultdict(lambda: collections.defaultdict(list))
    for run in runs:
        loaded = load_run(os.path.join(root, run.name))
        if loaded is not None:
            by_group[run.group][run.condition].append((run.seed, *loaded))
    results = {"title": title}
    training = {g: {c: _training_entry(v) for c, v in by_group[g].items()}
                for g in ("real", "random") if by_group[g]}
    if training:
        results["training"] = training
    if by_group["imagenet"]:
        results["imagenet"] = {c: _training_entry(v) for c, v in by_group["imagenet"].items()}
    if by_group["smooth_init"]:
        entries = {c: _training_entry(v) for c, v in by_group["smooth_init"].items()}
        sigmas = sorted(entries, key=float)
        results["smooth_init"] = {
            "sigmas": [float(s) for s in sigmas],
            "layers": entries[sigmas[0]]["layers"],
            "seeds": {s: entries[s]["seeds"] for s in sigmas},
            "sensitivity": {s: [seed[0] for seed in entries[s]["sensitivity"]["cosine"]]
                            for s in sigmas},
            "smoothness": {s: [seed[0] for seed in entries[s]["smoothness"]] for s in sigmas},
        }
    if by_group["synthetic"]:
        entries = {c: _training_entry(v) for c, v in by_group["synthetic"].items()}
        strengths = sorted(entries, key=float)
        results["synthetic"] = {
            "strengths": [float(c) for c in strengths],
            "conv_layers": entries[strengths[0]]["conv_layers"],
            "seeds": {c: entries[c]["seeds"] for c in strengths},
            "smoothness_init": {c: [seed[0] for seed in entries[c]["smoothness"]]
                                for c in strengths},
            "smoothness_final": {c: [seed[-1] for seed in entries[c]["smoothness"]]
                                 for c in strengths},
            "accuracy": {c: entries[c]["accuracy"] for c in strengths},
        }
    return results


def write_tables(results, directory):
    """Writes the numbers behind the figures as CSV (one row per condition, layer)."""
    tf.io.gfile.makedirs(directory)
    rows = []
    for group, entries in results.get("training", {}).items():
        for variant, e in entries.items():
            for k, step in enumerate(e["steps"]):
                for l, layer in enumerate(e["layers"]):
                    values = np.array([seed[k][l] for seed in e["sensitivity"]["cosine"]])
                    rs = np.array([seed[k][l] for seed in e["relative_stability"]])
                    rows.append(dict(group=group, variant=variant, step=step, layer_index=l,
                                     layer=layer, sensitivity_mean=values.mean(),
                                     sensitivity_std=values.std(),
                                     relative_stability_mean=rs.mean(), seeds=len(values)))
    _write_csv(os.path.join(directory, "sensitivity.csv"), rows)
    rows = []
    for group, entries in results.get("training", {}).items():
        for variant, e in entries.items():
            for k, step in enumerate(e["steps"]):
                for c, layer in enumerate(e["conv_layers"]):
                    values = np.array([seed[k][c] for seed in e["smoothness"]])
                    rows.append(dict(group=group, variant=variant, step=step, conv_index=c + 1,
                                     layer=layer, smoothness_mean=values.mean(),
                                     smoothness_std=values.std(), seeds=len(values)))
    synthetic = results.get("synthetic")
    if synthetic:
        for c in synthetic["smoothness_final"]:
            for which in ("smoothness_init", "smoothness_final"):
                values = np.array(synthetic[which][c])
                for i, layer in enumerate(synthetic["conv_layers"]):
                    rows.append(dict(group="synthetic", variant=f"C={c}",
                                     step="init" if which.endswith("init") else "final",
                                     conv_index=i + 1, layer=layer,
                                     smoothness_mean=values[:, i].mean(),
                                     smoothness_std=values[:, i].std(), seeds=len(values)))
    _write_csv(os.path.join(directory, "smoothness.csv"), rows)
    smooth = results.get("smooth_init")
    if smooth:
        rows = []
        for sigma, values in smooth["sensitivity"].items():
            values = np.array(values)
            for l, layer in enumerate(smooth["layers"]):
                rows.append(dict(sigma=sigma, layer_index=l, layer=layer,
                                 sensitivity_mean=values[:, l].mean(),
                                 sensitivity_std=values[:, l].std(), seeds=len(values)))
        _write_csv(os.path.join(directory, "smooth_init.csv"), rows)


def _write_csv(path, rows):
    if not rows:
        return
    with tf.io.gfile.GFile(path, "w") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
