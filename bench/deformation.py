"""Throughput of the paper's random TPS deformation against one bilinear resize pass.

Run as `python -m bench.deformation` (`--quick` for a smoke run of a few seconds). For each
workload of the paper (CIFAR-10: 256 x 32x32x3 float32, 3x3 grid, C = 2 px; ImageNet:
32 x 224x224x3 float32, 5x5 grid, C = 10 px), in graph mode (`tf.function`) and with XLA
(`tf.function(jit_compile=True)`), it measures images per second of:

  fast path   `random_tps_deformation(images, grid_size, strength, seed)`: offsets drawn from the
              seed, a cached [H*W, K] operator maps them to the dense flow, one bilinear gather.
              Its core runs through XLA by default (`jit_compile=True`), so the graph-mode row
              measures the XLA-compiled core nested in the graph function.
  fast, no XLA `random_tps_deformation(..., jit_compile=False)`: the same core as TF graph ops
              (in the "xla" mode the enclosing function compiles it anyway).
  sparse      `sparse_image_warp(images, grid + offsets, grid)` with the same points
              (`grid_points`, `random_source_offsets`): fits the spline per batch (float64).
  dense only  `dense_image_warp(images, flow)` with a precomputed (smooth, TPS) flow: the cost of
              the bilinear gather alone.
  flow matmul the fast path's flow alone: fresh random offsets as [2B, K] rows times the
              cached operator (`tps_grid_operator`, [K, H*W]), giving the (dy, dx) planes. With
              "dense only" in the "xla" mode: where the fast path's time goes.
  resize proxy `tf.image.resize(images, [h + 1, w + 1], 'bilinear')`: one bilinear pass. Not
              [h, w]: TF's CPU ResizeBilinear kernel only copies the input when the size is
              unchanged, so a same-size resize measures a copy, not an interpolation. The
              same-size resize is kept as a check row ("resize same size"), to show it.

Each call gets a fresh seed passed as a tensor argument (nothing is constant-folded; the resize
and dense rows get the same arguments and ignore the seed). Every function is called twice
before timing (tracing, XLA compilation, warm caches). Then `--reps` rounds time one sample of
every (workload, mode, method) in turn, round-robin, so machine noise hits all methods alike; a
sample is as many back-to-back calls as fill `--min_sample_time`. The table gives the median
img/s over samples, the spread (interquartile range / median), and the ratio to the resize proxy
in the same mode and in graph mode (XLA's resize lowering is itself much slower than TF's kernel,
so the same-mode ratio flatters XLA).
"""

import dataclasses

import numpy as np

from bench import common  # first: sets the environment before TensorFlow is imported
import tensorflow as tf  # pylint: disable=wrong-import-order

import deform_tf

FAST = "fast path"
FAST_NO_JIT = "fast path, jit_compile=False"
SPARSE = "sparse_image_warp"
DENSE = "dense_image_warp only"
FLOW = "flow matmul only"
PROXY = "resize (h+1,w+1) proxy"
SAME = "resize same size (check)"
METHODS = (FAST, FAST_NO_JIT, SPARSE, DENSE, FLOW, PROXY, SAME)
MODES = ("graph", "xla")


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    batch: int
    height: int
    width: int
    channels: int
    grid_size: int
    strength: float

    def describe(self):
        return (f"{self.batch}x{self.height}x{self.width}x{self.channels} float32, "
                f"{self.grid_size}x{self.grid_size} grid, C={self.strength:g}")


PAPER_WORKLOADS = (
    Workload("CIFAR", 256, 32, 32, 3, 3, 2.0),
    Workload("ImageNet", 32, 224, 224, 3, 5, 10.0),
)
# --quick: the paper's image sizes and grids, small batches.
QUICK_WORKLOADS = (
    Workload("CIFAR", 16, 32, 32, 3, 3, 2.0),
    Workload("ImageNet", 2, 224, 224, 3, 5, 10.0),
)


@dataclasses.dataclass(frozen=True)
class Row:
    workload: str
    mode: str
    method: str
    ms_per_batch: float
    img_per_s: float
    spread: float  # interquartile range of img/s over samples, relative to the median
    vs_proxy: float  # img/s relative to the resize proxy in the same mode
    vs_graph_proxy: float  # img/s relative to the resize proxy in graph mode


