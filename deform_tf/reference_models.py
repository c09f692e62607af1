"""Reference networks of other kinds than the paper's VGG: fully connected nets, LeNet, ResNet-18.

The nets Petrini et al. (2021) compare across architectures, built as Keras functional models in
the style of `keras.applications` (one builder per family, named layers, logits output, no
softmax), each with a `seed` for its initialization:

    fully_connected  input -> flatten -> (depth - 1) x (dense -> ReLU) -> dense logits
    lenet            input -> [5x5 conv -> ReLU -> 2x2 max pool] x 2 -> flatten
                           -> dense 120 -> ReLU -> dense 84 -> ReLU -> dense logits
    resnet18         input -> 3x3 conv -> BN -> ReLU -> 4 stages x 2 basic blocks
                           -> global average pooling -> dense logits  (the CIFAR-10 ResNet-18)

Every builder declares its measured points (`deform_tf.representations.declare_measured_layers`,
as `deform_tf.models.vgg` does): besides the input, each nonlinearity output, each downsampling
output that is not followed by one (LeNet's pooling) and the logits. The declaration includes
the hidden vectors of the dense layers, which the default selection of
`deform_tf.representations` leaves out (it keeps feature maps only), and leaves out the
residual blocks' strided convolutions, whose downsampled maps are measured after their batch
norm and ReLU. Kernels are initialized with He normal (`keras.initializers.HeNormal`, stddev
sqrt(2 / fan_in), truncated at 2 std), biases with zeros; with a seed, the k-th kernel built gets
the seed 1000 * seed + k, so two builds with the same seed have the same weights.
"""

import itertools

import keras

from deform_tf import models
from deform_tf import representations

# Channels of LeNet's two convolutions and units of its two hidden dense layers (LeNet-5).
LENET_CHANNELS = (6, 16)
LENET_UNITS = (120, 84)
LENET_KERNEL = 5
# Channels of the four stages of ResNet-18 (two basic blocks each; stages 2-4 halve the size).
RESNET18_STAGES = (64, 128, 256, 512)
RESNET18_BLOCKS = 2


def _check(input_shape, num_classes, width):
    """The input shape as a tuple of 3 ints; ValueError naming a bad argument."""
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"`input_shape` must be (height, width, channels) positive ints, got "
                         f"{input_shape!r}.")
    if not (isinstance(num_classes, int) and num_classes > 0):
        raise ValueError(f"`num_classes` must be a positive int, got {num_classes!r}.")
    if not (isinstance(width, (int, float)) and width > 0):
        raise ValueError(f"`width` must be positive, got {width!r}.")
    return shape


def _initializers(kernel_initializer, seed):
    """fn() -> the initializer of the next kernel built (see the module docstring)."""
    counter = itertools.count()

    def init():
        if kernel_initializer is not None:
            return keras.initializers.get(kernel_initializer)
        return keras.initializers.HeNormal(None if seed is None else 1000 * seed + next(counter))

    return init


