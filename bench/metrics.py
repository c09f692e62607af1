"""Cost of a full deformation-sensitivity evaluation against forwarding its 2N images.

Run as `python -m bench.metrics` (`--quick` for a smoke run of a few seconds). For each workload
(CIFAR-10: `vgg("cifar10", "max_pool")` full width, all 13 measured layers, N = 128 images
32x32x3, 3x3 grid, C = 2 px; ImageNet: `vgg("imagenet", "max_pool")` full width, 19 layers,
N = 32 images 224x224x3, 5x5 grid, C = 10 px) it times, side by side:

  forward 2N     a `tf.function` (graph mode, like the runner) forwarding the N clean and N
                 deformed images through the classifier, `model(x, training=False)`: the floor
                 any evaluation has to pay.
  evaluation     `deform_tf.sensitivity.deformation_sensitivity(model, images, deform_fn,
                 "cosine", runner=runner)` with one prebuilt `RepresentationRunner` reused across
                 calls (as during training) and `deform_fn = lambda x:
                 random_tps_deformation(x, grid, C, seed)`: deformation, representations of every
                 layer, paired distances and the exact median of the N (N - 1) / 2 pairwise
                 distances, back to Python floats.
  candidate      (only with `--candidate=PATH`) the same call through another implementation of
                 `deform_tf/sensitivity.py` loaded from PATH (its own `RepresentationRunner`), to
                 measure a proposed patch before/after in the same run.

With `--breakdown`, the library evaluation is also split into its stages, each timed alone with
the same inputs, calling the library's steps the way `measure_deformation` runs them: the
deformation; the runner's one compiled call that forwards the 2N images and computes every
per-layer measure inside the graph (`measure_groups`: paired distances in graph mode and the Gram
matrix of each layer's centred unit rows under XLA); the exact pairwise medians (numpy). One more
row times the forward 2N compiled with XLA (`jit_compile=True`), to compare with the graph-mode
forward on this CPU (the target stays defined against the graph mode), and one the Gram matrices
of every layer's centred unit rows alone, under XLA as in the call (the largest measure).

Each call gets a fresh deformation seed (a tensor, so nothing retraces). Every function is called
twice before timing (tracing, warm caches); then `--reps` rounds time one call of every entry in
turn, round-robin, so machine noise hits all alike. The table gives the median seconds per call,
the spread (interquartile range / median) and the ratio to the forward pass of the same workload.
Target (issue "The measurement stack"): evaluation <= 1.3x the forward pass.
"""

import dataclasses

import numpy as np

from bench import common  # first: sets the environment before TensorFlow is imported
import tensorflow as tf  # pylint: disable=wrong-import-order

import deform_tf
from deform_tf import models
from deform_tf import pairwise
from deform_tf import sensitivity

FORWARD = "forward 2N (classifier)"
EVALUATION = "sensitivity evaluation"
CANDIDATE = "candidate evaluation"
STAGE_DEFORM = "  stage: deformation"
STAGE_MEASURES = "  stage: forward + per-layer measures"
STAGE_MEDIANS = "  stage: pairwise medians (numpy)"
STAGES = (STAGE_DEFORM, STAGE_MEASURES, STAGE_MEDIANS)
FORWARD_XLA = "  aside: forward 2N, XLA-compiled"
GRAM_ALONE = "  aside: the Gram matrices alone (XLA)"
BREAKDOWN = STAGES + (FORWARD_XLA, GRAM_ALONE)
TARGET = 1.3


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    config: str  # deform_tf.models.STAGES key
    width: float
    num_images: int
    size: int  # height = width of the images
    grid_size: int
    strength: float

    def describe(self):
        return (f"vgg({self.config!r}, 'max_pool', width={self.width:g}), N={self.num_images} "
                f"images {self.size}x{self.size}x3, {self.grid_size}x{self.grid_size} grid, "
                f"C={self.strength:g}")


