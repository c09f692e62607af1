"""Steps per second of the launcher's training loop against a bare `model.fit`.

Run as `python -m bench.training` (`--quick` for a smoke run of a few seconds). For
`vgg("cifar10", "max_pool")` at width 0.25 and 1.0, batch 128, with XLA off and on, it measures
steps/s of:

  launcher     `experiments.training.train` itself, default strategy, SGD (momentum 0.9, the
               warmup/cosine `WarmupSchedule`, decoupled weight decay 5e-4 except on BN and
               biases), `--xla` = `TrainConfig(jit_compile=True)`; its `Data.train` returns
               `tf.data.Dataset.from_tensors((images, labels)).repeat()`: one in-memory batch.
  fit spe=1    `model.compile(optimizer=<the launcher's optimizer, same schedule>,
               loss=SparseCategoricalCrossentropy(from_logits=True), jit_compile=XLA)` then
               `model.fit(<the same batch>.repeat(), steps_per_epoch=K, epochs=..., verbose=0)`
               with `steps_per_execution=1`,
  fit spe=K    the same with `steps_per_execution=K`, K = the launcher's steps per call.

How only the steps are timed. `train()` runs `run_steps(num_steps)` (a `tf.function` with a
`tf.range` loop of `strategy.run(replica_step)` over the host iterator) once per log interval and
times that call itself: `metrics.csv` gets `examples_per_sec = num_steps * batch / (time of the
run_steps call)`, with nothing else in the timed region (the CSV, summaries, checkpoints and the
sensitivity measurements happen between calls). With `log_every = K` (the launcher's default 50;
`checkpoint_every = train_steps`, `measure_every = 0`) each interval is one `run_steps` call of K
steps, so the launcher's own timing of interval i gives steps/s = examples_per_sec / batch. The
first interval includes tracing (and XLA compilation) and is dropped; the measurement images are
2 (the minimum), so the init and end measurements stay cheap (they are not timed anyway). For fit,
a callback reads the clock at `on_epoch_begin` / `on_epoch_end`, so an epoch of K steps is timed
the same way; the first epoch (tracing) is dropped. Both sides build a fresh model per round.

Each round runs, per (width, XLA): one launcher run of 1 + `--intervals` intervals, then fit with
steps_per_execution 1 and K for 1 + `--intervals` epochs each; `--reps` rounds. The table gives
the median steps/s over all timed intervals / epochs, the spread (interquartile range / median)
and the ratio launcher / fit for both fit variants. Target (issue "absl launchers"): launcher >=
0.95x fit.
"""

import dataclasses
import os
import shutil
import tempfile

from bench import common  # first: sets the environment before TensorFlow is imported
from absl import logging  # pylint: disable=wrong-import-order
import keras  # pylint: disable=wrong-import-order
import tensorflow as tf  # pylint: disable=wrong-import-order

from experiments import training as train_lib

LAUNCHER = "launcher (train_lib.train)"
FIT_1 = "model.fit spe=1"
FIT_K = "model.fit spe=K"
TARGET = 0.95


@dataclasses.dataclass(frozen=True)
class Case:
    width: float
    xla: bool
    batch: int = 128
    config: str = "cifar10"
    input_size: int = 32

    @property
    def name(self):
        return f"{self.config} w{self.width:g} b{self.batch}" + (" XLA" if self.xla else "")


FULL_CASES = tuple(Case(w, x) for w in (0.25, 1.0) for x in (False, True))
QUICK_CASES = (Case(0.125, False, batch=16), Case(0.125, True, batch=16))


@dataclasses.dataclass(frozen=True)
class Row:
    case: str
    entry: str
    steps_per_call: int
    steps_per_s: float  # median
    spread: float  # interquartile range / median
    launcher_vs: float  # launcher steps/s / this entry's steps/s


def _train_config(case, steps_per_call, train_steps):
    return train_lib.TrainConfig(
        experiment="bench", model=f"vgg_{case.config}_max_pool", dataset="synthetic",
        model_options={"width": case.width},
        input_shape=(case.input_size, case.input_size, 3), num_classes=10,
        seed=0, batch_size=case.batch, train_steps=train_steps, learning_rate=0.05,
        warmup_steps=max(1, train_steps // 4), weight_decay=5e-4, measure_every=0,
        num_measure_images=2, checkpoint_every=train_steps, log_every=steps_per_call,
        jit_compile=case.xla)


def _batch(case):
    images = tf.random.stateless_normal([case.batch, case.input_size, case.input_size, 3], [1, 2])
    labels = tf.random.stateless_uniform([case.batch], [3, 4], 0, 10, tf.int32)
    return images, labels


def launcher_samples(case, steps_per_call, intervals, tmp):
    """Steps/s of `intervals` launcher intervals of `steps_per_call` steps (after one warm-up)."""
    images, labels = _batch(case)
    train_steps = steps_per_call * (intervals + 1)
    config = _train_config(case, steps_per_call, train_steps)
    data = train_lib.Data(
        train=lambda input_context, start_step: tf.data.Dataset.from_tensors(
            (images, labels)).repeat(),
        evaluate=None, measure_images=images[:2].numpy())
    output_dir = tempfile.mkdtemp(prefix="launcher_", dir=tmp)
    try:
        train_lib.train(config, data, output_dir, resume=False, overwrite=True)
        with open(os.path.join(output_dir, "metrics.csv")) as f:
            lines = f.read().splitlines()
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
    header = lines[0].split(",")
    rates = [float(line.split(",")[header.index("examples_per_sec")]) / case.batch
             for line in lines[1:]]
    if len(rates) != intervals + 1:
        raise RuntimeError(f"Expected {intervals + 1} logged intervals, got {len(rates)}.")
    return rates[1:]


class _EpochTimer(keras.callbacks.Callback):

    def __init__(self):
        super().__init__()
        self.seconds = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = common.clock()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(common.clock() - self._start)


def fit_samples(case, steps_per_call, steps_per_execution, intervals):
    """Steps/s of `intervals` fit epochs of `steps_per_call` steps (after one warm-up epoch)."""
    images, labels = _batch(case)
    config = _train_config(case, steps_per_call, steps_per_call * (intervals + 1))
    model = train_lib.build_model(config)
    optimizer, _ = train_lib.make_optimizer(config)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  steps_per_execution=steps_per_execution, jit_compile=case.xla)
    timer = _EpochTimer()
    model.fit(tf.data.Dataset.from_tensors((images, labels)).repeat(),
              steps_per_epoch=steps_per_call, epochs=intervals + 1, verbose=0,
              callbacks=[timer])
    return [steps_per_call / s for s in timer.seconds[1:]]


