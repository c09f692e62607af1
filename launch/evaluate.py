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
replace an existing evaluation.json unless --overwrite.
"""

import dataclasses
import json
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
            model = model_io.load_model(FLAGS.model)
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
    result.update(model=FLAGS.model or "fresh initialization", dataset=dataset,
                  grid_size=config.eval_grid_size, strength=config.eval_strength)
    tf.io.gfile.makedirs(FLAGS.output_dir)
    with tf.io.gfile.GFile(output, "w") as f:
        json.dump(result, f, indent=1)
    logging.info("Wrote %s", output)


if __name__ == "__main__":
    common.run(main)
