r"""Trains on the paper's synthetic prototype task (Fig. 5) and measures filter smoothness.

Each of the 10 classes is one Fashion-MNIST (or MNIST) image; every example is a fresh random
TPS deformation of strength C (--synthetic_strength, 3x3 grid) of its class prototype. Tasks
with larger C need more deformation stability; the paper finds they give smoother filters.
Flagfiles: launch/configs/synthetic_c{1,2,3,4}.cfg and synthetic_quick.cfg.

  python -m launch.synthetic_mnist --flagfile=launch/configs/synthetic_c3.cfg \
      --output_dir=/runs/synthetic_c3

Hyperparameters (the paper gives none): the CIFAR-10 net on 32x32 padded digits, SGD with
momentum 0.9, batch 128, peak learning rate 0.05 with cosine decay over 5000 steps (no warmup),
weight decay 5e-4. Test: a fixed set of 1000 deformed prototypes.
"""

import math

from absl import flags

from launch import common

flags.DEFINE_float("synthetic_strength", 1.0, "C of the task: deformation strength (px) of "
                   "the training and test examples.")
flags.DEFINE_enum("synthetic_source", "fashion_mnist", ["fashion_mnist", "mnist"],
                  "Where the 10 prototypes come from (first image of each class).")
flags.register_validator("synthetic_strength", lambda v: math.isfinite(v) and v >= 0,
                         message="--synthetic_strength must be a finite number >= 0.")

EXPERIMENT = "synthetic_mnist"  # its defaults: experiments.settings.PRESETS["synthetic_mnist"]

main = common.train_main(
    EXPERIMENT,
    lambda: dict(synthetic_strength=flags.FLAGS.synthetic_strength,
                 synthetic_source=flags.FLAGS.synthetic_source))

if __name__ == "__main__":
    common.run(main)