PAPER_WORKLOADS = (
    Workload("CIFAR", "cifar10", 1.0, 128, 32, 3, 2.0),
    Workload("ImageNet", "imagenet", 1.0, 32, 224, 5, 10.0),
)
# --quick: the real layer layouts at reduced width, image count and (ImageNet) size.
QUICK_WORKLOADS = (
    Workload("CIFAR", "cifar10", 0.25, 16, 32, 3, 2.0),
    Workload("ImageNet", "imagenet", 0.125, 4, 64, 5, 3.0),
)
# Default rounds per workload: the full-width ImageNet evaluation takes about a minute on 2 cores.
DEFAULT_REPS = {"CIFAR": 15, "ImageNet": 3}


@dataclasses.dataclass(frozen=True)
class Row:
    workload: str
    entry: str
    seconds: float  # median seconds per call
    spread: float  # interquartile range of the seconds over samples, relative to the median
    vs_forward: float  # median seconds relative to the forward pass of the same workload
    num_layers: int


class _Seeds:
    """A fresh stateless seed per call: [2] int32 tensors, made outside the timed region."""

    def __init__(self):
        self._count = 0

    def take(self):
        self._count += 1
        return tf.constant([self._count, 4242], tf.int32)


def _entries(w, candidate, breakdown, seeds):
    """[(name, fn() -> None)] for workload `w`; each fn makes one timed call, synchronized."""
    model = models.vgg(w.config, "max_pool", width=w.width,
                       input_shape=(w.size, w.size, 3), seed=0)
    images = tf.random.stateless_uniform([w.num_images, w.size, w.size, 3], [1, 2])
    deformed = deform_tf.random_tps_deformation(images, w.grid_size, w.strength, [3, 4])
    both = tf.concat([images, deformed], axis=0)
    spec = tf.TensorSpec((None, w.size, w.size, 3), tf.float32)
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    runner = sensitivity.RepresentationRunner(model)
    num_layers = len(runner.names)

    def deform_fn_of(seed):
        return lambda x: deform_tf.random_tps_deformation(x, w.grid_size, w.strength, seed)

    def run_forward():
        forward(both).numpy()

    def run_evaluation(module=sensitivity, module_runner=runner):
        result = module.deformation_sensitivity(model, images, deform_fn_of(seeds.take()),
                                                "cosine", runner=module_runner)
        assert len(result["sensitivity"]) == num_layers

    entries = [(FORWARD, run_forward), (EVALUATION, run_evaluation)]
    if candidate is not None:
        candidate_runner = candidate.RepresentationRunner(model)
        entries.append((CANDIDATE, lambda: run_evaluation(candidate, candidate_runner)))
    if breakdown:
        groups = [images, deformed]
        chunk = next(runner.measure_groups(groups, None, False))
        grams = [layer.gram.numpy() for layer in chunk]
        forward_xla = tf.function(lambda x: model(x, training=False), input_signature=[spec],
                                  jit_compile=True)

        def run_deform():
            sensitivity.apply_deformation(deform_fn_of(seeds.take()), images).numpy()

        def run_measures():
            measured = next(runner.measure_groups(groups, None, False))
            measured[-1].gram.numpy()

        def run_medians():
            pairwise.medians_of_pairs(
                pairwise.distances_from_gram(np.stack(grams), "cosine")).tolist()

        clean = [tf.identity(rep) for rep in runner.rep_model(images, training=False)]
        grams_xla = tf.function(lambda reps: [pairwise.gram_matrix(
            pairwise.centred_unit_rows(rep, pairwise.row_norms(rep))[0]) for rep in reps],
            jit_compile=True)

        entries += [(STAGE_DEFORM, run_deform), (STAGE_MEASURES, run_measures),
                    (STAGE_MEDIANS, run_medians),
                    (FORWARD_XLA, lambda: forward_xla(both).numpy()),
                    (GRAM_ALONE, lambda: [g.numpy() for g in grams_xla(clean)])]
    return entries, num_layers


