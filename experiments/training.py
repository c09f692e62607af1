"""The training loop shared by the launchers: strategy, checkpoints and resume, measurements.

No flags here: launchers build a `TrainConfig` and a `Data` and call `train`. What a run writes
into its output directory (`experiments.run_dir` keeps it: one run per directory, every result file
replaced atomically, rows keyed by step):

  config.json          the resolved configuration (a different config refuses the directory)
  flags.txt            the launcher's resolved flags, as a flagfile
  run.lock             locked while a process trains the run (holds its pid and host)
  checkpoints/         tf.train checkpoints (model, optimizer, step) and model_config.json, so
                       `deform_tf.model_io.load_model` can read them
  summaries/           TensorBoard: train/*, eval/*, sensitivity/*, relative_stability/*,
                       smoothness/*, kernel histograms, a clean-vs-deformed image grid
  metrics.csv          one row per log interval: step, loss, accuracy, learning rate, ex/s
  measurements.json    per-layer sensitivity (cosine, Euclidean), relative stability and
                       smoothness at init, every `measure_every` steps and at the end
  final.json           final evaluation (test loss and accuracy; for in-memory data sets also
                       the loss and accuracy on the training set as trained, in inference
                       mode); its presence marks a finished run

Data parallelism: one host `tf.data` iterator per worker yields the worker's share of the global
batch and each replica takes its slice inside `strategy.run`. The input stream is a pure function
of the seed and the step (`pipelines.order`), so a checkpoint holds no input pipeline state (it
stays the size of the model and optimizer whatever the data set): killing the process at any
time and restarting the same command resumes from the last checkpoint and rebuilds the stream at
its step (with `deterministic`, bit-for-bit as if never interrupted). A data error met while
training or evaluating is a RunError naming the file and, where known, the record.
"""

import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Callable, Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from deform_tf import batch_norm
from deform_tf import deformation
from deform_tf import initializers
from deform_tf import kernels
from deform_tf import model_io
from deform_tf import sensitivity
from deform_tf import smoothness
from experiments import datasets
from experiments import models as registry
from experiments import run_dir
from pipelines import core

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")
SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("sgd", "adam")