def fully_connected(depth, width=64, input_shape=(32, 32, 3), num_classes=10,
                    kernel_initializer=None, seed=None, name=None):
    """A fully connected ReLU net of `depth` dense layers (Petrini et al.'s FullConn-L<depth>).

    Layers: `flatten`, then for i = 1 .. depth - 1 `fc{i}` (dense, `width` units) and
    `fc{i}_relu`, then `logits`. Measured points: the input, every `fc{i}_relu`, `logits`.

    Args:
      depth: number of dense layers, the logits layer included (>= 1; 1 is a linear classifier).
      width: units of each hidden layer (int >= 1).
      input_shape: (height, width, channels) of the images.
      num_classes: size of the logits.
      kernel_initializer: Keras initializer of the kernels; default He normal (seeded).
      seed: int or None (see the module docstring).
      name: model name; default f"fc{depth}".

    Returns:
      A `keras.Model` from images [batch, height, width, channels] (float) to logits
      [batch, num_classes].
    """
    input_shape = _check(input_shape, num_classes, 1)
    if not (isinstance(depth, int) and depth >= 1):
        raise ValueError(f"`depth` must be an int >= 1 (dense layers with the logits), got "
                         f"{depth!r}.")
    if not (isinstance(width, int) and width >= 1):
        raise ValueError(f"`width` must be an int >= 1 (units per hidden layer), got {width!r}.")
    init = _initializers(kernel_initializer, seed)
    inputs = keras.Input(shape=input_shape, name="input")
    x = keras.layers.Flatten(name="flatten")(inputs)
    measured = []
    for i in range(1, depth):
        x = keras.layers.Dense(width, kernel_initializer=init(), name=f"fc{i}")(x)
        x = keras.layers.ReLU(name=f"fc{i}_relu")(x)
        measured.append(f"fc{i}_relu")
    outputs = keras.layers.Dense(num_classes, kernel_initializer=init(), name="logits")(x)
    model = keras.Model(inputs, outputs, name=name or f"fc{depth}")
    return representations.declare_measured_layers(model, measured + ["logits"])


