"""Keras layer applying the paper's random thin-plate-spline deformation.

Follows Keras' random preprocessing layers (e.g. `RandomFlip`): inside a model it deforms during
`fit` and not in `predict`/`evaluate` or `model(x, training=False)` (unless
`apply_in_inference=True`); called directly, e.g. in `tf.data.Dataset.map`, `training` defaults
to True so it deforms (as in Keras, so does a bare `model(x)` call). Each call draws a fresh stateless seed from a Keras
`SeedGenerator`; pass `seed=` to the call to control the deformation exactly (per batch [2] or per
example [batch, 2]), which is what deterministic input pipelines should do.
"""

import keras
import tensorflow as tf

from deform_tf import checks
from deform_tf import dense_warp
from deform_tf import tps


@keras.saving.register_keras_serializable(package="deform_tf")
class RandomTPSDeformation(keras.layers.Layer):
    """Random TPS deformation of [batch, height, width, channels] images (static H, W).

    Args:
      grid_size: int n (n x n control grid, border included) or (rows, cols), each >= 2.
      strength: C >= 0, maximal source offset per axis, in pixels.
      seed: int or None, seeds the layer's `SeedGenerator`.
      apply_in_inference: also deform when `training` is False.

    Call args:
      inputs: the images. Float images keep their dtype; integer images come back as float32.
      training: deform only if True (or `apply_in_inference`). Defaults to True, as Keras'
        random preprocessing layers, so the layer deforms when used as a `tf.data` map function.
      seed: optional stateless seed, int [2] or [batch, 2], instead of the layer's generator.
    """

    def __init__(self, grid_size, strength, seed=None, apply_in_inference=False, **kwargs):
        super().__init__(**kwargs)
        rows, cols = checks.check_grid_size(grid_size)
        self.grid_size = (rows, cols)
        self.strength = checks.check_strength(float(strength))
        self.seed = seed
        self.apply_in_inference = bool(apply_in_inference)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=True, seed=None):
        images = tf.convert_to_tensor(inputs)
        if not (training or self.apply_in_inference):
            return tf.cast(images, dense_warp.output_dtype(images.dtype))
        if seed is None:
            seed = self.seed_generator.next()
        return tps.random_tps_deformation(images, self.grid_size, self.strength, seed)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            grid_size=list(self.grid_size),
            strength=self.strength,
            seed=self.seed,
            apply_in_inference=self.apply_in_inference,
        )
        return config
