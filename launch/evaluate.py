r"""Measures a model's per-layer deformation stability and filter smoothness; writes JSON.

Measures a trained run (`--model`: a run's output directory, its checkpoint directory or one
checkpoint prefix: any registered model), a `.keras` file, a registered model's fresh
initialization (`--model=NAME`, e.g. lenet or vgg_cifar10_strided, seeded by --seed), or,
without --model, a fresh initialization of the paper's VGG net (--architecture or the data set's,
--downsampling, --width, --seed, --smooth_init_sigma). The images are the first
--num_measure_images of the data set's test split (--dataset; default: the data set the run
trained on, else fashion_mnist); the deformation is --eval_grid_size, --eval_strength (default:
sized to the image: 3x3, C = 2 px at 32 px; 5x5, C = 10 px at 224 px), drawn from --seed as a
training run's measurements are.

  python -m launch.evaluate --model=/runs/cifar10_max_pool --data_dir=/data/cifar10 \
      --output_dir=/runs/cifar10_max_pool/eval

Writes --output_dir/evaluation.json with "sensitivity_cosine", "sensitivity_euclidean",
"relative_stability" (each with per-layer lists) and "smoothness" (per conv layer); refuses to
replace an existing evaluation.json unless --overwrite. A damaged checkpoint (or checkpoint state
file) is an error naming its files (exit status 2); given a run's checkpoint directory whose
latest checkpoint was moved away, the newest complete checkpoint left is measured.
"""

import dataclasses
import os

from absl import flags
from absl import logging
import tensorflow as tf

from deform_tf import deformation
from deform_tf import initializers
from deform_tf import model_io
from deform_tf import sensitivity
from experiments import datasets
from experiments import run_dir
from experiments import runs
from experiments import settings as settings_lib
from experiments import training
from launch import common

flags.DEFINE_string("model", None, "A training run's output directory, a checkpoint directory "
                    "or prefix, a .keras file, or a model registry name (its fresh "
                    "initialization); empty = a fresh initialization of the paper's VGG net.")

FLAGS = flags.FLAGS


def _load(dataset_name):
    """(model, what was measured, the data set) for the flags."""
    if FLAGS.model and (tf.io.gfile.exists(FLAGS.model) or
                        tf.io.gfile.exists(FLAGS.model + ".index")):
        measured = runs.checkpoint_path(FLAGS.model)
        if tf.io.gfile.isdir(measured):  # the directory's latest complete checkpoint
            measured = model_io.latest_checkpoint(measured) or measured
            logging.info("Measuring checkpoint %s.", measured)
        fields = runs.read_fields(measured) if not measured.endswith((".keras", ".h5")) else None
        dataset_name = dataset_name or runs.trained_dataset(fields) or "fashion_mnist"
        return runs.load_model(measured), measured, dataset_name
    dataset_name = dataset_name or "fashion_mnist"
    dataset = datasets.get(dataset_name)
    settings = dict(settings_lib.DEFAULTS, model=FLAGS.model or None,
                    architecture=FLAGS.architecture, downsampling=FLAGS.downsampling,
                    width=FLAGS.width)
    name, entry, options = settings_lib.choose_model(settings, dataset)
    spec = datasets.DataSpec(dataset=dataset_name,
                             channels=settings_lib.input_channels(entry, dataset))
    model = entry.build(dataset.image_shape(spec), dataset.num_classes, FLAGS.seed, **options)
    if FLAGS.smooth_init_sigma:
        initializers.smooth_model_kernels(model, FLAGS.smooth_init_sigma)
    return model, f"{name}: fresh initialization, seed {FLAGS.seed}", dataset_name


def main(argv):
    if len(argv) > 1:
        raise common.usage_error(f"Unexpected arguments: {' '.join(argv[1:])}")
    common.setup_runtime()
    output = os.path.join(FLAGS.output_dir, "evaluation.json")
    if tf.io.gfile.exists(output) and not FLAGS.overwrite:
        raise common.usage_error(f"{output} exists; pass --overwrite to replace it.")
    try:
        model, measured, dataset_name = _load(FLAGS.dataset)
        height, width, channels = (int(s) for s in model.input_shape[1:])
        dataset = datasets.get(dataset_name)
        spec = datasets.DataSpec(dataset=dataset_name, data_dir=FLAGS.data_dir,
                                 channels=channels if channels != dataset.channels else None)
        if dataset_name == "imagenet":  # the images at the model's resolution
            spec = dataclasses.replace(spec, image_size=height)
        if dataset.image_shape(spec) != (height, width, channels):
            raise ValueError(f"The model takes {height}x{width}x{channels} images; data set "
                             f"{dataset_name!r} has {dataset.image_shape(spec)}: give the "
                             "`dataset` it was trained on.")
        images = datasets.measure_images(spec, FLAGS.num_measure_images)
        grid, strength = deformation.default_tps(height, width)
        measured_deformation = deformation.Deformation(
            "tps", FLAGS.eval_grid_size or grid,
            strength if FLAGS.eval_strength is None else FLAGS.eval_strength, seed=FLAGS.seed)
        result = training.measure(model, sensitivity.RepresentationRunner(model),
                                  tf.constant(images), measured_deformation, step=0)
    except (FileNotFoundError, ValueError) as e:
        raise common.usage_error(str(e)) from None
    result.update(model=measured, dataset=dataset_name,
                  grid_size=measured_deformation.grid_size,
                  strength=measured_deformation.strength)
    try:
        tf.io.gfile.makedirs(FLAGS.output_dir)
        run_dir.write_json(output, result)  # atomically: no partial file after a kill
    except (OSError, tf.errors.OpError) as e:
        raise common.usage_error(f"Cannot write {output}: {e}") from None
    logging.info("Wrote %s", output)


if __name__ == "__main__":
    common.run(main)
