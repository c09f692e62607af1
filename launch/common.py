"""Flags shared by the training launchers: the settings of `experiments.settings`, as flags.

Every training launcher (`launch.train`, `launch.cifar10`, `launch.imagenet`,
`launch.synthetic_mnist`) defines these flags by importing this module. Each flag is the setting
of the same name (`experiments.settings.DEFAULTS`); flags whose sensible value depends on the
experiment default to None here and take the experiment's preset
(`experiments.settings.PRESETS`) unless given on the command line or in a flagfile. `run`,
`usage_error`, `LaunchError` and `plain_number` are `launch.cli`'s (the tools that define no
training flag import that module alone): bad flags and settings exit with status 2 and one
clear message, where the settings the library names (`epochs`) read as flags (--epochs).
"""

import math

from absl import flags
from absl import logging
import tensorflow as tf

from deform_tf import models
from experiments import datasets
from experiments import settings as settings_lib
from experiments import training
from launch import cli
from pipelines import core
from pipelines import mnist

flags.DEFINE_string("output_dir", None, "Where the run writes config, checkpoints, TensorBoard "
                    "summaries and metrics. Required.")
flags.DEFINE_bool("resume", True, "Continue the run found in --output_dir if it has the same "
                  "config (the default: rerunning a killed command resumes it).")
flags.DEFINE_bool("overwrite", False, "If --output_dir holds another run, move it aside to "
                  "<output_dir>.replaced-<time> (nothing is deleted) and start afresh.")
flags.DEFINE_enum("dataset", None, list(datasets.DATASETS),
                  "Training data (default: the launcher's).")
flags.DEFINE_string("data_dir", None, "Directory of the data set; default: the standard "
                    "locations, then the embedded Fashion-MNIST subset where that applies.")
flags.DEFINE_integer("max_train_examples", None, "Use only the first N training examples.")
flags.DEFINE_enum("architecture", None, list(models.STAGES), "Stage layout of the paper's VGG "
                  "net; default: the data set's (cifar10 for CIFAR-10, imagenet for ImageNet, "
                  "mnist for (Fashion-)MNIST and the synthetic task).")
flags.DEFINE_enum("downsampling", None, list(models.DOWNSAMPLING),
                  "Downsampling layer after each stage of the paper's VGG net (default "
                  "max_pool).")
flags.DEFINE_float("width", None, "The model's width option: the channel multiplier of the "
                   "paper's nets, LeNet and ResNet-18 (e.g. 0.25 for quick runs), the MobileNets' "
                   "alpha, units per hidden layer of fc2/fc4/fc6; default: the model's (1.0 for "
                   "the paper's nets).")
flags.DEFINE_integer("seed", 0, "Seed of init, data order, augmentation and deformations.")
flags.DEFINE_integer("batch_size", None, "Global batch size.")
flags.DEFINE_enum("optimizer", "sgd", list(training.OPTIMIZERS),
                  "sgd: SGD with momentum; adam: AdamW.")