def _method_fn(method, workload):
    """The Python function timed for `method`: (images, flow, seed) -> images."""
    w = workload
    k = w.grid_size * w.grid_size
    grid = tf.constant(deform_tf.grid_points(w.height, w.width, w.grid_size), tf.float32)
    operator = tf.constant(deform_tf.tps_grid_operator(w.height, w.width, w.grid_size).T,
                           tf.float32)

    def fast(images, flow, seed):
        del flow
        return deform_tf.random_tps_deformation(images, w.grid_size, w.strength, seed)

    def fast_no_jit(images, flow, seed):
        del flow
        return deform_tf.random_tps_deformation(images, w.grid_size, w.strength, seed,
                                                jit_compile=False)

    def sparse(images, flow, seed):
        del flow
        batch = tf.shape(images)[0]
        offsets = deform_tf.random_source_offsets(batch, k, w.strength, seed)
        dest = tf.broadcast_to(grid[None], [batch, k, 2])
        return deform_tf.sparse_image_warp(images, dest + offsets, dest)[0]

    def dense(images, flow, seed):
        del seed
        return deform_tf.dense_image_warp(images, flow)

    def flow_only(images, flow, seed):
        del flow
        offsets = deform_tf.random_source_offsets(tf.shape(images)[0], k, w.strength, seed)
        return tf.matmul(tf.reshape(tf.transpose(offsets, [2, 0, 1]), [-1, k]), operator)

    def proxy(images, flow, seed):
        del flow, seed
        return tf.image.resize(images, [w.height + 1, w.width + 1], "bilinear")

    def same(images, flow, seed):
        del flow, seed
        return tf.image.resize(images, [w.height, w.width], "bilinear")

    return {FAST: fast, FAST_NO_JIT: fast_no_jit, SPARSE: sparse, DENSE: dense, FLOW: flow_only,
            PROXY: proxy, SAME: same}[method]


def _inputs(workload):
    """Images and a smooth precomputed flow (the TPS flow of one draw) for the workload."""
    w = workload
    images = tf.random.stateless_uniform([w.batch, w.height, w.width, w.channels], [1, 2])
    offsets = deform_tf.random_source_offsets(w.batch, w.grid_size ** 2, w.strength, [3, 4])
    flow = deform_tf.tps_grid_flow(w.height, w.width, w.grid_size, offsets)
    return images, flow


class _Seeds:
    """A fresh stateless seed per call: [2] int32 tensors, made outside the timed region."""

    def __init__(self):
        self._count = 0

    def take(self, n):
        start = self._count
        self._count += n
        return [tf.constant([start + i, 12345], tf.int32) for i in range(n)]


def run_benchmark(workloads, modes=MODES, methods=METHODS, reps=20, min_sample_time=0.05,
                  log=None):
    """Times every (workload, mode, method), round-robin; returns (rows, checks).

    Args:
      workloads: sequence of `Workload`.
      modes: subset of ("graph", "xla").
      methods: subset of METHODS (must include PROXY for the ratios).
      reps: number of round-robin rounds (samples per entry).
      min_sample_time: seconds; a sample is ceil(min_sample_time / warm call time) calls.
      log: optional callable(str) for progress messages.

    Returns:
      rows: list of `Row` in (workload, mode, method) order.
      checks: dict workload name -> max |fast path - sparse_image_warp| in graph mode (if both
        were run), the two paths given the same seed.
    """
    if PROXY not in methods:
        raise ValueError(f"`methods` must include {PROXY!r} (the reference of the ratios).")
    log = log or (lambda message: None)
    seeds = _Seeds()
    entries = []  # (workload, mode, method, sampler)
    checks = {}
    for w in workloads:
        images, flow = _inputs(w)
        for mode in modes:
            outputs = {}
            for method in methods:
                fn = tf.function(_method_fn(method, w), jit_compile=(mode == "xla"),
                                 autograph=False)
                start = common.clock()
                result = fn(images, flow, tf.constant([0, 0], tf.int32)).numpy()
                first = common.clock() - start
                if method in (FAST, SPARSE):
                    outputs[method] = result
                warm = common.seconds(fn, images, flow, seeds.take(1)[0])
                calls = common.calls_per_sample(min_sample_time, warm)
                log(f"  warm-up {w.name:9s} {mode:5s} {method:28s} first call {first:7.2f} s, "
                    f"then {warm * 1e3:8.2f} ms; {calls} call(s) per sample")
                entries.append((w, mode, method, _sampler(fn, (images, flow), calls, w.batch,
                                                          seeds)))
            if mode == "graph" and FAST in outputs and SPARSE in outputs:
                checks[w.name] = float(np.max(np.abs(outputs[FAST] - outputs[SPARSE])))

    samples = common.round_robin([e[3] for e in entries], reps, log)
    timings = common.Timings({(w.name, mode, method): values
                              for (w, mode, method, _), values in zip(entries, samples)})
    rows = []
    for w, mode, method, _ in entries:
        key = (w.name, mode, method)
        median = timings.median(key)
        rows.append(Row(
            workload=w.name, mode=mode, method=method,
            ms_per_batch=1e3 * w.batch / median, img_per_s=median,
            spread=timings.spread(key), vs_proxy=timings.ratio(key, (w.name, mode, PROXY)),
            vs_graph_proxy=timings.ratio(key, (w.name, "graph", PROXY))))
    return rows, checks


