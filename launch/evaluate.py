r"""Measures a model's per-layer deformation stability and filter smoothness; writes JSON.

Measures any saved model (`--model`: a .keras file, or a run's checkpoint directory /
checkpoint prefix) or, without --model, a fresh initialization (built from --architecture or the
data set's, --downsampling, --width, --seed, --smooth_init_sigma). The images are the first
--num_measure_images of the data set's test split; the deformation is --eval_grid_size,
--eval_strength (defaults: 3x3, C = 2 px; 5x5, C = 10 px for ImageNet).

  python -m launch.evaluate --model=/runs/cifar10_max_pool/checkpoints \
      --dataset=cifar10 --data_dir=/data/cifar10 --output_dir=/runs/cifar10_max_pool/eval

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

from deform_tf import initializers
from deform_tf import model_io
from deform_tf import models
from deform_tf import sensitivity
from launch import common
from launch import data_lib
from launch import run_dir
from launch import train_lib

flags.DEFINE_string("model", None, "A .keras file or a checkpoint directory/prefix written by a "
                    "launcher; empty = measure a fresh initialization.")

FLAGS = flags.FLAGS
DEFAULT_DEFORMATION = {"imagenet": (5, 10.0)}


def main(argv):
    if len(argv) > 1:
        raise common.usage_error(f"Unexpected arguments: {' '.join(argv[1:])}")
    common.setup_runtime()
    output = os.path.join(FLAGS.output_dir, "evaluation.json")
    if tf.io.gfile.exists(output) and not FLAGS.overwrite:
        raise common.usage_error(f"{output} exists; pass --overwrite to replace it.")
    dataset = FLAGS.dataset or "fashion_mnist"
    grid, strength = DEFAULT_DEFORMATION.get(dataset, (3, 2.0))
    try:
        spec = data_lib.DataSpec(dataset=dataset, data_dir=FLAGS.data_dir)
        architecture, input_shape, num_classes = data_lib.model_config(spec)
        if FLAGS.model:
            measured = FLAGS.model
            if tf.io.gfile.isdir(FLAGS.model):  # the directory's latest complete checkpoint
                measured = model_io.latest_checkpoint(FLAGS.model) or FLAGS.model
                logging.info("Measuring checkpoint %s.", measured)
            model = model_io.load_model(measured)
        else:
            model = models.vgg(FLAGS.architecture or architecture, FLAGS.downsampling,
                               FLAGS.width, input_shape, num_classes, seed=FLAGS.seed)
            if FLAGS.smooth_init_sigma:
                initializers.smooth_model_kernels(model, FLAGS.smooth_init_sigma)
        if dataset == "imagenet":  # the images at the model's resolution
            spec = dataclasses.replace(spec, image_size=int(model.input_shape[1]))
        images = data_lib.measure_images(spec, FLAGS.num_measure_images)
        config = train_lib.TrainConfig(
            experiment="evaluate", model_config=architecture, downsampling=FLAGS.downsampling,
            width=FLAGS.width, input_shape=tuple(input_shape), num_classes=num_classes,
            seed=FLAGS.seed, batch_size=1, train_steps=0,
            eval_grid_size=FLAGS.eval_grid_size or grid,
            eval_strength=FLAGS.eval_strength if FLAGS.eval_strength is not None else strength)
        result = train_lib.measure(model, sensitivity.RepresentationRunner(model),
                                   tf.constant(images), config, step=0)
    except (FileNotFoundError, ValueError) as e:
        raise common.usage_error(str(e)) from None
    result.update(model=measured if FLAGS.model else "fresh initialization", dataset=dataset,
                  grid_size=config.eval_grid_size, strength=config.eval_strength)
    try:
        tf.io.gfile.makedirs(FLAGS.output_dir)
        run_dir.write_json(output, result)  # atomically: no partial file after a kill
    except (OSError, tf.errors.OpError) as e:
        raise common.usage_error(f"Cannot write {output}: {e}") from None
    logging.info("Wrote %s", output)


if __name__ == "__main__":
    common.run(main)