flags.DEFINE_float("learning_rate", None, "Peak learning rate (after warmup).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
flags.DEFINE_enum("schedule", "cosine", list(training.SCHEDULES),
                  "Learning-rate decay after warmup.")
flags.DEFINE_float("warmup_epochs", None, "Linear warmup length in epochs.")
flags.DEFINE_float("epochs", None, "Training length in epochs (or give --train_steps).")
flags.DEFINE_integer("examples_per_epoch", None, "Examples per epoch, for turning --epochs and "
                     "--warmup_epochs into steps; default: the number of training examples "
                     "(counted from the data; required with --epochs for the synthetic stream).")
flags.DEFINE_integer("train_steps", None, "Training length in steps (instead of --epochs); 0 "
                     "measures the initialization only.")
flags.DEFINE_float("weight_decay", None, "Decoupled weight decay (not on BN or biases).")
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing (off by default).")
flags.DEFINE_bool("random_labels", False, "Replace the labels once by uniform random labels "
                  "(fixed by --seed; paper Fig. 6c, 7).")
flags.DEFINE_integer("train_grid_size", 3, "Control grid of the training-time deformation.")
flags.DEFINE_float("train_strength", 0.0, "Training-time TPS deformation strength in pixels "
                   "(0: no deformation of training images).")
flags.DEFINE_integer("eval_grid_size", None, "Control grid of the measured deformation; "
                     "default: the launcher's, else sized to the image (3 at 32 px, 5 at 224 px).")
flags.DEFINE_float("eval_strength", None, "Strength (px) of the measured deformation; default: "
                   "the launcher's, else sized to the image (2 px at 32 px, 10 px at 224 px).")
flags.DEFINE_float("smooth_init_sigma", 0.0, "Gaussian smoothing (px) of the initial conv "
                   "filters (paper Fig. 4); 0 = plain init.")
flags.DEFINE_integer("bn_recalibration_batches", 0, "After training, replace the batch norms' "
                     "moving statistics with those of N training batches (precise BN; for "
                     "short runs, whose moving averages lag behind); 0 = keep them.")
flags.DEFINE_integer("measure_every", 0, "Measure sensitivity and smoothness every N steps "
                     "(besides init and end); 0 = only at init and end.")
flags.DEFINE_integer("num_measure_images", 128, "Images N of the sensitivity measurement.")
flags.DEFINE_integer("checkpoint_every", 500, "Checkpoint every N steps.")
flags.DEFINE_integer("log_every", 50, "Log and write scalars every N steps.")
flags.DEFINE_bool("mixed_precision", False, "Train in mixed_float16.")
flags.DEFINE_bool("xla", False, "Compile the training step with XLA (jit_compile).")
flags.DEFINE_bool("deterministic", False, "Deterministic ops and input order (a killed and "
                  "resumed run then ends with the same weights as an uninterrupted one).")
flags.DEFINE_enum("strategy", "default", list(training.STRATEGIES),
                  "tf.distribute strategy; multi_worker_mirrored reads TF_CONFIG.")
flags.DEFINE_string("tpu", "", "TPU address for --strategy=tpu.")
flags.DEFINE_integer("num_logical_devices", 0, "Split the CPU into N logical devices (to try "
                     "--strategy=mirrored on one machine); 0 = leave as is.")

flags.register_validator("train_steps", lambda v: v is None or v >= 0,
                         message="--train_steps must be >= 0.")
for _name in ("batch_size", "max_train_examples", "examples_per_epoch", "num_measure_images",
              "checkpoint_every", "log_every"):
    flags.register_validator(_name, lambda v: v is None or v >= 1,
                             message=f"--{_name} must be a positive integer.")
for _name in ("train_grid_size", "eval_grid_size"):
    flags.register_validator(_name, lambda v: v is None or v >= 2,
                             message=f"--{_name} must be >= 2 (a thin-plate spline needs "
                             "control points spanning the image).")
for _name in ("learning_rate", "epochs", "width"):
    flags.register_validator(_name, lambda v: v is None or (math.isfinite(v) and v > 0),
                             message=f"--{_name} must be a positive number.")
for _name in ("weight_decay", "label_smoothing", "train_strength", "eval_strength",
              "smooth_init_sigma", "warmup_epochs", "momentum"):
    flags.register_validator(_name, lambda v: v is None or (math.isfinite(v) and v >= 0),
                             message=f"--{_name} must be a finite number >= 0.")
flags.register_validator("label_smoothing", lambda v: v < 1,
                         message="--label_smoothing must be < 1.")
for _name in ("measure_every", "bn_recalibration_batches"):
    flags.register_validator(_name, lambda v: v >= 0, message=f"--{_name} must be >= 0.")
flags.register_validator("num_logical_devices", lambda v: v >= 0,
                         message="--num_logical_devices must be >= 0.")
flags.register_validator("num_measure_images", lambda v: v is None or v >= 2,
                         message="--num_measure_images must be >= 2 (pairwise distances).")

FLAGS = flags.FLAGS


def value(name, defaults):
    """The flag's value if given (command line or flagfile), else the launcher's default (a
    setting no flag of this launcher defines: its default)."""
    if name not in FLAGS:
        return defaults.get(name)
    if FLAGS[name].present or name not in defaults:
        return FLAGS[name].value
    return defaults[name]


LaunchError = cli.LaunchError
plain_number = cli.plain_number
usage_error = cli.usage_error
run = cli.run


def refuse_embedded_data(profile_name, dataset, data_dir):
    """Raises the usage error for a profile that trains on the full (Fashion-)MNIST when only
    the embedded 4,000-image subset would be found (or none at all)."""
    if dataset not in datasets.MNIST_LIKE:
        return
    try:
        _, embedded = mnist.find_mnist_dir(data_dir, dataset)
    except FileNotFoundError as e:
        raise usage_error(str(e)) from None
    if embedded:
        raise usage_error(
            f"The {profile_name} profile trains on the full {dataset} data, not the embedded "
            "4,000-image subset: install Debian's dataset-fashion-mnist or give --data_dir.")


def split_cpu(num_devices):
    """Splits the first CPU into `num_devices` logical devices (before TF initializes)."""
    if num_devices:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def setup_runtime():
    """Checks --output_dir; process-wide settings: logical devices, determinism, logging."""
    if not FLAGS.output_dir:
        raise usage_error("--output_dir is required: where the run writes its files.")
    split_cpu(FLAGS.num_logical_devices)
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    logging.set_verbosity(logging.INFO)


SETTINGS = settings_lib.SETTINGS  # the flags (besides run control) that determine a run


def default_settings(experiment):
    """Every setting at its default for `experiment` (a key of `settings_lib.PRESETS`)."""
    return settings_lib.default_settings(experiment)


def settings_from_flags(experiment):
    """The run settings: flags given on the command line or in a flagfile, else the
    experiment's defaults."""
    if FLAGS["train_steps"].present and FLAGS["epochs"].present:
        raise usage_error("Give either --train_steps or --epochs, not both.")
    defaults = settings_lib.default_settings(experiment)
    settings = {name: value(name, defaults) for name in SETTINGS}
    if FLAGS["epochs"].present:
        settings["train_steps"] = None  # the given --epochs win over a default step count
    return settings


def train_main(experiment, spec_fields=None):
    """The `main` of a training launcher: flags -> config -> `training.train`."""

    def main(argv):
        if len(argv) > 1:
            raise usage_error(f"Unexpected arguments: {' '.join(argv[1:])}")
        setup_runtime()
        try:
            # The strategy first: multi-worker collectives must be set up before TF starts.
            strategy = training.make_strategy(FLAGS.strategy, FLAGS.tpu)
            config, data = settings_lib.build_run(experiment, settings_from_flags(experiment),
                                                  spec_fields() if spec_fields else None)
            final = training.train(config, data, FLAGS.output_dir, strategy,
                                   resume=FLAGS.resume, overwrite=FLAGS.overwrite,
                                   flags_text=FLAGS.flags_into_string())
        except (training.RunError, FileNotFoundError, ValueError) as e:
            raise usage_error(str(e)) from None
        except (tf.errors.InvalidArgumentError, tf.errors.DataLossError,
                tf.errors.NotFoundError) as e:
            raise usage_error(f"Bad input data: {core.error_line(e)}") from None
        logging.info("Finished: %s", ", ".join(f"{key} {plain_number(value)}"
                                               for key, value in final.items()))

    return main