def _sampler(fn, args, calls, batch, seeds):
    """() -> img/s of `calls` back-to-back calls fn(*args, seed), a fresh seed each (made
    before the clock starts)."""

    def sample():
        call_seeds = seeds.take(calls)
        start = common.clock()
        for seed in call_seeds:
            out = fn(*args, seed)
        elapsed = common.clock() - start
        del out
        return batch * calls / elapsed
    return sample


def format_table(rows):
    """A markdown table of the rows."""
    return "\n".join(common.markdown_table(
        ("workload", "mode", "method", "ms/batch", "img/s (median)", "IQR",
         "x proxy (same mode)", "x proxy (graph)"), "lllrrrrr",
        [(r.workload, r.mode, r.method, f"{r.ms_per_batch:.2f}", f"{r.img_per_s:,.0f}",
          f"{100 * r.spread:.0f}%", f"{r.vs_proxy:.3f}", _ratio(r.vs_graph_proxy))
         for r in rows]))


def _ratio(value):
    return f"{value:.3f}" if np.isfinite(value) else "-"


def _notes(rows, checks, workloads):
    lines = []
    by_key = {(r.workload, r.mode, r.method): r for r in rows}
    for w in workloads:
        parts = []
        for mode in MODES:
            same = by_key.get((w.name, mode, SAME))
            if same is not None:
                parts.append(f"{same.vs_proxy:.2f}x the proxy in {mode} mode")
        if parts:
            lines.append(f"- {w.name}: a same-size resize runs at " + ", ".join(parts) + ".")
        if w.name in checks:
            lines.append(f"- {w.name}: fast path vs sparse_image_warp, same seed: max |diff| = "
                         f"{checks[w.name]:.2e} (graph mode).")
    lines.append(
        "- The resize proxy is tf.image.resize(images, [h+1, w+1], 'bilinear'): TF's CPU "
        "ResizeBilinear kernel skips interpolation and copies the input when the size is "
        "unchanged (see the same-size rows), so a same-size resize is not a bilinear pass. "
        "img/s counts input images; the proxy writes (h+1)(w+1) pixels per image.")
    return "\n".join(lines)


def parse_args(argv):
    parser = common.ArgumentParser("bench.deformation", __doc__,
                                   "smoke run: small batches (CIFAR 16, ImageNet 2), 2 rounds")
    parser.add_reps(2, 20)
    parser.add_min_sample_time(0.005, 0.05)
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated subset of graph,xla")
    parser.add_workloads(PAPER_WORKLOADS)
    parser.add_argument("--threads", type=int, default=0,
                        help="TF intra- and inter-op threads (0 = TF's default, all cores); 1 "
                        "times every entry on one core, as when other jobs hold the others")
    args = parser.parse(argv, at_least={"reps": 1, "threads": 0})
    args.modes = tuple(m for m in args.modes.split(",") if m)
    unknown = set(args.modes) - set(MODES)
    if unknown or not args.modes:
        parser.error(f"--modes must be a subset of {','.join(MODES)}, got {args.modes}")
    return args


def main(argv=None, workloads=None, out=None):
    """Runs the benchmark and prints the report; returns it as a string.

    `workloads` overrides the paper's (or --quick's) workloads, e.g. tiny ones in tests.
    """
    args = parse_args(argv)
    run = common.Run(args.quick, args.verbose)
    if args.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        except RuntimeError as error:  # TF already running (e.g. in a test process)
            raise SystemExit(f"--threads: TensorFlow is already initialized ({error}); pass "
                             "--threads in a fresh process.") from None
    if workloads is None:
        workloads = common.select_workloads(args.workloads, QUICK_WORKLOADS if args.quick
                                            else PAPER_WORKLOADS)
    rows, checks = run_benchmark(workloads, modes=args.modes, reps=args.reps,
                                 min_sample_time=args.min_sample_time, log=run.log)
    return run.report("Deformation throughput (bench.deformation)", [
        common.workloads_line(workloads),
        f"{args.reps} round-robin rounds, samples of >= {args.min_sample_time:g} s; "
        + run.medians_note("img/s")],
        [format_table(rows), "", _notes(rows, checks, workloads)], out)


if __name__ == "__main__":
    main()
