r"""Trains the paper's CIFAR-10 VGG net (docs/method.md#models); measures its deformation stability.

The study: the five downsampling variants (Fig. 3c/d, 6b), random labels (Fig. 6c, 7) and the
smooth-init sweep (Fig. 4). Flagfiles for each are in launch/configs/cifar10_*.cfg;
`cifar10_quick.cfg` runs in minutes on 2 CPU cores on the embedded Fashion-MNIST subset.

  python -m launch.cifar10 --flagfile=launch/configs/cifar10_max_pool.cfg \
      --data_dir=/data/cifar10 --output_dir=/runs/cifar10_max_pool

Hyperparameters (the paper gives none; standard VGG-on-CIFAR choices): SGD with momentum 0.9,
batch 128, peak learning rate 0.05 after 1 warmup epoch, cosine decay over 100 epochs, decoupled
weight decay 5e-4, no label smoothing. Deformation measured: 3x3 grid, C = 2 px, N = 128.
"""

from launch import common

EXPERIMENT = "cifar10"  # its defaults: experiments.settings.PRESETS["cifar10"]

main = common.train_main(EXPERIMENT)

if __name__ == "__main__":
    common.run(main)
