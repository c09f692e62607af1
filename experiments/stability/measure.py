"""D_f, G_f and R_f at every point of a trained run's model, at initialization and trained.

`measure_run(run_dir)` rebuilds the run's model twice from its checkpoints/model_config.json:
untrained (`experiments.models.build_from_fields`: the same seed gives the same initial weights
as the run started from) and trained (`experiments.runs.load_model`), and measures both with
`deform_tf.profile.profile` on the first N test images (`experiments.datasets.measure_images`,
normalized as the model was trained, so no preprocessing), at every point and at the output
(`measured_layers`), with two deformations:

  diffeo  Petrini et al.'s maximum-entropy diffeomorphisms at their defaults: cutoff 3 and the
          temperature of a typical displacement of 1 px (`deform_tf.diffeo.
          temperature_for_displacement`, at the image size);
  tps     the paper's thin-plate-spline deformation sized to the image (`deform_tf.deformation.
          default_tps`: 3 x 3 grid, C = 2 px at 32 px).

Both draw their deformations and noise from the run's seed (`deform_tf.deformation`). The
result goes to `<run_dir>/stability.json` (`STABILITY_FILE`); a run that has one is not measured
again.
"""

import json
import os

import keras
import tensorflow as tf

from deform_tf import deformation as deformation_lib
from deform_tf import diffeo
from deform_tf import profile as profile_lib
from deform_tf import representations
from deform_tf import sensitivity
from experiments import datasets
from experiments import models as registry
from experiments import run_dir as run_files
from experiments import runs

STABILITY_FILE = "stability.json"
DISPLACEMENT = 1.0  # Petrini's typical displacement, pixels
CUTOFF = 3  # Petrini's default cutoff (highest sine mode per axis)
STAGES = ("init", "trained")


def deformations(height, width, seed):
    """{"diffeo": Deformation, "tps": Deformation} measured on [height, width] images."""
    size = min(int(height), int(width))
    temperature = float(diffeo.temperature_for_displacement(DISPLACEMENT, CUTOFF, size))
    return {
        "diffeo": deformation_lib.Deformation("diffeo", temperature=temperature, cutoff=CUTOFF,
                                              seed=seed),
        "tps": deformation_lib.Deformation("tps", seed=seed),
    }


def point_record(row):
    """One point of stability.json from a `deform_tf.profile.ProfileRow` (None = undefined)."""
    return {"name": row.point.name, "relative_depth": row.point.relative_depth,
            "layer_type": row.point.layer_type, "D_f": row.deformation_stability,
            "G_f": row.noise_stability, "R_f": row.relative_stability,
            "sensitivity_cosine": row.sensitivity_cosine}


def measured_layers(model):
    """The points measured: the default selection (`deform_tf.representations`), which ends
    with the output, or for a model that declares its points (the paper's VGG, whose declared
    points end at the last downsampling) the input, those points and the output layer."""
    declared = representations.declared_measured_layers(model)
    if declared is None:
        return None
    output = model.layers[-1].name
    return ["input", *declared] + ([] if output in declared else [output])


def measure_model(model, images, seed, name):
    """{deformation name: [point record]} of one model on [N, H, W, C] float32 images."""
    height, width = images.shape[1:3]
    runner = sensitivity.make_runner(model, images, measured_layers(model))
    result = {}
    for key, spec in deformations(height, width, seed).items():
        rows = profile_lib.profile(None, images, spec.measure(height, width), runner=runner,
                                   noise_seed=deformation_lib.noise_seed(seed), name=name)
        result[key] = [point_record(row) for row in rows]
    return result


def _read_json(path):
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); remove it to measure again.") from None


def measure_run(run_dir, data_dir=None, num_images=64):
    """Measures a finished run at init and trained; writes and returns stability.json's dict.

    Args:
      run_dir: a run directory of `experiments.training.train` (final.json, checkpoints/).
      data_dir: where the run's data set is (None: its standard locations).
      num_images: N, the first N test images measured.

    Returns:
      {"model", "kind", "seed", "dataset", "num_images", "test_error", "train_error",
       "deformations": {name: its settings}, "stages": {"init"|"trained": {name: [point]}}},
      each point {"name", "relative_depth", "layer_type", "D_f", "G_f", "R_f",
      "sensitivity_cosine"}. An existing stability.json is returned as it is.

    Raises:
      FileNotFoundError: the run has not finished (no final.json) or has no model description.
      ValueError: unreadable files, data that do not fit the model.
    """
    path = os.path.join(run_dir, STABILITY_FILE)
    if tf.io.gfile.exists(path):
        return _read_json(path)
    final_path = os.path.join(run_dir, run_files.FINAL_FILE)
    if not tf.io.gfile.exists(final_path):
        raise FileNotFoundError(f"{run_dir} has no final.json: the run has not finished; "
                                "train it first.")
    final = _read_json(final_path)
    checkpoints = os.path.join(run_dir, run_files.CHECKPOINT_DIR)
    fields = runs.read_fields(checkpoints)
    if fields is None:
        raise FileNotFoundError(f"{checkpoints} has no model_config.json: the run's model "
                                "cannot be rebuilt.")
    seed = int(fields.get("seed", 0))
    spec = datasets.DataSpec(dataset=fields["dataset"], data_dir=data_dir,
                             channels=int(fields["input_shape"][2]))
    images = datasets.measure_images(spec, num_images)
    height, width = images.shape[1:3]
    stages = {}
    try:
        stages["init"] = measure_model(registry.build_from_fields(fields), images, seed,
                                       f"{fields['model']} (init)")
        keras.backend.clear_session()
        stages["trained"] = measure_model(runs.load_model(checkpoints), images, seed,
                                          fields["model"])
    finally:
        keras.backend.clear_session()
    result = {
        "model": fields["model"], "kind": registry.get(fields["model"]).kind, "seed": seed,
        "dataset": fields["dataset"], "num_images": int(images.shape[0]),
        "test_error": _error(final.get("accuracy")),
        "train_error": _error(final.get("train_accuracy")),
        "deformations": {key: spec.settings(height, width)
                         for key, spec in deformations(height, width, seed).items()},
        "stages": stages,
    }
    temporary = path + ".tmp"
    with tf.io.gfile.GFile(temporary, "w") as f:
        json.dump(result, f, indent=1)
    tf.io.gfile.rename(temporary, path, overwrite=True)
    return result


def _error(accuracy):
    return None if accuracy is None else 1.0 - float(accuracy)