def run_benchmark(cases, steps_per_call=50, intervals=2, reps=2, log=None):
    """Times every case's launcher and fit variants, round-robin per case; returns rows."""
    log = log or (lambda message: None)
    tmp = tempfile.mkdtemp(prefix="bench_training_")
    entries = ((LAUNCHER, steps_per_call), (FIT_1, 1), (FIT_K, steps_per_call))
    rows = []
    try:
        for case in cases:

            def sampler(name, spe, case=case):
                def sample():
                    start = common.clock()
                    if name == LAUNCHER:
                        got = launcher_samples(case, steps_per_call, intervals, tmp)
                    else:
                        got = fit_samples(case, steps_per_call, spe, intervals)
                    log(f"  {case.name:22s} {name:28s} {', '.join(f'{g:.2f}' for g in got)} "
                        f"steps/s ({common.clock() - start:.0f} s)")
                    return got
                return sample

            samples = common.round_robin([sampler(name, spe) for name, spe in entries], reps,
                                         log, label=f"{case.name}: ")
            timings = common.Timings({name: values for (name, _), values
                                      in zip(entries, samples)})
            for name, spe in entries:
                rows.append(Row(case.name, name, spe, timings.median(name), timings.spread(name),
                                timings.ratio(LAUNCHER, name)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def format_table(rows):
    return "\n".join(common.markdown_table(
        ("case", "entry", "steps/call", "steps/s (median)", "IQR", "launcher / this",
         "target >= 0.95"), "llrrrrl",
        [(r.case, r.entry, str(r.steps_per_call), f"{r.steps_per_s:.3f}",
          f"{100 * r.spread:.0f}%", f"{r.launcher_vs:.3f}",
          "-" if r.entry == LAUNCHER else ("met" if r.launcher_vs >= TARGET else "NOT met"))
         for r in rows]))


def parse_args(argv):
    parser = common.ArgumentParser("bench.training", __doc__,
                                   "smoke run: width 0.125, batch 16, K=2, 1 round")
    parser.add_by_quick("steps_per_call", 2, 50, "K: the launcher's steps per run_steps call "
                        "(its --log_every) and fit's steps per epoch")
    parser.add_by_quick("intervals", 1, 2, "timed intervals / epochs per run")
    parser.add_reps(1, 2, "round-robin rounds")
    parser.add_argument("--widths", default=None,
                        help="comma-separated widths; default 0.25,1")
    parser.add_argument("--xla", default="off,on", help="comma-separated subset of off,on")
    args = parser.parse(argv, at_least={"steps_per_call": 1, "intervals": 1, "reps": 1})
    xla = [x.strip() for x in args.xla.split(",") if x.strip()]
    if not xla or set(xla) - {"off", "on"}:
        parser.error("--xla must be a subset of off,on")
    args.xla = tuple(x == "on" for x in xla)
    return args


def main(argv=None, cases=None, out=None):
    """Runs the benchmark and prints the report; returns it as a string.

    `cases` overrides the default (or --quick's) cases, e.g. tiny ones in tests.
    """
    args = parse_args(argv)
    if cases is None:
        if args.quick:
            cases = tuple(c for c in QUICK_CASES if c.xla in args.xla)
        else:
            widths = [float(w) for w in (args.widths or "0.25,1").split(",") if w.strip()]
            cases = tuple(Case(w, x) for w in widths for x in args.xla)
    logging.set_verbosity(logging.WARNING)
    run = common.Run(args.quick, args.verbose)
    rows = run_benchmark(cases, steps_per_call=args.steps_per_call, intervals=args.intervals,
                         reps=args.reps, log=run.log)
    return run.report("Launcher training step vs model.fit (bench.training)", [
        f"Model vgg('cifar10', 'max_pool'), one in-memory batch, K = {args.steps_per_call} steps "
        f"per launcher call / fit epoch; {args.reps} round(s) x {args.intervals} timed "
        "interval(s) per run (first interval / epoch of each run dropped); "
        + run.medians_note("steps/s")],
        [format_table(rows)], out)


if __name__ == "__main__":
    main()
