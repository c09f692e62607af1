"""The study's results: every finished run of a grid collected into typed results.

`collect` reads the runs of a grid and returns `StudyResults`, what `experiments.study.figures`
draws and `experiments.study.findings` judges; `write_tables` writes the numbers behind the figures
as CSV. results.json stores `StudyResults.to_json()`, read back by `StudyResults.from_json`.

Every per-seed quantity is a plain nested list (as stored in JSON) whose first axis follows the
`seeds` it is listed with, so that conditions trained with the same seeds (same initial
weights, data order, measured images and deformations) can be compared seed by seed
(`experiments.study.findings`). The other axes follow the measurement `steps`, the measured `layers`
(index 0 = the input image) and the `conv_layers` whose filter smoothness is measured.

Only runs with a final.json count; seeds of one condition must share their measurement steps.
"""

import collections
import csv
import dataclasses
import json
import os
from typing import Optional

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class ConditionCurves:
    """The measurements of one trained condition (a downsampling variant), over its seeds.

    Attributes:
      seeds: the seed number of each entry along the [seed] axes.
      layers: names of the measured layers (docs/method.md#sensitivity), [0] = "input".
      conv_layers: names of the 3x3 conv layers whose filters' smoothness is measured (the
        strided variants' 2x2 downsampling convs are left out).
      steps: the measurement steps, first 0 (at initialization), last the final step.
      sensitivity: {"cosine" | "euclidean": [seed][step][layer]}, the normalized deformation
        sensitivity with that distance.
      relative_stability: [seed][step][layer], R_f = D_f / G_f (Petrini et al. 2021).
      smoothness: [seed][step][conv layer], the normalized smoothness measure TV(W) / sum|W|
        (lower = smoother).
      accuracy: [seed], test accuracy after training (NaN when a run recorded none).
      train_accuracy: [seed], accuracy on the training set as trained (its labels, random ones
        for random-label runs; inference mode), NaN when a run recorded none; empty in results
        written before it was recorded.
    """

    seeds: list
    layers: list
    conv_layers: list
    steps: list
    sensitivity: dict
    relative_stability: list
    smoothness: list
    accuracy: list
    train_accuracy: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class SmoothInitSweep:
    """Fig. 4: the CIFAR-10 net at initialization with Gaussian-smoothed filters, per sigma.

    Mappings are keyed by the grid's name of each sigma (e.g. "0", "0.5"), in ascending order.

    Attributes:
      sigmas: the smoothing sigmas in pixels, ascending.
      layers: names of the measured layers, [0] = "input".
      seeds: {sigma: [seed]}, the seed number of each entry along [seed].
      sensitivity: {sigma: [seed][layer]}, cosine deformation sensitivity at init.
      smoothness: {sigma: [seed][conv layer]}, the smoothness measure of the smoothed filters.
    """

    sigmas: list
    layers: list
    seeds: dict
    sensitivity: dict
    smoothness: dict


@dataclasses.dataclass(frozen=True)
class SyntheticSweep:
    """Fig. 5: the synthetic prototype task trained at each deformation strength C (pixels).

    Mappings are keyed by the grid's name of each strength (e.g. "1", "4"), in ascending order.

    Attributes:
      strengths: the strengths C in pixels, ascending.
      conv_layers: names of the conv layers whose filters' smoothness is measured.
      seeds: {C: [seed]}, the seed number of each entry along [seed].
      smoothness_init: {C: [seed][conv layer]}, the smoothness measure at initialization.
      smoothness_final: {C: [seed][conv layer]}, the smoothness measure after training.
      accuracy: {C: [seed]}, test accuracy after training.
    """

    strengths: list
    conv_layers: list
    seeds: dict
    smoothness_init: dict
    smoothness_final: dict
    accuracy: dict


