"""A run's settings (plain names and values) turned into a `TrainConfig` and its `Data`.

Settings are a dict with exactly the keys of `DEFAULTS` (the command-line tools' flags of the
same names fill it; a study fills it from its grid). `PRESETS` holds each experiment's own
defaults: the paper's CIFAR-10 net (`cifar10`), its ImageNet net (`imagenet`), the synthetic
prototype task (`synthetic_mnist`) and any registered model on any registered data set
(`train`). `build_run(experiment, settings)` resolves them: the model (`model`, or the paper's
VGG net named by `architecture` and `downsampling`), the data set and its input shape (grayscale
images given as RGB to a model that takes 3 channels), the step counts (`epochs` or
`train_steps`) and the measured deformation (`eval_grid_size`, `eval_strength`; sized to the
image by `deform_tf.deformation.default_tps` unless given).

No flags here. Errors are ValueErrors whose messages name settings in backquotes (`epochs`);
the command-line tools show them as flags (--epochs).
"""

import dataclasses
import math

from absl import logging

from deform_tf import deformation
from experiments import datasets
from experiments import models as registry
from experiments import training

DEFAULTS = dict(
    model=None, dataset=None, data_dir=None, max_train_examples=None, architecture=None,
    downsampling=None, width=None, seed=0, batch_size=None, optimizer="sgd",
    learning_rate=None, momentum=0.9, schedule="cosine", warmup_epochs=None, epochs=None,
    examples_per_epoch=None, train_steps=None, weight_decay=None, label_smoothing=0.0,
    random_labels=False, train_grid_size=3, train_strength=0.0, eval_grid_size=None,
    eval_strength=None, smooth_init_sigma=0.0, bn_recalibration_batches=0, measure_every=0,
    num_measure_images=128, checkpoint_every=500, log_every=50, mixed_precision=False,
    xla=False, deterministic=False)
SETTINGS = tuple(DEFAULTS)
DEFAULT_DOWNSAMPLING = "max_pool"

# Each experiment's defaults (over DEFAULTS). The paper gives no hyperparameters: standard VGG
# choices for CIFAR-10 and ImageNet (the launchers' docstrings say which).
PRESETS = {
    "cifar10": dict(dataset="cifar10", batch_size=128, learning_rate=0.05, epochs=100.0,
                    warmup_epochs=1.0, weight_decay=5e-4, eval_grid_size=3, eval_strength=2.0),
    "imagenet": dict(dataset="imagenet", batch_size=256, learning_rate=0.1, epochs=90.0,
                     warmup_epochs=5.0, weight_decay=1e-4, eval_grid_size=5,
                     eval_strength=10.0),
    "synthetic_mnist": dict(dataset="synthetic", batch_size=128, learning_rate=0.05,
                            train_steps=5000, warmup_epochs=None, weight_decay=5e-4,
                            eval_grid_size=3, eval_strength=2.0),
    "train": dict(batch_size=128, learning_rate=0.05, weight_decay=5e-4),
}


def default_settings(experiment):
    """Every setting at its default, overridden by the experiment's PRESETS entry."""
    return {**DEFAULTS, **PRESETS[experiment]}


def as_flags(settings, exclude=()):
    """Settings as the command-line tools' flags: "--key=value" (booleans "--key" / "--nokey"),
    sorted by key, leaving out None values and the keys in `exclude`."""
    args = []
    for key, value in sorted(settings.items()):
        if key in exclude or value is None:
            continue
        if isinstance(value, bool):
            args.append(f"--{key}" if value else f"--no{key}")
        else:
            args.append(f"--{key}={value}")
    return args


def resolve_steps(settings, num_train):
    """(train_steps, warmup_steps, examples per epoch or None).

    train_steps is `train_steps` if set, else ceil(epochs x examples per epoch / batch size);
    warmup is round(warmup_epochs x examples per epoch / batch size). Examples per epoch:
    `examples_per_epoch` if given, else `num_train` (the training examples, None for an
    infinite stream).
    """
    batch_size, epochs, steps = settings["batch_size"], settings["epochs"], settings["train_steps"]
    per_epoch = settings.get("examples_per_epoch") or num_train
    if steps is None:
        if epochs is None:
            raise ValueError("Give `epochs` or `train_steps`.")
        if per_epoch is None:
            raise ValueError("This data set is an infinite stream: give `train_steps`, or "
                             "`examples_per_epoch` to count `epochs` in examples.")
        steps = math.ceil(epochs * per_epoch / batch_size)
    warmup_epochs = settings["warmup_epochs"] or 0.0
    warmup = round(warmup_epochs * per_epoch / batch_size) if per_epoch else 0
    return steps, min(warmup, steps), per_epoch


