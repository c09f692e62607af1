"""A trained run's model: rebuilt from its checkpoints/model_config.json and restored.

`experiments.training` writes model_config.json beside a run's checkpoints: the registry name
of its model, the model's options, input shape, classes, seed and the data set it trains on
(and, for the paper's nets, the `deform_tf.models.vgg` arguments, which `deform_tf.model_io`
reads without the registry). `load_model` rebuilds any registered model (or a user's
module:function builder, importable again) and restores the checkpoint; `read_fields` returns
the description, e.g. for the data set whose normalization the model expects.
"""

import json
import os

import tensorflow as tf

from deform_tf import model_io
from experiments import models as registry
from experiments import run_dir


def checkpoint_path(path):
    """The checkpoint directory of a training run's output directory; any other path as is."""
    checkpoints = os.path.join(path, run_dir.CHECKPOINT_DIR)
    if tf.io.gfile.exists(os.path.join(checkpoints, model_io.MODEL_CONFIG_FILE)):
        return checkpoints
    return path


def read_fields(path):
    """The model_config.json beside a checkpoint directory or prefix, or None if there is none."""
    directory = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
    config_path = os.path.join(directory, model_io.MODEL_CONFIG_FILE)
    if not tf.io.gfile.exists(config_path):
        return None
    try:
        with tf.io.gfile.GFile(config_path) as f:
            return json.load(f)
    except ValueError as e:
        raise ValueError(f"{config_path} is not valid JSON ({e}): the run's model cannot be "
                         "rebuilt.") from None


def load_model(path, safe_mode=True, unsafe_hint=model_io.UNSAFE_CODE_HINT):
    """`deform_tf.model_io.load_model` that also rebuilds registry models of trained runs."""
    return model_io.load_model(path, safe_mode=safe_mode, unsafe_hint=unsafe_hint,
                               build=registry.build_from_fields)


def trained_dataset(fields):
    """The data set a run's model trained on (its normalization is the model's input), or
    None (a description written before data sets were recorded)."""
    return None if fields is None else fields.get("dataset")
