"""Which layer outputs of a Keras model a profile measures, and a model that returns them.

Works on any built Keras model with one image input: functional, Sequential, and models that
nest other functional or Sequential models (e.g. a `keras.applications` backbone inside a
classifier). The model's graph is flattened by calling every layer again on new symbolic inputs,
descending into nested models, so the layers inside a backbone become reachable from the outer
input. The layers keep their weights (nothing is copied); each call only adds a node to the
layer, as using a layer in a second Keras model always does. A subclassed layer or model is
one opaque call.

A *point* is the output of one layer call of the flattened graph, named by the layer (layers of a
nested model as "<nested model>/<layer>"; a layer called several times as "<name>:<k>" for its
k-th call after the first), plus the input, named "input". Points carry their relative depth:
the number of layer calls on the longest path from the input to the point, divided by that of
the deepest call of the graph (so the input is at 0, the final output at 1 in a plain chain,
and curves of different networks share an axis), and their size: height, width, channels of a
[batch, height, width, channels] output (a vector [batch, features] counts as 1 x 1 x features,
a sequence [batch, steps, features] as steps x 1 x features).

What is measured (the `layers` argument of `select_calls`, `representation_model` and the
measurement functions of `deform_tf.sensitivity`):

- None: the model's declared points if its builder declared them (`declare_measured_layers`;
  `deform_tf.models.vgg` does: the paper's 13 / 19 points), else the default of any network:
  the input, every nonlinearity output and every downsampling output among the feature maps
  ([batch, height, width, channels] outputs of more than one pixel: the 1 x 1 gates of
  squeeze-and-excitation blocks, and maps pooled to one pixel, are vectors; select them
  explicitly), in topological order, and the final output(s). A nonlinearity output is the
  output of an `Activation` layer (other than "linear"), of `ReLU`, `LeakyReLU`, `PReLU`,
  `ELU`, `Softmax`, or of any layer with a non-linear `activation` argument (e.g.
  `Conv2D(..., activation="relu")` in a Sequential model). A downsampling output is a layer
  output whose height or width is at most half (rounded up) of its first input's: pooling,
  strided convolutions, subsampling (a "valid" 3x3 convolution, which only trims the border, is
  not one).
- a str: the point with that name (full name, or the layer's own name when that is unique);
  "re:<regular expression>" stands for that compiled expression and "class:<name>" for the
  `keras.layers` class of that name (`parse_selector`), so text selections (a command line)
  and Python objects select the same points.
- a compiled regular expression (`re.compile(...)`): every point whose name it matches
  (`re.search`).
- a Keras layer class (e.g. `keras.layers.ReLU`): the outputs of every layer of that class.
- any other callable: the outputs of the layers `layer` for which `fn(layer)` is true.
- a list or tuple of the above: their union, in topological order.

A name that does not exist, or a selector that matches nothing, raises ValueError naming it.
Classes and callables see layers only: the input is selected by its name "input" (or a regex).
"""

import collections
import dataclasses
import difflib
import re
from typing import Optional

import keras
import numpy as np

INPUT_NAME = "input"

# Layers whose output is a nonlinearity output whatever their arguments.
NONLINEAR_LAYERS = (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.PReLU,
                    keras.layers.ELU, keras.layers.Softmax)

# The model attribute holding a builder's declared points (see `declare_measured_layers`).
_DECLARATION = "deform_tf_measured_layers"


@dataclasses.dataclass(frozen=True)
class Declaration:
    """The measured layers a model builder declares, by name, in order (without the input)."""

    layers: tuple


def declare_measured_layers(model, names):
    """Declares `names` (layer names, in order) as the model's measured points; returns model.

    The input is always point 0 and is not listed. The declaration is a plain attribute of the
    Python object: Keras keeps it neither in `.keras` files nor in checkpoints, so loaders that
    rebuild such a model must declare again (`deform_tf.model_io.load_model` does for the VGG
    family).
    """
    names = tuple(names)
    missing = [n for n in names if n not in {layer.name for layer in model.layers}]
    if missing:
        raise ValueError(f"Model {model.name!r} has no layers named {missing}.")
    setattr(model, _DECLARATION, Declaration(names))
    return model


