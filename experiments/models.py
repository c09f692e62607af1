"""The model registry: every network an experiment can build, by name, with its kind and input.

`MODELS` maps a name to a `ModelEntry`, which builds a Keras functional model from
(input_shape, num_classes, seed) plus the entry's options, and says what kind of network it is
(`KINDS`, for a study across architectures) and which pixel normalization it expects
(`ModelEntry.input_convention`, for training and profiling alike):

- the paper's VGG nets, `vgg_<config>_<downsampling>` (`PAPER_VGG`; `deform_tf.models.vgg`,
  option `width`, the channel multiplier); their input: their config's training pipeline's
  normalization;
- keras.applications networks (`APPLICATIONS`; weights none, classifier_activation=None, any
  number of classes, any input size they accept from `Application.min_size` pixels up, RGB
  images); their input: the family's `preprocess_input`. `mobilenet_v2_035` is MobileNetV2 at
  width (alpha) 0.35; the MobileNets take the option `width` (their alpha). EfficientNet-B0 is
  the smallest EfficientNet: keras' public constructors take no width coefficient;
- reference nets of other kinds (`deform_tf.reference_models`): `fc2`, `fc4`, `fc6` (fully
  connected, option `width`: units per hidden layer), `lenet` and `resnet18` (option `width`:
  the channel multiplier); their input: the normalization of the data set they are trained on;
- a user's builder, `module:function` (`get` imports it): called as
  function(input_shape, num_classes, seed=seed, **options), seed only if it takes one.

Seeds: the paper's and the reference nets seed each kernel's initializer; keras.applications
constructors take no seed, so their build sets Keras' global seed (`keras.utils.set_random_seed`,
which also seeds Python's, NumPy's and TensorFlow's global generators), as `launch.profile`
always did. Errors are ValueErrors naming the model, the setting and the choices.
"""

import dataclasses
import importlib
import inspect
import numbers
from typing import Callable, Mapping, Optional

import keras

from deform_tf import models
from deform_tf import profile
from deform_tf import reference_models
from experiments import datasets

# The kinds of network, for a study across architectures.
KINDS = {
    "fully_connected": "dense layers only",
    "cnn": "a plain stack of convolutions and poolings (LeNet, VGG)",
    "resnet": "convolutions with residual connections (ResNet, ResNetV2)",
    "mobile": "depthwise-separable convolutions and inverted residuals (MobileNet, EfficientNet)",
    "densenet": "densely connected convolutions (DenseNet)",
    "inception": "multi-branch convolutions (Inception, Xception)",
    "convnext": "ConvNeXt",
    "custom": "a user's builder (module:function)",
}
PIPELINE = "pipeline"  # an entry's input: the normalization of the data set it is trained on

# The data set whose normalization each config of the paper's nets takes (config "mnist": the
# Fashion-MNIST statistics, those of its training data).
CONFIG_DATASET = {"cifar10": "cifar10", "imagenet": "imagenet", "mnist": "fashion_mnist"}


@dataclasses.dataclass(frozen=True)
class Application:
    """A keras.applications network: its constructor and the module of its preprocess_input.

    Attributes:
      constructor: attribute of keras.applications, e.g. "ResNet50".
      family: keras.applications module holding its preprocess_input, e.g. "resnet50".
      min_size: smallest input height and width it accepts, in pixels.
      kind: a key of KINDS.
      width_keyword: the constructor's width argument ("alpha" for the MobileNets), or None.
      width: the entry's default width (that argument's value).
    """

    constructor: str
    family: str
    min_size: int = 32
    kind: str = "cnn"
    width_keyword: Optional[str] = None
    width: float = 1.0


_MOBILE = dict(kind="mobile", width_keyword="alpha")
APPLICATIONS = {
    "vgg16": Application("VGG16", "vgg16"),
    "vgg19": Application("VGG19", "vgg19"),
    "resnet50": Application("ResNet50", "resnet50", kind="resnet"),
    "resnet101": Application("ResNet101", "resnet", kind="resnet"),
    "resnet152": Application("ResNet152", "resnet", kind="resnet"),
    "resnet50_v2": Application("ResNet50V2", "resnet_v2", kind="resnet"),
    "mobilenet": Application("MobileNet", "mobilenet", **_MOBILE),
    "mobilenet_v2": Application("MobileNetV2", "mobilenet_v2", **_MOBILE),
    "mobilenet_v2_035": Application("MobileNetV2", "mobilenet_v2", width=0.35, **_MOBILE),
    "mobilenet_v3_small": Application("MobileNetV3Small", "mobilenet_v3", **_MOBILE),
    "mobilenet_v3_large": Application("MobileNetV3Large", "mobilenet_v3", **_MOBILE),
    "efficientnet_b0": Application("EfficientNetB0", "efficientnet", kind="mobile"),
    "efficientnet_b1": Application("EfficientNetB1", "efficientnet", kind="mobile"),
    "efficientnet_v2_b0": Application("EfficientNetV2B0", "efficientnet_v2", kind="mobile"),
    "densenet121": Application("DenseNet121", "densenet", kind="densenet"),
    "densenet169": Application("DenseNet169", "densenet", kind="densenet"),
    "convnext_tiny": Application("ConvNeXtTiny", "convnext", kind="convnext"),
    "convnext_small": Application("ConvNeXtSmall", "convnext", kind="convnext"),
    "inception_v3": Application("InceptionV3", "inception_v3", min_size=75, kind="inception"),
    "xception": Application("Xception", "xception", min_size=71, kind="inception"),
}
PAPER_VGG = tuple(f"vgg_{config}_{downsampling}" for config in models.STAGES
                  for downsampling in models.DOWNSAMPLING)