def run_benchmark(workloads, reps=None, candidate=None, breakdown=False, log=None):
    """Times every (workload, entry), round-robin within each workload; returns rows.

    Args:
      workloads: sequence of `Workload`.
      reps: rounds per workload (int), or None for DEFAULT_REPS (3 for unknown names).
      candidate: optional module with `deformation_sensitivity` and `RepresentationRunner`
        (see `bench.common.load_candidate`), timed as an extra row.
      breakdown: also time the stages of the library evaluation and the XLA-compiled forward.
      log: optional callable(str) for progress messages.

    Returns:
      list of `Row` in (workload, entry) order.
    """
    log = log or (lambda message: None)
    seeds = _Seeds()
    rows = []
    for w in workloads:
        entries, num_layers = _entries(w, candidate, breakdown, seeds)
        for name, fn in entries:
            first, second = common.seconds(fn), common.seconds(fn)
            log(f"  warm-up {w.name:9s} {name.strip():32s} calls {first:7.2f} s, "
                f"{second:7.2f} s")
        rounds = reps if reps is not None else DEFAULT_REPS.get(w.name, 3)
        samples = common.round_robin([lambda fn=fn: common.seconds(fn) for _, fn in entries],
                                     rounds, log, label=f"{w.name}: ")
        timings = common.Timings({name: values for (name, _), values in zip(entries, samples)})
        for name, _ in entries:
            rows.append(Row(workload=w.name, entry=name, seconds=timings.median(name),
                            spread=timings.spread(name),
                            vs_forward=timings.ratio(name, FORWARD), num_layers=num_layers))
        del entries
    return rows


def format_table(rows):
    """A markdown table of the rows."""
    return "\n".join(common.markdown_table(
        ("workload", "entry", "s/call (median)", "IQR", "x forward 2N"), "llrrr",
        [(r.workload, r.entry, f"{r.seconds:.4f}", f"{100 * r.spread:.0f}%",
          f"{r.vs_forward:.2f}") for r in rows]))


def _verdicts(rows):
    lines = []
    for r in rows:
        if r.entry in (EVALUATION, CANDIDATE):
            met = "met" if r.vs_forward <= TARGET else "NOT met"
            lines.append(f"- {r.workload} ({r.num_layers} layers): {r.entry} = "
                         f"{r.vs_forward:.2f}x the forward pass of the 2N images; target <= "
                         f"{TARGET}x: {met}.")
    return "\n".join(lines)


def parse_args(argv):
    parser = common.ArgumentParser("bench.metrics", __doc__,
                                   "smoke run: reduced widths, N and ImageNet size, 1 round")
    parser.add_argument("--reps", type=int, default=None,
                        help="round-robin rounds per workload; default CIFAR 15, ImageNet 3; "
                        "1 with --quick")
    parser.add_workloads(PAPER_WORKLOADS)
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the stages of the library evaluation and the forward "
                        "2N compiled with XLA")
    parser.add_argument("--candidate", default=None,
                        help="path of an alternative deform_tf/sensitivity.py to time as well")
    args = parser.parse(argv)
    if args.reps is None and args.quick:
        args.reps = 1
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be >= 1")
    return args


def main(argv=None, workloads=None, out=None):
    """Runs the benchmark and prints the report; returns it as a string.

    `workloads` overrides the paper's (or --quick's) workloads, e.g. tiny ones in tests.
    """
    args = parse_args(argv)
    if workloads is None:
        workloads = common.select_workloads(args.workloads, QUICK_WORKLOADS if args.quick
                                            else PAPER_WORKLOADS)
    candidate = common.load_candidate(args.candidate) if args.candidate else None
    run = common.Run(args.quick, args.verbose)
    rows = run_benchmark(workloads, reps=args.reps, candidate=candidate,
                         breakdown=args.breakdown, log=run.log)
    rounds = (f"{args.reps}" if args.reps is not None else
              ", ".join(f"{w.name} {DEFAULT_REPS.get(w.name, 3)}" for w in workloads))
    return run.report("Sensitivity evaluation vs forward pass (bench.metrics)", [
        common.workloads_line(workloads),
        f"Round-robin rounds: {rounds}; one call per sample; " + run.medians_note("s/call")
        + (f" Candidate: {args.candidate}." if args.candidate else "")],
        [format_table(rows), "", _verdicts(rows)], out)


if __name__ == "__main__":
    main()
