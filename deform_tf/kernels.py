"""The conv layers of a Keras model and their spatial kernels.

A leaf module (it imports only Keras and numpy): `deform_tf.initializers` smooths the kernels it
lists and `deform_tf.smoothness` measures them. A spatial kernel is a 4-D `kernel` variable
[kh, kw, a, b] with kh * kw > 1 (Conv2D, DepthwiseConv2D, Conv2DTranspose, ...); dense layers and
1x1 convolutions have none.
"""

import keras
import numpy as np


def spatial_kernel(layer):
    """The layer's 4-D kernel variable if it has kh * kw > 1, else None."""
    try:
        kernel = getattr(layer, "kernel", None)
    except (AttributeError, ValueError):  # e.g. unbuilt layers
        return None
    shape = getattr(kernel, "shape", None)
    if shape is None or len(shape) != 4:
        return None
    kh, kw = shape[0], shape[1]
    if kh is None or kw is None or kh * kw <= 1:
        return None
    return kernel


def conv_layers(model):
    """Every layer with a spatial 4-D kernel (kh * kw > 1), in model order.

    Args:
      model: a built Keras model. Nested models (anything with a `layers` list, e.g. a Sequential
        or functional model used as a layer) are searched recursively, in place of the nested
        model; a layer shared several times is listed once.

    Returns:
      List of layers (Conv2D, DepthwiseConv2D, Conv2DTranspose, ... any layer whose `kernel` is
      [kh, kw, a, b] with kh * kw > 1). Dense layers and 1x1 convs are skipped.

    Raises:
      ValueError: `model` has no `layers` or is not built yet.
    """
    if not hasattr(model, "layers"):
        raise ValueError(
            f"`model` must be a Keras model with `layers`, got {type(model).__name__}.")
    if not getattr(model, "built", True):
        raise ValueError(
            f"`model` {model.name!r} is not built: call it on data or `build(input_shape)` first "
            "so its kernels exist."
        )
    found, seen = [], set()

    def visit(container):
        for layer in container.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(getattr(layer, "layers", None), list):
                visit(layer)
            elif spatial_kernel(layer) is not None:
                found.append(layer)

    visit(model)
    return found


def conv_kernels(model):
    """(layer name, kernel) for every spatial conv layer of a built Keras model, in model order.

    Args:
      model: a built Keras model (nested models are searched, see `conv_layers`).

    Returns:
      List of (layer_name: str, kernel: numpy array [kh, kw, c_in, c_out] in the variable's
      dtype), a copy of the current values. Layers with kh * kw == 1 and dense layers are skipped.
    """
    return [(layer.name, np.array(keras.ops.convert_to_numpy(layer.kernel)))
            for layer in conv_layers(model)]