@dataclasses.dataclass(frozen=True)
class StudyResults:
    """Everything the figures and findings use, per group of the grid (absent when not run).

    Attributes:
      title: the profile's title, shown on the figures and the report.
      training: {"real" | "random": {variant: ConditionCurves}}, the CIFAR-10 net trained on
        the real or on random labels (Figs. 3, 6, 7); only the groups that have finished runs.
      imagenet: {variant: ConditionCurves}, the ImageNet net (empty unless run).
      init: {variant: ConditionCurves}, the CIFAR-10 net measured at init only (step 0), at the
        seeds the real-label runs do not have (finding 1; empty unless run).
      smooth_init: the smooth-init sweep (Fig. 4), None unless run.
      synthetic: the synthetic task (Fig. 5), None unless run.
    """

    title: str
    training: dict = dataclasses.field(default_factory=dict)
    imagenet: dict = dataclasses.field(default_factory=dict)
    smooth_init: Optional[SmoothInitSweep] = None
    synthetic: Optional[SyntheticSweep] = None
    init: dict = dataclasses.field(default_factory=dict)

    def to_json(self):
        """The JSON object of results.json: the groups that were run, as nested lists."""
        data = {"title": self.title}
        if self.training:
            data["training"] = {group: {variant: dataclasses.asdict(curves)
                                        for variant, curves in variants.items()}
                                for group, variants in self.training.items()}
        if self.init:
            data["init"] = {variant: dataclasses.asdict(curves)
                            for variant, curves in self.init.items()}
        if self.imagenet:
            data["imagenet"] = {variant: dataclasses.asdict(curves)
                                for variant, curves in self.imagenet.items()}
        if self.smooth_init is not None:
            data["smooth_init"] = dataclasses.asdict(self.smooth_init)
        if self.synthetic is not None:
            data["synthetic"] = dataclasses.asdict(self.synthetic)
        return data

    @classmethod
    def from_json(cls, data):
        """The results of a JSON object written by `to_json` (e.g. a loaded results.json).

        Raises:
          ValueError: a field is missing or unknown; the message names it.
        """
        sections = {"training": {}, "imagenet": {}, "smooth_init": None, "synthetic": None,
                    "init": {}}
        _check_fields(data, ["title"], "results", optional=sections)
        return cls(
            title=data["title"],
            training={group: {variant: _from_fields(ConditionCurves, curves,
                                                    f"results training/{group}/{variant}")
                              for variant, curves in variants.items()}
                      for group, variants in data.get("training", {}).items()},
            imagenet={variant: _from_fields(ConditionCurves, curves, f"results imagenet/{variant}")
                      for variant, curves in data.get("imagenet", {}).items()},
            smooth_init=(_from_fields(SmoothInitSweep, data["smooth_init"], "results smooth_init")
                         if "smooth_init" in data else None),
            synthetic=(_from_fields(SyntheticSweep, data["synthetic"], "results synthetic")
                       if "synthetic" in data else None),
            init={variant: _from_fields(ConditionCurves, curves, f"results init/{variant}")
                  for variant, curves in data.get("init", {}).items()})


def _check_fields(data, required, where, optional=()):
    missing = [name for name in required if name not in data]
    unknown = [name for name in data if name not in required and name not in optional]
    if missing or unknown:
        raise ValueError(f"{where}: missing fields {missing}, unknown fields {unknown} (expected "
                         f"{list(required) + list(optional)}).")


def _from_fields(cls, data, where):
    """`cls(**data)` after checking that `data` has the dataclass's fields (those with a
    default may be missing) and no other."""
    fields = dataclasses.fields(cls)
    required = [f.name for f in fields if f.default_factory is dataclasses.MISSING
                and f.default is dataclasses.MISSING]
    _check_fields(data, required, where,
                  optional=[f.name for f in fields if f.name not in required])
    return cls(**data)


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


def _condition_curves(runs):
    """The ConditionCurves of the finished runs [(seed, measurements, final)] of a condition."""
    seeds = [seed for seed, _, _ in runs]
    runs = [(measurements, final) for _, measurements, final in runs]
    steps = [m["step"] for m in runs[0][0]]
    for measurements, _ in runs:
        if [m["step"] for m in measurements] != steps:
            raise ValueError(f"Seeds measured at different steps: {steps} vs "
                             f"{[m['step'] for m in measurements]}.")
    first = runs[0][0][0]
    return ConditionCurves(
        seeds=seeds,
        layers=first["sensitivity_cosine"]["layers"],
        conv_layers=[r["layer"] for r in _conv_rows(first["smoothness"])],
        steps=steps,
        sensitivity={
            d: [[m[f"sensitivity_{d}"]["sensitivity"] for m in ms] for ms, _ in runs]
            for d in ("cosine", "euclidean")},
        relative_stability=[[m["relative_stability"]["relative_stability"] for m in ms]
                            for ms, _ in runs],
        smoothness=[[[r["smoothness"] for r in _conv_rows(m["smoothness"])] for m in ms]
                    for ms, _ in runs],
        accuracy=[final.get("accuracy", float("nan")) for _, final in runs],
        train_accuracy=[final.get("train_accuracy", float("nan")) for _, final in runs],
    )


