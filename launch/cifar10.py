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

EXPERIMENT = "cifar10"
DEFAULTS = dict(dataset="cifar10", batch_size=128, learning_rate=0.05, epochs=100.0,
                warmup_epochs=1.0, weight_decay=5e-4, eval_grid_size=3, eval_strength=2.0)

main = common.train_main(EXPERIMENT, DEFAULTS)

if __name__ == "__main__":
    common.run(main)