def declared_measured_layers(model):
    """The declared layer names (tuple, without the input), or None if none were declared."""
    declaration = getattr(model, _DECLARATION, None)
    return declaration.layers if isinstance(declaration, Declaration) else None


@dataclasses.dataclass(frozen=True)
class Point:
    """One measured layer output.

    Attributes:
      name: the call's name ("input" for the model input; see the module docstring).
      index: position in the profile, 0 for the first point.
      relative_depth: layer calls on the longest path from the input, over the graph's maximum,
        in [0, 1].
      height, width, channels: size of one example's output (see the module docstring).
      layer_type: Keras class name of the layer ("InputLayer" for the input).
    """

    name: str
    index: int
    relative_depth: float
    height: int
    width: int
    channels: int
    layer_type: str


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One layer call of the flattened graph (the input is the call with `layer` None).

    Attributes:
      name: unique name (see the module docstring).
      layer: the Keras layer called, or None for the input.
      output: its symbolic output (a KerasTensor), or None if it has several outputs.
      input_shape: shape of its first symbolic input, or None (the input).
      depth: layer calls on the longest path from the input (the input: 0).
      is_output: the output is one of the model's outputs.
    """

    name: str
    layer: Optional[keras.layers.Layer]
    output: Optional[keras.KerasTensor]
    input_shape: Optional[tuple]
    depth: int
    is_output: bool = False


@dataclasses.dataclass(frozen=True)
class Representations:
    """A model from the images to every selected output, and what each output is.

    Attributes:
      model: `keras.Model`; `model(images)` returns a list with one tensor per point.
      points: tuple of `Point`, in the order of the outputs.
    """

    model: keras.Model
    points: tuple

    @property
    def names(self):
        return [p.name for p in self.points]


def _is_graph_model(layer):
    """A Sequential or functional model, whose layers can be called one by one."""
    return isinstance(layer, keras.Sequential) or (
        isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")
        and hasattr(layer, "_run_through_graph"))


class _Flattener:
    """Calls the layers of a (nested) graph model one by one on symbolic tensors."""

    def __init__(self, inputs):
        self.calls = [LayerCall(INPUT_NAME, None, inputs, None, 0)]
        self._depths = {id(inputs): 0}
        self._times_called = collections.Counter()

    def run(self, model, inputs, prefix):
        """Outputs of `model` on the list of symbolic `inputs`, recording every layer call."""
        if isinstance(model, keras.Sequential):
            (x,) = inputs
            for layer in model.layers:
                x = self.call(layer, (x,), {}, prefix)
            return x
        # The functional model's own graph walk (the one its `call` uses), with each layer call
        # routed through `self.call`.
        # pylint: disable=protected-access
        return model._run_through_graph(
            inputs, operation_fn=lambda op: lambda *a, **k: self.call(op, a, k, prefix))

    def call(self, layer, args, kwargs, prefix):
        if _is_graph_model(layer):
            # A nested model's call arguments (e.g. training=False) do not matter: the flat
            # model runs in inference mode.
            return self.run(layer, keras.tree.flatten(args[0]), f"{prefix}{layer.name}/")
        inputs = [t for t in keras.tree.flatten((args, kwargs))
                  if isinstance(t, keras.KerasTensor)]
        outputs = layer(*args, **kwargs)
        depth = 1 + max((self._depths.get(id(t), 0) for t in inputs), default=0)
        flat_outputs = keras.tree.flatten(outputs)
        for t in flat_outputs:
            self._depths[id(t)] = depth
        name = f"{prefix}{layer.name}"
        times = self._times_called[name]
        self._times_called[name] += 1
        self.calls.append(LayerCall(
            name=f"{name}:{times}" if times else name, layer=layer,
            output=flat_outputs[0] if len(flat_outputs) == 1 else None,
            input_shape=tuple(inputs[0].shape) if inputs else None, depth=depth))
        return outputs


def _model_input(model, input_shape):
    """The model's single input spec: (shape without batch, dtype)."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs:
        raise ValueError(f"Model {model.name!r} has no defined input yet: build it (e.g. give "
                         "the Sequential model a keras.Input first).")
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise ValueError(f"Model {model.name!r} must have one image input [batch, height, width, "
                         f"channels]; it has inputs {[tuple(i.shape) for i in inputs]}.")
    shape = tuple(inputs[0].shape[1:])
    if input_shape is not None:
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != 3 or any(
                s is not None and s != t for s, t in zip(shape, input_shape)):
            raise ValueError(f"`input_shape` {input_shape} does not fit the input {shape} of "
                             f"model {model.name!r}.")
        shape = input_shape
    if None in shape:
        raise ValueError(f"Model {model.name!r} takes images of any size {shape}: give "
                         "`input_shape` (height, width, channels).")
    return shape, inputs[0].dtype