def lenet(input_shape=(32, 32, 3), num_classes=10, width=1.0, kernel_initializer=None,
          seed=None, name="lenet"):
    """LeNet-5 with ReLUs and max pooling (as in Petrini et al.'s and most CIFAR-10 code).

    Layers: `conv1` (5x5, "valid", 6 channels), `conv1_relu`, `pool1` (2x2 max, stride 2),
    `conv2` (5x5, 16 channels), `conv2_relu`, `pool2`, `flatten`, `fc1` (120 units), `fc1_relu`,
    `fc2` (84), `fc2_relu`, `logits`; channels and units times `width` (rounded, >= 1). On 32x32
    images the maps are 28x28, 14x14, 10x10 and 5x5. Measured points: the input, `conv1_relu`,
    `pool1`, `conv2_relu`, `pool2`, `fc1_relu`, `fc2_relu`, `logits`.

    Args:
      input_shape: (height, width, channels); height and width at least 16 pixels.
      num_classes: size of the logits.
      width: multiplier of the channels and units.
      kernel_initializer: Keras initializer of the kernels; default He normal (seeded).
      seed: int or None (see the module docstring).
      name: model name.

    Returns:
      A `keras.Model` from images [batch, height, width, channels] to logits [batch, classes].
    """
    input_shape = _check(input_shape, num_classes, width)
    if min(input_shape[:2]) < 16:
        raise ValueError(f"`input_shape` {input_shape} is too small for LeNet: height and width "
                         "must be at least 16 pixels (two 5x5 valid convolutions and two 2x2 "
                         "poolings).")
    init = _initializers(kernel_initializer, seed)
    inputs = keras.Input(shape=input_shape, name="input")
    x = inputs
    measured = []
    for i, channels in enumerate(LENET_CHANNELS, start=1):
        x = keras.layers.Conv2D(models.scaled_channels(channels, width), LENET_KERNEL,
                                padding="valid", kernel_initializer=init(), name=f"conv{i}")(x)
        x = keras.layers.ReLU(name=f"conv{i}_relu")(x)
        x = keras.layers.MaxPooling2D(2, 2, name=f"pool{i}")(x)
        measured += [f"conv{i}_relu", f"pool{i}"]
    x = keras.layers.Flatten(name="flatten")(x)
    for i, units in enumerate(LENET_UNITS, start=1):
        x = keras.layers.Dense(models.scaled_channels(units, width), kernel_initializer=init(),
                               name=f"fc{i}")(x)
        x = keras.layers.ReLU(name=f"fc{i}_relu")(x)
        measured.append(f"fc{i}_relu")
    outputs = keras.layers.Dense(num_classes, kernel_initializer=init(), name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    return representations.declare_measured_layers(model, measured + ["logits"])


def resnet18(input_shape=(32, 32, 3), num_classes=10, width=1.0, kernel_initializer=None,
             batch_norm_momentum=0.9, seed=None, name="resnet18", sync_batch_norm=False):
    """The CIFAR-10 ResNet-18 (He et al. 2016's basic blocks, the 3x3 stem of CIFAR code).

    Layers: the stem `stem_conv` (3x3, stride 1, no bias), `stem_bn`, `stem_relu`; then for
    stage s = 1..4 and block b = 1, 2 (prefix `stage{s}_block{b}_`): `conv1` (3x3, stride 2 in
    the first block of stages 2-4, after `pad`, a 1-pixel zero padding, so that both branches
    sample pixels (0, 0), (2, 2), ...; else stride 1 "same"), `bn1`, `relu1`, `conv2` (3x3),
    `bn2`, a projection shortcut `shortcut_conv` (1x1, stride 2) and `shortcut_bn` where the
    size or channels change, `add`, and `out` (the ReLU of the sum); then `avg_pool` (global
    average) and `logits`. Stage channels are RESNET18_STAGES times `width` (rounded, >= 1);
    convolutions have no bias. Measured points: the input, `stem_relu`, each block's `relu1` and
    `out`, `logits` (19 points).

    Args:
      input_shape: (height, width, channels) of the images.
      num_classes: size of the logits.
      width: multiplier of the channels (1.0: 11,173,962 trainable weights at 10 classes).
      kernel_initializer: Keras initializer of the kernels; default He normal (seeded).
      batch_norm_momentum: moving-statistics momentum of the batch norms (epsilon 1e-5).
      seed: int or None (see the module docstring).
      name: model name.
      sync_batch_norm: batch statistics over all replicas of a tf.distribute strategy.

    Returns:
      A `keras.Model` from images [batch, height, width, channels] to logits [batch, classes].
    """
    input_shape = _check(input_shape, num_classes, width)
    init = _initializers(kernel_initializer, seed)

    def conv(x, channels, kernel, stride, layer_name):
        return keras.layers.Conv2D(channels, kernel, strides=stride,
                                   padding="same" if stride == 1 else "valid", use_bias=False,
                                   kernel_initializer=init(), name=layer_name)(x)

    def bn(x, layer_name):
        return keras.layers.BatchNormalization(momentum=batch_norm_momentum, epsilon=1e-5,
                                               synchronized=sync_batch_norm, name=layer_name)(x)

    inputs = keras.Input(shape=input_shape, name="input")
    x = conv(inputs, models.scaled_channels(RESNET18_STAGES[0], width), 3, 1, "stem_conv")
    x = keras.layers.ReLU(name="stem_relu")(bn(x, "stem_bn"))
    measured = ["stem_relu"]
    for s, stage_channels in enumerate(RESNET18_STAGES, start=1):
        channels = models.scaled_channels(stage_channels, width)
        for b in range(1, RESNET18_BLOCKS + 1):
            prefix = f"stage{s}_block{b}_"
            stride = 2 if s > 1 and b == 1 else 1
            y = x
            if stride == 2:
                y = keras.layers.ZeroPadding2D(1, name=prefix + "pad")(y)
            y = conv(y, channels, 3, stride, prefix + "conv1")
            y = keras.layers.ReLU(name=prefix + "relu1")(bn(y, prefix + "bn1"))
            y = bn(conv(y, channels, 3, 1, prefix + "conv2"), prefix + "bn2")
            shortcut = x
            if stride != 1 or x.shape[-1] != channels:
                shortcut = bn(conv(x, channels, 1, stride, prefix + "shortcut_conv"),
                              prefix + "shortcut_bn")
            x = keras.layers.Add(name=prefix + "add")([y, shortcut])
            x = keras.layers.ReLU(name=prefix + "out")(x)
            measured += [prefix + "relu1", prefix + "out"]
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=init(), name="logits")(x)
    model = keras.Model(inputs, outputs, name=name)
    return representations.declare_measured_layers(model, measured + ["logits"])