def collect(runs, root, title):
    """The StudyResults of the finished runs of a grid (`experiments.study.grid.Run`s under
    root)."""
    by_group = collections.defaultdict(lambda: collections.defaultdict(list))
    for run in runs:
        loaded = load_run(os.path.join(root, run.name))
        if loaded is not None:
            by_group[run.group][run.condition].append((run.seed, *loaded))
    training = {g: {c: _condition_curves(v) for c, v in by_group[g].items()}
                for g in ("real", "random") if by_group[g]}
    imagenet = {c: _condition_curves(v) for c, v in by_group["imagenet"].items()}
    init = {c: _condition_curves(v) for c, v in by_group["init"].items()}
    smooth_init = synthetic = None
    if by_group["smooth_init"]:
        curves = {c: _condition_curves(v) for c, v in by_group["smooth_init"].items()}
        sigmas = sorted(curves, key=float)
        smooth_init = SmoothInitSweep(
            sigmas=[float(s) for s in sigmas],
            layers=curves[sigmas[0]].layers,
            seeds={s: curves[s].seeds for s in sigmas},
            sensitivity={s: [seed[0] for seed in curves[s].sensitivity["cosine"]]
                         for s in sigmas},
            smoothness={s: [seed[0] for seed in curves[s].smoothness] for s in sigmas})
    if by_group["synthetic"]:
        curves = {c: _condition_curves(v) for c, v in by_group["synthetic"].items()}
        strengths = sorted(curves, key=float)
        synthetic = SyntheticSweep(
            strengths=[float(c) for c in strengths],
            conv_layers=curves[strengths[0]].conv_layers,
            seeds={c: curves[c].seeds for c in strengths},
            smoothness_init={c: [seed[0] for seed in curves[c].smoothness] for c in strengths},
            smoothness_final={c: [seed[-1] for seed in curves[c].smoothness]
                              for c in strengths},
            accuracy={c: curves[c].accuracy for c in strengths})
    return StudyResults(title, training, imagenet, smooth_init, synthetic, init)


def write_tables(results, directory):
    """Writes the numbers behind the figures as CSV (one row per condition and layer).

    sensitivity.csv (training groups: cosine sensitivity and relative stability per step and
    layer), smoothness.csv (training groups per step and conv layer, then the synthetic task at
    init and after training), smooth_init.csv (sensitivity per sigma and layer): means and
    population std over seeds.
    """
    tf.io.gfile.makedirs(directory)
    rows = []
    for group, variants in results.training.items():
        for variant, curves in variants.items():
            for step_index, step in enumerate(curves.steps):
                for layer_index, layer in enumerate(curves.layers):
                    values = np.array([seed[step_index][layer_index]
                                       for seed in curves.sensitivity["cosine"]])
                    relative = np.array([seed[step_index][layer_index]
                                         for seed in curves.relative_stability])
                    rows.append(dict(group=group, variant=variant, step=step,
                                     layer_index=layer_index, layer=layer,
                                     sensitivity_mean=values.mean(),
                                     sensitivity_std=values.std(),
                                     relative_stability_mean=relative.mean(),
                                     seeds=len(values)))
    _write_csv(os.path.join(directory, "sensitivity.csv"), rows)
    rows = []
    for group, variants in results.training.items():
        for variant, curves in variants.items():
            for step_index, step in enumerate(curves.steps):
                for conv_index, layer in enumerate(curves.conv_layers):
                    values = np.array([seed[step_index][conv_index]
                                       for seed in curves.smoothness])
                    rows.append(dict(group=group, variant=variant, step=step,
                                     conv_index=conv_index + 1, layer=layer,
                                     smoothness_mean=values.mean(),
                                     smoothness_std=values.std(), seeds=len(values)))
    synthetic = results.synthetic
    if synthetic is not None:
        for strength in synthetic.smoothness_final:
            for step, by_strength in (("init", synthetic.smoothness_init),
                                      ("final", synthetic.smoothness_final)):
                values = np.array(by_strength[strength])
                for conv_index, layer in enumerate(synthetic.conv_layers):
                    rows.append(dict(group="synthetic", variant=f"C={strength}", step=step,
                                     conv_index=conv_index + 1, layer=layer,
                                     smoothness_mean=values[:, conv_index].mean(),
                                     smoothness_std=values[:, conv_index].std(),
                                     seeds=len(values)))
    _write_csv(os.path.join(directory, "smoothness.csv"), rows)
    smooth_init = results.smooth_init
    if smooth_init is not None:
        rows = []
        for sigma, values in smooth_init.sensitivity.items():
            values = np.array(values)
            for layer_index, layer in enumerate(smooth_init.layers):
                rows.append(dict(sigma=sigma, layer_index=layer_index, layer=layer,
                                 sensitivity_mean=values[:, layer_index].mean(),
                                 sensitivity_std=values[:, layer_index].std(),
                                 seeds=len(values)))
        _write_csv(os.path.join(directory, "smooth_init.csv"), rows)


def _write_csv(path, rows):
    if not rows:
        return
    with tf.io.gfile.GFile(path, "w") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
