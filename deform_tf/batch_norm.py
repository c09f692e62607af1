"""Batch-norm statistics recomputed after training ("precise BN", Wu & Johnson 2021).

A `keras.layers.BatchNormalization` layer normalizes with its moving mean and variance at
inference. Those are exponential averages with the layer's `momentum` over the batches of
training, so after a short run they still remember the initialization: keras.applications'
MobileNetV2 keeps momentum 0.999, and after 300 steps 74% of its moving variance is still the
initial 1, while the depthwise layers' batch variances are near 0.005. Such a net fits its
training batches and classifies at chance in inference mode.

`recalibrate(model, batches)` replaces every batch-norm layer's moving statistics with the
exact mean and (biased) variance of its input, per channel, pooled over all examples and
positions of the given batches, as the layer sees them in training-mode forward passes (the
other batch norms normalizing with their batch statistics, as during training). Nothing else
changes: no weight is updated, and each layer's momentum is restored.
"""

import keras
import numpy as np
import tensorflow as tf


def batch_norm_layers(model):
    """Every `keras.layers.BatchNormalization` in `model`, nested models included, in order."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate(model, batches, num_batches):
    """Sets every batch norm's moving statistics to those of `num_batches` batches.

    Args:
      model: a built Keras model.
      batches: an iterable of image batches [B, H, W, C] or of (images, labels) tuples, as the
        model takes them (the same preprocessing as in training).
      num_batches: how many batches to pool (> 0); fewer if `batches` ends first.

    Returns:
      The number of examples pooled (0 when the model has no batch norm, which is left as it
      is).

    Raises:
      ValueError: num_batches < 1, or `batches` holds no batch.
    """
    if num_batches < 1:
        raise ValueError(f"num_batches must be at least 1, got {num_batches}.")
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        # With momentum 0 a training-mode call leaves the batch's own statistics in the moving
        # variables, where they can be read.
        layer.momentum = 0.0
    saved = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in layers]

    @tf.function
    def batch_statistics(images):
        model(images, training=True)
        return [(tf.identity(layer.moving_mean.value), tf.identity(layer.moving_variance.value))
                for layer in layers]

    # Per layer: the sums of the batch means and of the batch second moments, weighted by the
    # batch size (equal positions per example within a layer).
    sums = [[0.0, 0.0] for _ in layers]
    count = 0
    pooled = False
    try:
        for k, batch in enumerate(batches):
            if k == num_batches:
                break
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            size = int(tf.shape(images)[0])
            for total, (mean, variance) in zip(sums, batch_statistics(images)):
                mean = np.asarray(mean, np.float64)
                total[0] = total[0] + size * mean
                total[1] = total[1] + size * (np.asarray(variance, np.float64) + mean**2)
            count += size
        pooled = count > 0
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        if not pooled:  # an error or no batch: the statistics stay as they were
            for layer, (mean, variance) in zip(layers, saved):
                layer.moving_mean.assign(mean)
                layer.moving_variance.assign(variance)
    if count == 0:
        raise ValueError("`batches` holds no batch to recompute the batch-norm statistics from.")
    for layer, (mean_sum, moment_sum) in zip(layers, sums):
        mean = mean_sum / count
        variance = np.maximum(moment_sum / count - mean**2, 0.0)
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
    return count
