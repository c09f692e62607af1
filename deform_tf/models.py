"""The VGG-like networks of the study, with five downsampling variants (docs/method.md#models).

One builder, `vgg`, makes a Keras functional model in the style of `keras.applications.vgg16`:

    input -> [stage i: n_i x (3x3 conv -> batch norm -> ReLU) -> 2x downsampling] x stages
          -> global average pooling -> dense logits

Layer names: `block{i}_conv{j}` (the conv), `block{i}_bn{j}`, `block{i}_relu{j}` (the unit's
output), and `block{i}_down` for the downsampling layer (for `strided_relu` the stride-2 conv is
`block{i}_down` and its unit output is `block{i}_down_relu`, after `block{i}_down_bn`). Blocks and
convs count from 1.

Downsampling variants (each halves height and width, rounding down):
  subsample     keep the top-left pixel of every 2x2 cell (`Subsample2D`)
  max_pool      2x2 max pooling, stride 2
  avg_pool      2x2 average pooling, stride 2
  strided       2x2 conv, stride 2, same channel count, with bias, linear (no BN, no ReLU)
  strided_relu  the same conv (no bias) followed by batch norm and ReLU

The builder declares the measured points as data while it builds them
(`deform_tf.representations.declare_measured_layers`; docs/method.md#sensitivity): the input (layer 0), each conv unit's output and each downsampling output, in
order, up to the last downsampling layer: 13 for the CIFAR-10 net, 19 for the ImageNet net.
`representation_model(model)` maps the input to them.
"""

import re

import keras
import tensorflow as tf

from deform_tf import initializers
from deform_tf import representations

# Channels per conv of each stage (docs/method.md#models). `mnist` is the CIFAR-10 net on 1-channel
# 32x32 input (28x28 digits zero-padded by the input pipeline).
STAGES = {
    "cifar10": ((32, 32), (64, 64), (128, 128), (256, 256)),
    "imagenet": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "mnist": ((32, 32), (64, 64), (128, 128), (256, 256)),
}
DEFAULT_INPUT_SHAPE = {"cifar10": (32, 32, 3), "imagenet": (224, 224, 3), "mnist": (32, 32, 1)}
DEFAULT_NUM_CLASSES = {"cifar10": 10, "imagenet": 1000, "mnist": 10}
DOWNSAMPLING = ("subsample", "max_pool", "avg_pool", "strided", "strided_relu")

_MEASURED = re.compile(r"^block\d+_(relu\d+|down|down_relu)$")


@keras.saving.register_keras_serializable(package="deform_tf")
class Subsample2D(keras.layers.Layer):
    """Keeps the top-left pixel of each 2x2 cell: [b, h, w, c] -> [b, h // 2, w // 2, c]."""

    def call(self, inputs):
        height, width = tf.shape(inputs)[1], tf.shape(inputs)[2]
        return inputs[:, :height - height % 2:2, :width - width % 2:2, :]

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else h // 2, None if w is None else w // 2, c)


def scaled_channels(channels, width):
    """Channel count under a width multiplier: round(channels * width), at least 1."""
    return max(1, int(round(channels * width)))


def _check_args(config, downsampling, width):
    if config not in STAGES:
        raise ValueError(f"Unknown config {config!r}; choose one of {sorted(STAGES)}.")
    if downsampling not in DOWNSAMPLING:
        raise ValueError(
            f"Unknown downsampling {downsampling!r}; choose one of {list(DOWNSAMPLING)}.")
    if not width > 0:
        raise ValueError(f"`width` must be a positive multiplier, got {width!r}.")


