r"""Trains any registered model on any registered data set; measures its deformation stability.

  python -m launch.train --model=lenet --dataset=fashion_mnist --train_steps=2000 \
      --output_dir=/runs/lenet
  python -m launch.train --model=resnet18 --dataset=cifar10 --data_dir=/data/cifar10 \
      --epochs=30 --output_dir=/runs/resnet18
  PYTHONPATH=/my/code python -m launch.train --model=my_nets:build --dataset=cifar10 ...

--model: a name of the model registry (`experiments.models`: the paper's
vgg_<config>_<downsampling>, keras.applications networks, fc2/fc4/fc6, lenet, resnet18, ...) or
your own builder as module:function, called as function(input_shape, num_classes, seed=...).
--dataset: a name of the data-set registry (`experiments.datasets`). Grayscale images are given
as RGB to a model that takes 3 channels only. The run directory is the one every launcher
writes (config, checkpoints, TensorBoard summaries, metrics.csv, measurements.json,
final.json); `launch.profile --model=OUTPUT_DIR` and `launch.evaluate --model=OUTPUT_DIR`
measure it. Defaults: SGD with momentum 0.9, batch 128, peak learning rate 0.05 with cosine
decay, weight decay 5e-4; the measured deformation sized to the image (3x3 grid, C = 2 px at
32 px).
"""

from absl import flags

from experiments import models as registry
from launch import common

flags.DEFINE_string("model", None, "The model: a registry name (see --helpfull or the README), "
                    "or module:function for your own builder. Required.")

EXPERIMENT = "train"  # its defaults: experiments.settings.PRESETS["train"]

_train = common.train_main(EXPERIMENT)


def main(argv):
    if not flags.FLAGS.model:
        raise common.usage_error(
            "--model is required: one of " + ", ".join(registry.MODELS) +
            ", or your own builder as module:function.")
    if not flags.FLAGS.dataset:
        raise common.usage_error("--dataset is required: the data set to train on.")
    _train(argv)


if __name__ == "__main__":
    common.run(main)
