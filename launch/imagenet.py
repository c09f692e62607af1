r"""Trains the paper's ImageNet VGG net (docs/method.md#models); measures its deformation stability.

The study compares max_pool with strided_relu downsampling (Fig. 3a/b, 6a): flagfiles
launch/configs/imagenet_max_pool.cfg and imagenet_strided_relu.cfg. `imagenet_quick.cfg` runs the
ImageNet architecture at tiny width on the embedded Fashion-MNIST subset in minutes on 2 CPU
cores (a smoke test of the code path, not an ImageNet result).

  python -m launch.imagenet --flagfile=launch/configs/imagenet_max_pool.cfg \
      --data_dir=/data/imagenet/tfrecords --output_dir=/runs/imagenet_max_pool --strategy=mirrored

Hyperparameters (the paper gives none; standard ImageNet choices): SGD with momentum 0.9, batch
256, peak learning rate 0.1 after 5 warmup epochs, cosine decay over 90 epochs, decoupled weight
decay 1e-4. Deformation measured: 5x5 grid, C = 10 px at 224 px, N = 128.
"""

from absl import flags

from launch import common

flags.DEFINE_integer("image_size", 224, "ImageNet training/eval resolution in pixels.")
flags.register_validator("image_size", lambda v: v >= 32, message="--image_size must be >= 32.")

EXPERIMENT = "imagenet"  # its defaults: experiments.settings.PRESETS["imagenet"]

main = common.train_main(EXPERIMENT,
                         lambda: dict(image_size=flags.FLAGS.image_size))

if __name__ == "__main__":
    common.run(main)