def vgg(
    config="cifar10",
    downsampling="max_pool",
    width=1.0,
    input_shape=None,
    num_classes=None,
    kernel_initializer=None,
    batch_norm_momentum=0.9,
    seed=None,
    name=None,
    sync_batch_norm=False,
):
    """Builds the VGG-like classifier of the study as a Keras functional model.

    Args:
      config: "cifar10", "imagenet" or "mnist" (stage layout, default input and classes).
      downsampling: one of DOWNSAMPLING.
      width: channel multiplier (e.g. 0.25 for quick runs); channels round to >= 1.
      input_shape: (height, width, channels); defaults to the config's (32x32x3, 224x224x3,
        32x32x1). Height and width must be at least 2 ** stages.
      num_classes: size of the logits layer; defaults to the config's.
      kernel_initializer: Keras initializer for conv and dense kernels; defaults to
        `initializers.FanInTruncatedNormal` (truncated normal, std 1 / sqrt(fan_in)).
      batch_norm_momentum: moving-statistics momentum (0.9 works after few steps; docs/method.md).
      seed: int or None; when given, every kernel gets its own seed derived from it, so two
        builds with the same seed have the same weights.
      name: model name; defaults to f"vgg_{config}_{downsampling}".
      sync_batch_norm: compute batch statistics over all replicas of a tf.distribute strategy
        (the global batch, as on one device) and keep the moving statistics identical on every
        replica and worker.

    Returns:
      A `keras.Model` from images [batch, height, width, channels] (float) to logits
      [batch, num_classes].
    """
    _check_args(config, downsampling, width)
    stages = STAGES[config]
    input_shape = tuple(input_shape or DEFAULT_INPUT_SHAPE[config])
    if len(input_shape) != 3:
        raise ValueError(f"`input_shape` must be (height, width, channels), got {input_shape}.")
    smallest = 2 ** len(stages)
    for size in input_shape[:2]:
        if size is not None and size < smallest:
            raise ValueError(
                f"`input_shape` {input_shape} is too small for {len(stages)} downsamplings; "
                f"height and width must be at least {smallest}.")
    num_classes = num_classes or DEFAULT_NUM_CLASSES[config]
    seeds = iter(range(0 if seed is None else seed * 1000, 10**9))

    def init():
        if kernel_initializer is not None:
            return keras.initializers.get(kernel_initializer)
        return initializers.FanInTruncatedNormal(None if seed is None else next(seeds))

    def bn(layer_name):
        return keras.layers.BatchNormalization(
            momentum=batch_norm_momentum, epsilon=1e-5, synchronized=sync_batch_norm,
            name=layer_name)

    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    measured = []  # the measured points, collected as they are built
    for i, stage in enumerate(stages, start=1):
        for j, channels in enumerate(stage, start=1):
            x = keras.layers.Conv2D(
                scaled_channels(channels, width), 3, padding="same", use_bias=False,
                kernel_initializer=init(), name=f"block{i}_conv{j}")(x)
            x = bn(f"block{i}_bn{j}")(x)
            x = keras.layers.ReLU(name=f"block{i}_relu{j}")(x)
            measured.append(f"block{i}_relu{j}")
        x = downsampling_layers(downsampling, x.shape[-1], init, bn, f"block{i}_down")(x)
        measured.append(f"block{i}_down_relu" if downsampling == "strided_relu"
                        else f"block{i}_down")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=init(), name="logits")(x)
    model = keras.Model(inputs, outputs, name=name or f"vgg_{config}_{downsampling}")
    return representations.declare_measured_layers(model, measured)


def downsampling_layers(kind, channels, init, bn, name):
    """A callable applying one 2x downsampling of `kind` (one of DOWNSAMPLING), its layers named
    from `name`.

    Args:
      kind: "subsample" (every second pixel), "max_pool" / "avg_pool" (2x2, stride 2),
        "strided" (a 2x2 stride-2 convolution with bias) or "strided_relu" (the same without
        bias, then batch norm and ReLU: `name`_bn, `name`_relu).
      channels: output channels of the strided convolutions (their input's channels).
      init: fn() -> kernel initializer of the convolution.
      bn: fn(name) -> batch-norm layer.
      name: name of the downsampling layer (e.g. "block1_down").
    """
    if kind == "subsample":
        return Subsample2D(name=name)
    if kind == "max_pool":
        return keras.layers.MaxPooling2D(2, 2, padding="valid", name=name)
    if kind == "avg_pool":
        return keras.layers.AveragePooling2D(2, 2, padding="valid", name=name)
    conv = keras.layers.Conv2D(
        channels, 2, strides=2, padding="valid", use_bias=kind == "strided",
        kernel_initializer=init(), name=name)
    if kind == "strided":
        return conv
    norm, relu = bn(f"{name}_bn"), keras.layers.ReLU(name=f"{name}_relu")
    return lambda x: relu(norm(conv(x)))


def vgg_layout_layers(model):
    """The measured layers of a model with the VGG family's layer names, or None.

    Recognizes a `vgg` model by its layer names (`block{i}_relu{j}`, `block{i}_down`,
    `block{i}_down_relu`): for models read back from `.keras` files, which keep no declaration.
    Every conv unit's ReLU and every downsampling output, up to the last downsampling layer.
    """
    names = [layer.name for layer in model.layers if _MEASURED.match(layer.name)]
    # For strided_relu the unit output is block{i}_down_relu, not the conv block{i}_down.
    names = [n for n in names if not (n.endswith("_down") and f"{n}_relu" in names)]
    downs = [k for k, n in enumerate(names) if "_down" in n]
    return names[:downs[-1] + 1] if downs else None


def measured_layer_names(model):
    """Names of the layers whose outputs are measured, in order (without the input).

    The layers `vgg` declared; for a model without a declaration, those of its VGG layout
    (`vgg_layout_layers`).

    Raises:
      ValueError: if the model has neither (not built by `vgg`).
    """
    names = representations.declared_measured_layers(model) or vgg_layout_layers(model)
    if not names:
        raise ValueError(
            f"Model {model.name!r} has no declared measured layers and no layers named "
            "block{i}_relu{j} / block{i}_down: not a deform_tf.models.vgg model. Use "
            "deform_tf.representations.representation_model for any other model.")
    return list(names)


def representation_model(model):
    """A model from the input to every measured representation, and their names.

    Args:
      model: a model built by `vgg` (or read back from a `.keras` file of one).

    Returns:
      (rep_model, names): `rep_model(images)` returns a list of tensors, one per measured layer:
      the input itself (layer 0, named "input"), then each `measured_layer_names(model)` output,
      in order. `names` lists their names ("input", "block1_relu1", ...).
    """
    reps = representations.representation_model(
        model, [representations.INPUT_NAME] + measured_layer_names(model))
    return reps.model, reps.names