def choose_model(settings, dataset):
    """(model name, its registry entry, its options) from the settings: `model`, or the paper's
    VGG net of `architecture` (default: the data set's) and `downsampling` (default max_pool);
    `width` is the model's width option (None: the model's default)."""
    s = settings
    if s["model"] is None:
        name = (f"vgg_{s['architecture'] or dataset.vgg_config}_"
                f"{s['downsampling'] or DEFAULT_DOWNSAMPLING}")
        entry = registry.get(name)
    else:
        if s["architecture"] is not None or s["downsampling"] is not None:
            raise ValueError("`architecture` and `downsampling` choose among the paper's VGG "
                             "nets when no `model` is named; with `model`, name the net "
                             "itself (e.g. vgg_cifar10_strided).")
        name = s["model"]
        entry = registry.get(name)
    options = {}
    if s["width"] is not None:
        if entry.options is not None and "width" not in entry.options:
            raise ValueError(f"Model {name!r} has no width option; leave `width` unset.")
        options["width"] = s["width"]
    elif s["model"] is None:
        options["width"] = 1.0
    return name, entry, options


def input_channels(entry, dataset):
    """The channels the model gets: the data set's, or 3 (grayscale given as RGB) for a model
    that takes 3-channel images only. ValueError if neither fits."""
    if entry.channels is None or dataset.channels in entry.channels:
        return None
    if dataset.channels == 1 and 3 in entry.channels:
        return 3
    raise ValueError(f"Model {entry.name!r} takes images of {entry.channels} channels; data set "
                     f"{dataset.name!r} has {dataset.channels}.")


def build_run(experiment, settings, spec_fields=None):
    """(TrainConfig, Data) for `experiment` from a settings dict (the keys of DEFAULTS).

    Raises:
      ValueError, FileNotFoundError: bad settings (named in backquotes), missing or bad data.
    """
    s = settings
    if not s["dataset"]:
        raise ValueError(f"Give `dataset`: one of {', '.join(datasets.DATASETS)}.")
    dataset = datasets.get(s["dataset"])
    name, entry, options = choose_model(s, dataset)
    spec = datasets.DataSpec(
        dataset=s["dataset"], data_dir=s["data_dir"], max_train_examples=s["max_train_examples"],
        random_labels=s["random_labels"], train_grid_size=s["train_grid_size"],
        train_strength=s["train_strength"], **(spec_fields or {}))
    channels = input_channels(entry, dataset)
    if channels:
        spec = dataclasses.replace(spec, channels=channels)
        logging.info("Model %s takes %d-channel images: the %s images are given as RGB (the "
                     "gray channel repeated).", name, channels, dataset.title)
    input_shape = dataset.image_shape(spec)
    data, num_train = dataset.build(spec, s["batch_size"], s["seed"], s["num_measure_images"])
    steps, warmup, per_epoch = resolve_steps(s, num_train)
    grid, strength = deformation.default_tps(*input_shape[:2])
    config = training.TrainConfig(
        experiment=experiment, model=name, dataset=s["dataset"], model_options=options,
        input_shape=tuple(input_shape), num_classes=dataset.num_classes, seed=s["seed"],
        batch_size=s["batch_size"], train_steps=steps, optimizer=s["optimizer"],
        learning_rate=s["learning_rate"], momentum=s["momentum"], schedule=s["schedule"],
        warmup_steps=warmup, weight_decay=s["weight_decay"],
        label_smoothing=s["label_smoothing"], smooth_init_sigma=s["smooth_init_sigma"],
        bn_recalibration_batches=s["bn_recalibration_batches"],
        eval_grid_size=s["eval_grid_size"] or grid,
        eval_strength=strength if s["eval_strength"] is None else s["eval_strength"],
        measure_every=s["measure_every"], num_measure_images=len(data.measure_images),
        checkpoint_every=s["checkpoint_every"], log_every=s["log_every"],
        mixed_precision=s["mixed_precision"], jit_compile=s["xla"],
        deterministic=s["deterministic"],
        data=dict(dataclasses.asdict(spec), train_examples=num_train,
                  examples_per_epoch=per_epoch))
    return config, data