# The reference nets: name -> (kind, builder of deform_tf.reference_models, default width).
REFERENCE = {
    "fc2": ("fully_connected", lambda **k: reference_models.fully_connected(2, **k), 64),
    "fc4": ("fully_connected", lambda **k: reference_models.fully_connected(4, **k), 64),
    "fc6": ("fully_connected", lambda **k: reference_models.fully_connected(6, **k), 64),
    "lenet": ("cnn", reference_models.lenet, 1.0),
    "resnet18": ("resnet", reference_models.resnet18, 1.0),
}


def dataset_convention(dataset):
    """The `InputConvention` of a net trained on `dataset` (a key of `datasets.DATASETS`): its
    training pipeline's normalization of pixels / 255 (pixels float32 0..255)."""
    normalize = datasets.get(dataset).normalize
    return profile.InputConvention(
        f"{dataset}_pipeline", lambda x: normalize(x / 255.0),
        f"the {dataset} training pipeline's normalization of pixels / 255")


def pipeline_convention(config):
    """The input convention of the paper's nets of `config` (a key of `models.STAGES`): the
    normalization of their training data (CONFIG_DATASET) of pixels / 255, named after the
    config."""
    convention = dataset_convention(CONFIG_DATASET[config])
    return dataclasses.replace(
        convention, name=f"{config}_pipeline",
        description=f"the {config} training pipeline's normalization of pixels / 255")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model of the registry.

    Attributes:
      name: its name in MODELS (or "module:function").
      kind: a key of KINDS.
      description: one line for people.
      builder: fn(input_shape=, num_classes=, seed=, **options) -> keras.Model (use `build`,
        which checks the arguments and the model).
      preprocess: PIPELINE (the normalization of the data set it is trained on) or the
        keras.applications module whose preprocess_input it expects.
      options: {option name: default}; None = any keyword (a user's builder).
      default_input_shape: (height, width, channels) when none is given (the paper's nets:
        their config's; keras.applications: 224 x 224 x 3), or None (it must be given).
      default_num_classes: the number of classes when none is given, or None (likewise).
      min_size: smallest input height and width, in pixels.
      channels: the input channel counts it takes, or None (any).
      config: the paper's nets: their config (a key of `deform_tf.models.STAGES`), whose
        training pipeline's normalization they take when no data set is given; else None.
      downsampling: the paper's nets: their downsampling variant; else None.
    """

    name: str
    kind: str
    description: str
    builder: Callable
    preprocess: str = PIPELINE
    options: Optional[Mapping] = dataclasses.field(default_factory=dict)
    default_input_shape: Optional[tuple] = None
    default_num_classes: Optional[int] = None
    min_size: int = 1
    channels: Optional[tuple] = None
    config: Optional[str] = None
    downsampling: Optional[str] = None

    def build(self, input_shape=None, num_classes=None, seed=0, **options):
        """The model, checked.

        Args:
          input_shape: (height, width, channels) of the images (ints); None = the entry's
            default (refused if it has none).
          num_classes: size of the logits; None = the entry's default (likewise).
          seed: int (the initialization; see the module docstring) or None (unseeded).
          **options: the entry's options (e.g. width); the others keep their defaults.

        Returns:
          A `keras.Model` from float32 images [batch, height, width, channels] (its input
          convention applied) to logits [batch, num_classes].

        Raises:
          ValueError: a bad input shape, class count, seed or option, or a builder that does
            not return such a model; the message names the model and the setting.
        """
        if (input_shape is None and self.default_input_shape is None) or (
                num_classes is None and self.default_num_classes is None):
            raise ValueError(f"Model {self.name!r} has no default input_shape or num_classes: "
                             "give both (those of the data set).")
        input_shape = tuple(self.default_input_shape if input_shape is None else input_shape)
        num_classes = self.default_num_classes if num_classes is None else num_classes
        self._check_arguments(input_shape, num_classes, seed)
        if self.options is not None:
            unknown = sorted(set(options) - set(self.options))
            if unknown:
                raise ValueError(f"Model {self.name!r} has no option {', '.join(unknown)}: its "
                                 f"options are {dict(self.options) or 'none'}.")
            options = {**self.options, **options}
        model = self.builder(input_shape=input_shape, num_classes=num_classes,
                             seed=None if seed is None else int(seed), **options)
        check_model(model, input_shape, num_classes, self.name)
        return model

    def _check_arguments(self, input_shape, num_classes, seed):
        if len(input_shape) != 3 or not all(
                isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_shape):
            raise ValueError(f"Model {self.name!r}: input_shape must be (height, width, "
                             f"channels), positive ints; got {input_shape!r}.")
        if min(input_shape[:2]) < self.min_size:
            raise ValueError(f"Model {self.name!r} needs images of at least {self.min_size} x "
                             f"{self.min_size} pixels; got input_shape {input_shape}.")
        if self.channels is not None and input_shape[2] not in self.channels:
            counts = " or ".join(map(str, self.channels))
            raise ValueError(f"Model {self.name!r} takes images of {counts} channels; got "
                             f"input_shape {input_shape} (give grayscale images as RGB).")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"Model {self.name!r}: num_classes must be a positive int; got "
                             f"{num_classes!r}.")
        if seed is not None and (isinstance(seed, bool) or
                                 not isinstance(seed, numbers.Integral)):
            raise ValueError(f"Model {self.name!r}: seed must be an int or None; got {seed!r}.")

    def input_convention(self, dataset=None):
        """The `deform_tf.profile.InputConvention` the model expects (pixels float32 0..255).

        Args:
          dataset: for PIPELINE entries, the data set it is trained on (a key of
            `datasets.DATASETS`); None = its own default (the paper's nets: their config's).
            Ignored by keras.applications entries, which take their family's preprocess_input.

        Raises:
          ValueError: a PIPELINE entry without a data set, or an unknown data set.
        """
        if self.preprocess != PIPELINE:
            family = getattr(keras.applications, self.preprocess)
            return profile.InputConvention(
                self.preprocess, family.preprocess_input,
                f"keras.applications.{self.preprocess}.preprocess_input")
        if dataset is None and self.config is not None:
            return pipeline_convention(self.config)
        if dataset is None:
            raise ValueError(f"Model {self.name!r} takes the normalization of the data set it is "
                             f"trained on: give the data set ({', '.join(datasets.DATASETS)}).")
        return dataset_convention(dataset)


def check_model(model, input_shape, num_classes, name):
    """Raises ValueError unless `model` is a keras.Model from one image input of `input_shape`
    (undefined sizes allowed) to one output [batch, num_classes]."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"The builder of {name!r} returned {type(model).__name__}, not a "
                         "keras.Model.")
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    expected = (None,) + tuple(input_shape)
    if not inputs or len(inputs) != 1 or len(inputs[0].shape) != 4 or any(
            s is not None and s != e for s, e in zip(inputs[0].shape, expected)):
        shapes = [tuple(i.shape) for i in inputs] if inputs else "none defined"
        raise ValueError(f"The builder of {name!r} returned a model with inputs {shapes}; "
                         f"expected one image input {expected} (input_shape {input_shape}). "
                         "Build it functional or Sequential, with keras.Input(input_shape).")
    if not outputs or len(outputs) != 1 or tuple(outputs[0].shape) != (None, num_classes):
        shapes = [tuple(o.shape) for o in outputs] if outputs else "none defined"
        raise ValueError(f"The builder of {name!r} returned a model with outputs {shapes}; "
                         f"expected one output (None, {num_classes}) (num_classes "
                         f"{num_classes}: the logits).")


def _paper_vgg_entry(config, downsampling):
    name = f"vgg_{config}_{downsampling}"

    def build(input_shape, num_classes, seed, width, sync_batch_norm):
        return models.vgg(config, downsampling, width=width, input_shape=input_shape,
                          num_classes=num_classes, seed=seed, sync_batch_norm=sync_batch_norm)

    return ModelEntry(
        name, "cnn", f"the paper's VGG net of {config} with {downsampling} downsampling",
        build, options={"width": 1.0, "sync_batch_norm": False}, downsampling=downsampling,
        default_input_shape=models.DEFAULT_INPUT_SHAPE[config],
        default_num_classes=models.DEFAULT_NUM_CLASSES[config],
        min_size=2 ** len(models.STAGES[config]), config=config)


def _application_entry(name, app):

    def build(input_shape, num_classes, seed, weights, width=None):
        keywords = {app.width_keyword: width} if app.width_keyword else {}
        if seed is not None:
            keras.utils.set_random_seed(seed)
        constructor = getattr(keras.applications, app.constructor)
        return constructor(weights=weights, input_shape=input_shape, classes=num_classes,
                           classifier_activation=None, **keywords)

    options = {"weights": None}
    if app.width_keyword:
        options["width"] = app.width
    width = f" at width {app.width}" if app.width != 1.0 else ""
    return ModelEntry(
        name, app.kind, f"keras.applications.{app.constructor}{width}", build,
        preprocess=app.family, options=options, default_input_shape=(224, 224, 3),
        default_num_classes=1000, min_size=app.min_size, channels=(3,))


def _units(width):
    """A fully connected net's width (units per hidden layer) given as a whole float (a
    command line's --width=16) as the int it stands for; anything else as is (refused by the
    builder if it is not a positive int)."""
    if isinstance(width, float) and width.is_integer():
        return int(width)
    return width


def _reference_entry(name, kind, builder, width):
    convert = _units if kind == "fully_connected" else (lambda w: w)
    return ModelEntry(name, kind, f"deform_tf.reference_models: {name}",
                      lambda input_shape, num_classes, seed, width: builder(
                          input_shape=input_shape, num_classes=num_classes,
                          width=convert(width), seed=seed), options={"width": width})


MODELS = {
    **{f"vgg_{c}_{d}": _paper_vgg_entry(c, d) for c in models.STAGES
       for d in models.DOWNSAMPLING},
    **{name: _application_entry(name, app) for name, app in APPLICATIONS.items()},
    **{name: _reference_entry(name, *spec) for name, spec in REFERENCE.items()},
}


def _import_builder(spec):
    """The callable named by "module:function"; ValueError naming the module or attribute."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"Model {spec!r}: a user's builder is named module:function (e.g. "
                         "my_nets:build), both parts non-empty.")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name + ".").startswith(e.name + "."):
            raise ValueError(f"Model {spec!r}: no module named {module_name!r} on the Python "
                             "path (sys.path): put its folder on PYTHONPATH.") from None
        raise ValueError(f"Model {spec!r}: importing the module {module_name!r} failed: "
                         f"{e}.") from e
    except Exception as e:  # the user's module raised while it was imported
        raise ValueError(f"Model {spec!r}: importing the module {module_name!r} failed: "
                         f"{type(e).__name__}: {e}.") from e
    function = module
    for part in attribute.split("."):
        if not hasattr(function, part):
            raise ValueError(f"Model {spec!r}: the module {module_name!r} "
                             f"({getattr(module, '__file__', None)}) has no attribute "
                             f"{attribute!r}.")
        function = getattr(function, part)
    if not callable(function):
        raise ValueError(f"Model {spec!r}: {attribute!r} of the module {module_name!r} is "
                         f"a {type(function).__name__}, not a function.")
    return function


def _user_entry(spec):
    function = _import_builder(spec)
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_seed = "seed" in parameters or any(
        p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())

    def build(input_shape, num_classes, seed, **options):
        kwargs = dict(options, **({"seed": seed} if takes_seed else {}))
        try:
            return function(input_shape, num_classes, **kwargs)
        except Exception as e:
            raise ValueError(f"Model {spec!r}: the builder raised {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from e

    return ModelEntry(spec, "custom", f"a user's builder, {spec}", build, options=None)


def get(name):
    """The `ModelEntry` of a registry name or of a user's builder "module:function".

    Raises:
      ValueError: an unknown name (the message lists the registry's names), a module that
        cannot be imported, a missing or non-callable attribute.
    """
    if name in MODELS:
        return MODELS[name]
    if ":" in name:
        return _user_entry(name)
    raise ValueError(f"Unknown model {name!r}: choose one of {', '.join(MODELS)}, or name your "
                     "own builder as module:function.")


def build_from_fields(fields):
    """The model a run's checkpoints/model_config.json describes (`experiments.training`:
    model, options, input_shape, num_classes, seed); ValueError naming what is wrong."""
    try:
        name, options = fields["model"], dict(fields.get("options") or {})
        input_shape, num_classes = tuple(fields["input_shape"]), fields["num_classes"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"The model description lacks {e} (model, options, input_shape, "
                         "num_classes, seed).") from None
    return get(name).build(input_shape, num_classes, fields.get("seed", 0), **options)


def build(name, input_shape=None, num_classes=None, seed=0, **options):
    """`get(name).build(input_shape, num_classes, seed, **options)`: see `ModelEntry.build`."""
    return get(name).build(input_shape, num_classes, seed, **options)