def _flatten(model, input_shape):
    """(calls, the model's outputs in the flat graph): see `flatten`."""
    if not _is_graph_model(model):
        raise ValueError(
            f"Model {model.name!r} ({type(model).__name__}) is a subclassed model: its layers "
            "are only known when it runs, so their outputs cannot be measured. Build it as a "
            "functional or Sequential model.")
    shape, dtype = _model_input(model, input_shape)
    inputs = keras.Input(shape=shape, dtype=dtype, name=INPUT_NAME)
    flattener = _Flattener(inputs)
    outputs = keras.tree.flatten(flattener.run(model, [inputs], ""))
    output_ids = {id(t) for t in outputs}
    calls = [dataclasses.replace(c, is_output=id(c.output) in output_ids)
             for c in flattener.calls]
    return calls, outputs


def flatten(model, input_shape=None):
    """Every layer call of `model`'s graph, nested models flattened, in topological order.

    Args:
      model: a built functional or Sequential Keras model with one 4-D image input.
      input_shape: (height, width, channels), needed if the model's input size is undefined.

    Returns:
      list of `LayerCall`, the input first, each call after the calls it depends on.

    Raises:
      ValueError: a subclassed model, not one image input, undefined input size.
    """
    return _flatten(model, input_shape)[0]


def output_points(model, names):
    """`Point`s of the outputs of a multi-output `model`, named by `names` (in output order)."""
    calls, outputs = _flatten(model, None)
    by_output = {id(c.output): c for c in calls if c.output is not None}
    return points_of(calls, [dataclasses.replace(by_output[id(t)], name=name)
                             for t, name in zip(outputs, names)])


def _output_size(call):
    """(height, width, channels) of one example's output."""
    shape = tuple(call.output.shape[1:])
    if None in shape:
        raise ValueError(f"The output of {call.name!r} has an undefined size {shape}.")
    if len(shape) == 3:
        return shape
    if len(shape) == 2:
        return shape[0], 1, shape[1]
    return 1, 1, int(np.prod(shape))


def is_nonlinearity(layer):
    """The layer's output is a nonlinearity output (see the module docstring)."""
    if isinstance(layer, NONLINEAR_LAYERS):
        return True
    activation = getattr(layer, "activation", None)
    return callable(activation) and activation is not keras.activations.linear


def is_downsampling(call):
    """The call's 4-D output is at most half (rounded up) as high or wide as its 4-D input."""
    if call.input_shape is None or len(call.input_shape) != 4 or len(call.output.shape) != 4:
        return False
    return any(o is not None and i is not None and o < i and 2 * o <= i + 1
               for i, o in zip(call.input_shape[1:3], call.output.shape[1:3]))


def is_feature_map(call):
    """The output is [batch, height, width, channels] with more than one pixel."""
    shape = call.output.shape
    return len(shape) == 4 and not (shape[1] == 1 and shape[2] == 1)


def is_default_point(call):
    """The input, a nonlinearity or downsampling output that is a feature map, or a model
    output."""
    if call.output is None:
        return False
    if call.layer is None or call.is_output:
        return True
    return is_feature_map(call) and (is_nonlinearity(call.layer) or is_downsampling(call))


def _bare_name(name):
    return name.rsplit("/", 1)[-1]


def _match_name(calls, name):
    """The index of the call named `name` (full name, else a unique bare layer name)."""
    exact = [i for i, c in enumerate(calls) if c.name == name]
    if exact:
        return exact
    bare = [i for i, c in enumerate(calls) if _bare_name(c.name) == name]
    if len(bare) > 1:
        raise ValueError(f"Layer name {name!r} is ambiguous: {[calls[i].name for i in bare]}; "
                         "give the full name.")
    if not bare:
        close = difflib.get_close_matches(name, [c.name for c in calls], n=5)
        hint = f" Close names: {close}." if close else ""
        raise ValueError(f"The model has no layer named {name!r}.{hint}")
    return bare