RunError = run_dir.RunError  # a problem with the run's inputs or output directory


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (written to config.json)."""

    experiment: str
    model: str  # a name of the model registry (`experiments.models`) or "module:function"
    dataset: str  # a name of the data-set registry (`experiments.datasets`)
    input_shape: tuple
    num_classes: int
    seed: int
    batch_size: int  # global
    train_steps: int
    model_options: dict = dataclasses.field(default_factory=dict)  # the model entry's options
    optimizer: str = "sgd"
    learning_rate: float = 0.1  # peak, for `batch_size`
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    smooth_init_sigma: float = 0.0
    # Batches whose statistics replace the batch norms' moving ones after training
    # (`deform_tf.batch_norm.recalibrate`); 0: keep the moving averages.
    bn_recalibration_batches: int = 0
    eval_grid_size: int = 3
    eval_strength: float = 2.0
    measure_every: int = 0  # 0: only at init and at the end
    num_measure_images: int = 128
    checkpoint_every: int = 500
    log_every: int = 50
    mixed_precision: bool = False
    jit_compile: bool = False
    deterministic: bool = False
    data: dict = dataclasses.field(default_factory=dict)  # data settings, for the record

    def model_fields(self):
        """What rebuilds the model (checkpoints/model_config.json): `registry.build_from_fields`
        reads it back; the paper's nets also get their `deform_tf.models.vgg` arguments, so
        `deform_tf.model_io.load_model` rebuilds them without the registry."""
        fields = dict(model=self.model, options=dict(self.model_options),
                      input_shape=list(self.input_shape), num_classes=self.num_classes,
                      seed=self.seed, dataset=self.dataset)
        entry = registry.get(self.model)
        if entry.config is not None:
            fields["vgg"] = dict(config=entry.config, downsampling=entry.downsampling,
                                 width=self.model_options.get("width", 1.0),
                                 input_shape=list(self.input_shape),
                                 num_classes=self.num_classes, seed=self.seed)
        return fields

    def measured_deformation(self):
        """The deformation measured during the run (`deform_tf.deformation`, the run's seed)."""
        return deformation.Deformation("tps", self.eval_grid_size, self.eval_strength,
                                       seed=self.seed)

    def to_json(self):
        """config.json's dict. `bn_recalibration_batches` appears only when set, so runs
        written before it existed still resume with the same config."""
        fields = dataclasses.asdict(self)
        if not fields["bn_recalibration_batches"]:
            del fields["bn_recalibration_batches"]
        return json.loads(json.dumps(fields))


Data = datasets.Data
# Errors an input pipeline raises on bad data (a failed in-graph check, a corrupt record, a file
# gone missing).
DATA_ERRORS = datasets.DATA_ERRORS


def data_error(data, error, split, position, input_context=None):
    """The RunError for a data error: the message of `data.describe_error`, or the error's line."""
    if data.describe_error is not None:
        message = data.describe_error(error, split, position, input_context)
    else:
        message = f"Bad input data: {core.error_line(error)}"
    return RunError(f"{message} (while reading the {split} data; checkpoints already written "
                    "are kept).")


def make_strategy(name, tpu=""):
    """The tf.distribute strategy named by `name` (one of STRATEGIES)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # All GPUs, or else every logical CPU device (see --num_logical_devices).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise RunError(f"Unknown strategy {name!r}; choose one of {STRATEGIES}.")


def worker_info(strategy):
    """(num_workers, worker_index, is_chief) for the current process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver:
        spec = resolver.cluster_spec()
        num_workers = max(1, len(spec.as_dict().get("worker", [])))
        task_type, task_id = resolver.task_type, resolver.task_id or 0
        is_chief = task_type in (None, "chief") or (task_type == "worker" and task_id == 0)
        return num_workers, task_id, is_chief
    return 1, 0, True


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak`, then cosine decay to 0, step decay (x0.1 at 1/2 and 3/4), or
    constant, over `total_steps`."""

    def __init__(self, peak, total_steps, warmup_steps, kind):
        self.peak, self.total, self.warmup, self.kind = peak, total_steps, warmup_steps, kind

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = tf.cast(self.warmup, tf.float32)
        progress = tf.clip_by_value(
            (step - warmup) / tf.maximum(float(self.total - self.warmup), 1.0), 0.0, 1.0)
        if self.kind == "cosine":
            rate = 0.5 * self.peak * (1.0 + tf.cos(math.pi * progress))
        elif self.kind == "step":
            rate = self.peak * tf.where(progress < 0.5, 1.0, tf.where(progress < 0.75, 0.1, 0.01))
        else:
            rate = tf.constant(self.peak, tf.float32)
        if self.warmup > 0:
            rate = tf.where(step < warmup, self.peak * (step + 1.0) / warmup, rate)
        return rate

    def get_config(self):
        return dict(peak=self.peak, total_steps=self.total, warmup_steps=self.warmup,
                    kind=self.kind)


def make_optimizer(config):
    """(optimizer, schedule) of a run: SGD with momentum or AdamW on `WarmupSchedule`, weight
    decay on kernels only (not on batch-norm gamma/beta or biases), loss scaling with mixed
    precision."""
    schedule = WarmupSchedule(config.learning_rate, config.train_steps, config.warmup_steps,
                              config.schedule)
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum,
                                         weight_decay=config.weight_decay or None)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    if config.mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer, schedule


def measure(model, runner, images, measured, step):
    """Per-layer sensitivity (cosine, Euclidean), relative stability and smoothness.

    `measured`: the `deform_tf.deformation.Deformation` measured, with the seed of its draws and
    of the noise (`deformation.measurement_seed`, `deformation.noise_seed`): the same each time.
    """
    deform = measured.measure(*images.shape[1:3])
    result = {"step": int(step)}
    result.update(sensitivity.measure_deformation(
        None, images, deform, noise_seed=deformation.noise_seed(measured.seed), batch_size=64,
        runner=runner))
    result["smoothness"] = smoothness.model_smoothness(model)
    return result


def _write_measurement_summaries(result, model, step):
    for distance in sensitivity.DISTANCES:
        res = result[f"sensitivity_{distance}"]
        for i, (name, value) in enumerate(zip(res["layers"], res["sensitivity"])):
            tf.summary.scalar(f"sensitivity_{distance}/{i:02d}_{name}", value, step=step)
    res = result["relative_stability"]
    for i, (name, value) in enumerate(zip(res["layers"], res["relative_stability"])):
        tf.summary.scalar(f"relative_stability/{i:02d}_{name}", value, step=step)
    rows = result["smoothness"]
    for row in rows:
        tf.summary.scalar(f"smoothness/{row['index']:02d}_{row['layer']}", row["smoothness"],
                          step=step)
    if rows:  # a fully connected net has no conv kernels
        tf.summary.scalar("smoothness/mean", smoothness.mean_smoothness(rows), step=step)
    for layer in kernels.conv_layers(model):
        tf.summary.histogram(f"kernels/{layer.name}", layer.kernel, step=step)


def _image_grid(images, deformed):
    """[1, rows*H, 2*W, C] grid: clean | deformed, scaled per image to [0, 1]."""
    pairs = tf.concat([images, deformed], axis=2)
    lo = tf.reduce_min(pairs, axis=[1, 2, 3], keepdims=True)
    hi = tf.reduce_max(pairs, axis=[1, 2, 3], keepdims=True)
    pairs = (pairs - lo) / tf.maximum(hi - lo, 1e-6)
    return tf.reshape(pairs, [1, -1, pairs.shape[2], pairs.shape[3]])


def train(config, data, output_dir, strategy=None, resume=True, overwrite=False,
          flags_text=None):
    """Trains (or resumes) one run; returns the final evaluation dict.

    Nothing is written before the settings, the model and the input pipeline are built; then
    the chief takes `output_dir` (`run_dir.open_run`: lock, config) for the whole run.

    The steps, in order: `build_state` (model, optimizer, step counter), `restore` (the last
    complete checkpoint, if any), `make_train_steps` (the compiled training loop), then
    intervals of training (`_train_interval`) with measurements (`record_measurement`) and
    checkpoints, and `_finish` (evaluation, last measurement, final.json).

    Raises RunError on settings that do not fit the strategy, a conflicting or busy output
    directory, an unreadable checkpoint or a full disk.
    """
    with contextlib.ExitStack() as cleanup, run_dir.disk_full_is_run_error(output_dir):
        return _train(config, data, output_dir, strategy, resume, overwrite, flags_text,
                      cleanup)


def _check_strategy(config, strategy, replicas):
    if config.batch_size % replicas:
        raise RunError(f"`batch_size` {config.batch_size} must be divisible by the "
                       f"{replicas} replicas.")
    if config.jit_compile and replicas > 1 and \
            not isinstance(strategy, tf.distribute.TPUStrategy):
        # Synchronized batch norm all-reduces inside the forward pass, which a nested
        # XLA function inside strategy.run cannot contain.
        raise RunError("`xla` compiles the training step of single-replica runs (and TPU "
                       "runs, which are always compiled); drop it with several replicas.")
    if config.bn_recalibration_batches and replicas > 1:
        raise RunError("`bn_recalibration_batches` recomputes batch-norm statistics on one "
                       "replica; drop it with several replicas (a long run's moving "
                       "statistics have settled).")
    if config.bn_recalibration_batches < 0:
        raise RunError(f"`bn_recalibration_batches` must be 0 or more, got "
                       f"{config.bn_recalibration_batches}.")


@dataclasses.dataclass
class TrainState:
    """What a run trains and what its checkpoints hold."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    schedule: WarmupSchedule  # the learning rate at a step, for the logs
    step: tf.Variable  # int64 scalar: the training steps taken

    def checkpoint(self):
        return tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step)


def build_model(config, sync_batch_norm=False):
    """The run's model from the registry (the paper's nets with synchronized batch norm if
    asked: several replicas), with smooth init if configured."""
    options = dict(config.model_options)
    entry = registry.get(config.model)
    if sync_batch_norm:
        if entry.config is None:
            raise RunError(f"Model {config.model!r} has no synchronized batch norm; train it "
                           "with one replica (strategy 'default').")
        options["sync_batch_norm"] = True
    try:
        model = entry.build(tuple(config.input_shape), config.num_classes, config.seed,
                            **options)
    except ValueError as e:
        raise RunError(str(e)) from None
    if config.smooth_init_sigma > 0:
        initializers.smooth_model_kernels(model, config.smooth_init_sigma)
    return model


def build_state(config, strategy):
    """The run's model (with smooth init if configured), built optimizer and step 0, created
    under `strategy`'s scope (synchronized batch norm with several replicas)."""
    with strategy.scope():
        model = build_model(config, sync_batch_norm=strategy.num_replicas_in_sync > 1)
        optimizer, schedule = make_optimizer(config)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    return TrainState(model, optimizer, schedule, step)


def restore(state, checkpoint_dir, log_fresh_start=False):
    """Restores the last complete checkpoint in `checkpoint_dir` into `state`, if there is one.

    Returns a `tf.train.CheckpointManager` for the run's later checkpoints (keeps the last 3).
    Raises RunError naming the checkpoint if it cannot be read.
    """
    resume_from = run_dir.checkpoint_to_resume(checkpoint_dir)  # before the manager reads it
    checkpoint = state.checkpoint()
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=3)
    if resume_from:
        try:
            checkpoint.restore(resume_from).assert_existing_objects_matched()
        except Exception as e:  # pylint: disable=broad-except
            # A damaged file raises anything from OpError to IndexError inside the reader.
            raise run_dir.damaged_checkpoint_error(resume_from, e) from None
        logging.info("Resumed from %s at step %d.", resume_from, int(state.step.numpy()))
    elif log_fresh_start:
        logging.info("No checkpoint in %s yet; starting from step 0.", checkpoint_dir)
    return manager


def make_train_steps(config, state, strategy, num_workers=1):
    """The compiled training loop: fn(iterator, num_steps) -> (loss sum, correct sum).

    Takes `num_steps` SGD steps on batches from `iterator` (each worker's share of the global
    batch, as `Data.train` yields them; each replica takes its slice), counts them in
    `state.step`, and returns the summed mean batch loss and the number of correctly
    classified training examples. With `config.jit_compile`, the gradient computation is
    compiled with XLA.
    """
    model, optimizer = state.model, state.optimizer
    loss_fn = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=config.label_smoothing,
        reduction="none")
    local_replicas = strategy.num_replicas_in_sync // num_workers

    def gradients(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)
            per_example = loss_fn(tf.one_hot(labels, config.num_classes), logits)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=config.batch_size)
            scaled = optimizer.scale_loss(loss) if config.mixed_precision else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32))
        return loss, correct, grads

    if config.jit_compile:  # single replica or TPU (see _check_strategy)
        gradients = tf.function(gradients, jit_compile=True)

    def replica_step(images, labels):
        # Each replica takes its slice of the worker's batch.
        local = tf.distribute.get_replica_context().replica_id_in_sync_group % local_replicas
        size = tf.shape(images)[0] // local_replicas
        images = images[local * size:(local + 1) * size]
        labels = labels[local * size:(local + 1) * size]
        loss, correct, grads = gradients(images, tf.cast(labels, tf.int32))
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, correct

    # The iterator is an argument, not a capture: a traced function that captures it keeps the
    # input pipeline's threads alive until the process exits, and at interpreter exit each such
    # iterator took up to a minute to shut down.
    @tf.function
    def run_steps(iterator, num_steps):
        loss_sum = tf.constant(0.0)
        correct_sum = tf.constant(0.0)
        for _ in tf.range(num_steps):
            images, labels = next(iterator)
            loss, correct = strategy.run(replica_step, args=(images, labels))
            loss_sum += strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
            correct_sum += strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None)
        state.step.assign_add(tf.cast(num_steps, tf.int64))
        return loss_sum, correct_sum

    return run_steps


def record_measurement(model, runner, images, config, step, measurements, writer):
    """Measures the model at `step` (`measure`), stores it in measurements.json (replacing a
    measurement of the same step) and writes its summaries."""
    result = measure(model, runner, images, config.measured_deformation(), step)
    measurements.put(result)
    with writer.as_default():
        _write_measurement_summaries(result, model, step)


def _write_example_deformations(images, config, writer):
    """The clean-vs-deformed image grid of the first 8 measured images, at step 0."""
    with writer.as_default():
        shown = images[:8]
        deformed = config.measured_deformation().measure(*images.shape[1:3])(shown)
        tf.summary.image("data/clean_vs_deformed", _image_grid(shown, deformed), step=0)


def _interval_steps(config, step):
    """Steps from `step` to the next log, checkpoint, measurement or the end."""
    boundaries = [config.train_steps, _next_multiple(step, config.log_every),
                  _next_multiple(step, config.checkpoint_every)]
    if config.measure_every:
        boundaries.append(_next_multiple(step, config.measure_every))
    return min(b for b in boundaries if b > step) - step


def _train_interval(run_steps, iterator, num_steps, config, data, step, input_context):
    """Runs `num_steps` training steps; returns the interval's metrics row (at the new step).

    Raises RunError for a data error or a loss that is not finite.
    """
    tick = time.time()
    try:
        loss_sum, correct_sum = run_steps(iterator, tf.constant(num_steps))
    except DATA_ERRORS as e:
        raise data_error(data, e, "train", step * config.batch_size, input_context) from None
    elapsed = time.time() - tick
    step += num_steps
    loss = float(loss_sum) / num_steps
    if not math.isfinite(loss):
        raise RunError(f"The training loss became {loss} at step {step}; lower "
                       "`learning_rate` or check the data.")
    return dict(step=step, loss=loss, accuracy=float(correct_sum) / (num_steps * config.batch_size),
                examples_per_sec=num_steps * config.batch_size / max(elapsed, 1e-9))


def _log_interval(row, lr, config, metrics, writer, progress):
    """Writes an interval's metrics row (with its learning rate) to metrics.csv, TensorBoard
    and the log. `progress`: (start step, start time) of this process's training, for the ETA."""
    row = dict(step=row["step"], loss=row["loss"], accuracy=row["accuracy"], learning_rate=lr,
               examples_per_sec=row["examples_per_sec"])
    metrics.put(row)
    step = row["step"]
    with writer.as_default():
        tf.summary.scalar("train/loss", row["loss"], step=step)
        tf.summary.scalar("train/accuracy", row["accuracy"], step=step)
        tf.summary.scalar("train/learning_rate", lr, step=step)
        tf.summary.scalar("train/examples_per_sec", row["examples_per_sec"], step=step)
    start_step, started = progress
    eta = (time.time() - started) / (step - start_step) * (config.train_steps - step)
    logging.info("step %d/%d  loss %.4f  acc %.3f  lr %.4g  %.0f ex/s  ETA %s",
                 step, config.train_steps, row["loss"], row["accuracy"], lr,
                 row["examples_per_sec"], _format_seconds(eta))


def _train(config, data, output_dir, strategy, resume, overwrite, flags_text, cleanup):
    strategy = strategy or tf.distribute.get_strategy()
    num_workers, worker_index, is_chief = worker_info(strategy)
    replicas = strategy.num_replicas_in_sync
    _check_strategy(config, strategy, replicas)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")

    input_context = tf.distribute.InputContext(num_workers, worker_index, replicas)
    state = build_state(config, strategy)
    checkpoint_dir = os.path.join(output_dir, "checkpoints")
    if is_chief:  # the first write
        run = cleanup.enter_context(run_dir.open_run(output_dir, config.to_json(), resume,
                                                     overwrite, flags_text))
        model_io.save_model_config(checkpoint_dir, **config.model_fields())
    else:
        checkpoint_dir = os.path.join(checkpoint_dir, f"worker-{worker_index}")
    manager = restore(state, checkpoint_dir, log_fresh_start=is_chief and run.resuming)
    start_step = int(state.step.numpy())
    if is_chief:
        metrics, measurements = run.metrics(), run.measurements()
        metrics.truncate(start_step)  # rows after the checkpoint are redone
        measurements.truncate(start_step)
    # The input stream restarts at the step: no input state is stored in checkpoints.
    iterator = iter(data.train(input_context, start_step))
    writer = (tf.summary.create_file_writer(os.path.join(output_dir, "summaries"))
              if is_chief else tf.summary.create_noop_writer())
    run_steps = make_train_steps(config, state, strategy, num_workers)
    runner = sensitivity.RepresentationRunner(state.model)
    measure_images = tf.constant(data.measure_images, tf.float32)

    def do_measure(step):
        if is_chief:
            record_measurement(state.model, runner, measure_images, config, step, measurements,
                               writer)

    if start_step == 0:
        do_measure(0)
        _write_example_deformations(measure_images, config, writer)

    step = start_step
    progress = (start_step, time.time())
    examples_per_sec = 0.0
    last_row = None
    while step < config.train_steps:
        row = _train_interval(run_steps, iterator, _interval_steps(config, step), config, data,
                              step, input_context)
        step, examples_per_sec = row["step"], row["examples_per_sec"]
        if is_chief:
            _log_interval(row, float(state.schedule(step)), config, metrics, writer, progress)
        if config.measure_every and step % config.measure_every == 0 and \
                step < config.train_steps:
            do_measure(step)
        if step == config.train_steps and config.bn_recalibration_batches:
            recalibrate_batch_norm(state.model, data, config, input_context)
        if step % config.checkpoint_every == 0 or step == config.train_steps:
            manager.save(checkpoint_number=step)
        last_row = row

    final = {"step": step, "examples_per_sec": examples_per_sec}
    if data.evaluate is not None:
        final.update(evaluate(state.model, data.evaluate(),
                              on_data_error=lambda e, n: data_error(data, e, "eval", n)))
    if data.evaluate_train is not None and step > 0:  # an init-only run has fitted nothing
        fit = evaluate(state.model, data.evaluate_train(),
                       on_data_error=lambda e, n: data_error(data, e, "train", n))
        final.update(train_loss=fit["loss"], train_accuracy=fit["accuracy"],
                     train_examples=fit["num_examples"])
        _warn_if_statistics_lag(state.model, config, last_row, fit["accuracy"])
    if is_chief:
        if not measurements.rows or measurements.rows[-1]["step"] != step:
            do_measure(step)
        _write_final(final, step, run, writer)
    return final


def recalibrate_batch_norm(model, data, config, input_context):
    """Replaces the batch norms' moving statistics with those of the `bn_recalibration_batches`
    training batches that follow the last step (deterministic, so a resumed run gets the same).

    Raises RunError for a data error.
    """
    stream = data.train(input_context, config.train_steps)
    try:
        count = batch_norm.recalibrate(model, stream, config.bn_recalibration_batches)
    except DATA_ERRORS as e:
        raise data_error(data, e, "train", config.train_steps * config.batch_size,
                         input_context) from None
    if count:
        logging.info("Batch-norm statistics recomputed from %d training examples.", count)
    else:
        logging.info("`bn_recalibration_batches` is set, but the model has no batch norm.")


# A trained net whose inference-mode training accuracy is this far below its accuracy on its
# last training batches most likely normalizes with moving statistics that lag behind.
LAG_WARNING_GAP = 0.25


def _warn_if_statistics_lag(model, config, last_row, train_accuracy):
    if (last_row is None or config.bn_recalibration_batches
            or not batch_norm.batch_norm_layers(model)):
        return
    if last_row["accuracy"] - train_accuracy > LAG_WARNING_GAP:
        logging.warning(
            "Training accuracy is %.3f on the last training batches but %.3f in inference "
            "mode: the batch norms' moving statistics probably lag behind the weights (a short "
            "run, or a high batch-norm momentum such as MobileNetV2's 0.999). Set "
            "`bn_recalibration_batches` (e.g. 50) to recompute them after training.",
            last_row["accuracy"], train_accuracy)


def _write_final(final, step, run, writer):
    """The final evaluation's summaries and final.json (which marks the run finished)."""
    with writer.as_default():
        for key in ("loss", "accuracy"):
            if key in final:
                tf.summary.scalar(f"eval/{key}", final[key], step=step)
    writer.flush()
    run.write_json(run_dir.FINAL_FILE, final)


def evaluate(model, dataset, on_data_error=None):
    """Mean loss and accuracy of `model` (inference mode) over a finite dataset.

    on_data_error: None, or fn(error, examples evaluated before it) -> the exception to raise
    for a data error (see DATA_ERRORS) met in `dataset`.
    """

    @tf.function
    def batch_stats(images, labels):
        logits = tf.cast(model(images, training=False), tf.float32)
        labels = tf.cast(labels, tf.int32)
        loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        correct = tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), labels),
                          tf.float32)
        return tf.reduce_sum(loss), tf.reduce_sum(correct), tf.cast(tf.shape(labels)[0],
                                                                     tf.float32)

    totals = np.zeros(3)
    try:
        for images, labels in dataset:
            totals += [float(v) for v in batch_stats(images, labels)]
    except DATA_ERRORS as e:
        if on_data_error is None:
            raise
        raise on_data_error(e, int(totals[2])) from None
    if totals[2] == 0:
        raise RunError("The evaluation data set is empty.")
    return {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2],
            "num_examples": int(totals[2])}


def _next_multiple(step, every):
    return (step // every + 1) * every if every else step + 10**12


def _format_seconds(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"