REGEX_PREFIX = "re:"
CLASS_PREFIX = "class:"


def parse_selector(text):
    """The selector a text stands for: "re:<regex>" -> compiled regex, "class:<name>" -> that
    `keras.layers` class, anything else -> the name itself.

    Raises:
      ValueError: a bad regular expression, or no `keras.layers` class of that name.
    """
    if text.startswith(REGEX_PREFIX):
        try:
            return re.compile(text[len(REGEX_PREFIX):])
        except re.error as e:
            raise ValueError(f"Layer selection {text!r}: bad regular expression: {e}.") from None
    if text.startswith(CLASS_PREFIX):
        name = text[len(CLASS_PREFIX):]
        cls = getattr(keras.layers, name, None)
        if not (isinstance(cls, type) and issubclass(cls, keras.layers.Layer)):
            raise ValueError(f"Layer selection {text!r}: {name!r} is not a keras.layers class.")
        return cls
    return text


def _selector_matches(calls, selector):
    """Indices of the calls one selector selects (see the module docstring)."""
    if isinstance(selector, str):
        selector = parse_selector(selector)
    if isinstance(selector, str):
        return _match_name(calls, selector)
    if isinstance(selector, re.Pattern):
        return [i for i, c in enumerate(calls) if selector.search(c.name)]
    if isinstance(selector, type):
        if not issubclass(selector, keras.layers.Layer):
            raise ValueError(f"Layer selection: {selector!r} is not a Keras layer class.")
        return [i for i, c in enumerate(calls) if isinstance(c.layer, selector)]
    if callable(selector):
        return [i for i, c in enumerate(calls) if c.layer is not None and selector(c.layer)]
    raise ValueError(f"Layer selection: {selector!r} is not a name, a compiled regular "
                     "expression, a Keras layer class or a callable.")


def select_calls(calls, layers=None, declared=None):
    """The calls a selection picks, in topological order.

    Args:
      calls: from `flatten`.
      layers: the selection (see the module docstring); None = `declared` if given, else the
        default of any network.
      declared: a builder's declared layer names (without the input), or None.

    Returns:
      list of `LayerCall`.

    Raises:
      ValueError: unknown or ambiguous name, a selector matching nothing, a selected layer with
        several outputs.
    """
    if layers is None and declared is not None:
        layers = [INPUT_NAME] + list(declared)
    if layers is None:
        chosen = [i for i, c in enumerate(calls) if is_default_point(c)]
    else:
        selectors = list(layers) if isinstance(layers, (list, tuple)) else [layers]
        if not selectors:
            raise ValueError("The layer selection is empty.")
        chosen = set()
        for selector in selectors:
            matches = _selector_matches(calls, selector)
            if not matches:
                raise ValueError(f"Layer selection {selector!r} matches no layer of the model.")
            chosen.update(matches)
        chosen = sorted(chosen)
    several = [calls[i].name for i in chosen if calls[i].output is None]
    if several:
        raise ValueError(f"Layers {several} have several outputs and cannot be measured.")
    return [calls[i] for i in chosen]


def points_of(calls, selected):
    """`Point`s of the `selected` calls, relative depths taken over all `calls`."""
    deepest = max(c.depth for c in calls) or 1
    points = []
    for index, call in enumerate(selected):
        height, width, channels = _output_size(call)
        points.append(Point(
            name=call.name, index=index, relative_depth=call.depth / deepest,
            height=int(height), width=int(width), channels=int(channels),
            layer_type="InputLayer" if call.layer is None else type(call.layer).__name__))
    return tuple(points)


def representation_model(model, layers=None, input_shape=None):
    """A model from the images to the selected outputs of `model`, and their points.

    Args:
      model: a built functional or Sequential Keras model with one 4-D image input (nested
        models allowed).
      layers: the selection (see the module docstring); None = declared points or the default.
      input_shape: (height, width, channels), needed if the model's input size is undefined.

    Returns:
      `Representations`.
    """
    calls = flatten(model, input_shape)
    selected = select_calls(calls, layers, declared_measured_layers(model))
    rep_model = keras.Model(calls[0].output, [c.output for c in selected],
                            name=f"{model.name}_representations")
    return Representations(rep_model, points_of(calls, selected))
