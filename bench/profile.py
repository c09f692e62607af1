"""Peak memory and time of a full deformation-stability profile of keras.applications networks.

Run as `python -m bench.profile` (`--quick` for a smoke run of seconds). For each workload
(ResNet50 and MobileNetV2 at 224 x 224, weights=None, N = 128 images, TPS 5x5 grid, C = 10 px,
the default points: 59 and 42) it measures:

  memory   `deform_tf.profile.profile(model, images, deform_fn)` with the default chunking, in a
           fresh subprocess per workload, which reports its peak resident memory
           (VmHWM of /proc/self/status), the same after building the model and
           the images (baseline), and the chunk size. A second subprocess forwards the 3N images
           through the classifier in the same chunks (the memory any evaluation needs).
           Target: ResNet50 at most 8 GiB.
  time     in one process, round-robin: `forward 3N`, a `tf.function` forwarding the clean,
           deformed and noisy images through the classifier (`model(x, training=False)`, graph
           mode) in the profile's chunks of 3 x chunk images; and `profile`, the full profile
           (both distances, the exact medians of all N(N-1)/2 pairs, R_f) with one prebuilt
           `RepresentationRunner` and a fresh deformation seed per call. Each entry is called
           once before timing (tracing, XLA compilation); each timed call starts 0.5 s after
           the previous one ends (numpy's BLAS threads spin for ~0.1 s after a product).
           Target: profile <= 1.5x forward 3N.
  stages   with `--breakdown`, also timed in the same rounds: the profile's stages alone, as
           `measure_deformation` runs them (deformation and noise; the chunked forward with
           every per-layer measure and the row scatter; the Gram matrices by numpy's BLAS; the
           exact medians), and the same Gram matrices by TF's matmul by halves, to compare.
  candidate with `--candidate=PATH`, the same measurement through another
           `deform_tf/sensitivity.py` loaded from PATH, in the same rounds (before/after).
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np

from bench import common  # first: sets the environment before TensorFlow is imported
import keras  # pylint: disable=wrong-import-order
import tensorflow as tf  # pylint: disable=wrong-import-order

import deform_tf
from deform_tf import pairwise
from deform_tf import profile
from deform_tf import sensitivity

FORWARD = "forward 3N (classifier)"
PROFILE = "profile"
CANDIDATE = "  candidate: measure_deformation of --candidate"
STAGE_NOISE = "  stage: deformation and noise"
STAGE_MEASURES = "  stage: forward + per-layer measures (all chunks)"
STAGE_GRAM = "  stage: Gram matrices (numpy BLAS syrk)"
STAGE_MEDIANS = "  stage: pairwise medians (numpy)"
ASIDE_TF_GRAM = "  aside: Gram matrices by TF matmul, by halves"
BLAS_SETTLE_SECONDS = 0.5
TIME_TARGET = 1.5
MEMORY_TARGET_GIB = {"ResNet50": 8.0}


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    constructor: str  # keras.applications attribute
    size: int
    num_images: int
    grid_size: int = 5
    strength: float = 10.0
    alpha: float = 1.0  # MobileNet width multiplier (for the quick workloads)

    def build(self):
        kwargs = dict(weights=None, input_shape=(self.size, self.size, 3),
                      classifier_activation=None)
        if self.alpha != 1.0:
            kwargs["alpha"] = self.alpha
        keras.utils.set_random_seed(0)
        return getattr(keras.applications, self.constructor)(**kwargs)

    def describe(self):
        alpha = f" alpha={self.alpha:g}" if self.alpha != 1.0 else ""
        return (f"{self.constructor}{alpha} (weights=None), N={self.num_images} images "
                f"{self.size}x{self.size}x3, {self.grid_size}x{self.grid_size} grid, "
                f"C={self.strength:g}")


PAPER_WORKLOADS = (
    Workload("ResNet50", "ResNet50", 224, 128),
    Workload("MobileNetV2", "MobileNetV2", 224, 128),
)
QUICK_WORKLOADS = (Workload("MobileNetV2", "MobileNetV2", 32, 6, 3, 2.0, alpha=0.35),)
DEFAULT_REPS = 3


def _images(w):
    return tf.random.stateless_uniform([w.num_images, w.size, w.size, 3], [1, 2], maxval=255.0)


def _deform_fn(w, seed):
    return lambda x: deform_tf.random_tps_deformation(x, w.grid_size, w.strength, seed)


def _forward_3n(model, images, chunk):
    """A function forwarding 3 copies of the images' chunks (as the profile's groups)."""
    spec = tf.TensorSpec((None,) + tuple(images.shape[1:]), tf.float32)
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    moved = images + 1.0
    noisy = images + 2.0

    def run():
        for start in range(0, int(images.shape[0]), chunk):
            end = start + chunk
            forward(tf.concat([images[start:end], moved[start:end], noisy[start:end]], 0)).numpy()
    return run


def _peak_mib():
    """Peak resident memory of this process since it started, in MiB.

    VmHWM of /proc/self/status: the high-water mark of this program's own address space. Not
    `ru_maxrss`, which Linux carries over `exec` from the parent (the subprocesses of a
    benchmark that had already grown reported the parent's peak).
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("/proc/self/status has no VmHWM line: bench.profile measures memory on "
                       "Linux only (use --no_memory).")


def child_memory(w, what):
    """In a fresh process: peak memory of one profile (or forward 3N) of workload `w`."""
    model = w.build()
    images = _images(w)
    runner = sensitivity.RepresentationRunner(model)
    chunk = profile.chunk_size(runner, w.num_images)
    baseline = _peak_mib()
    start = common.clock()
    if what == PROFILE:
        rows = profile.profile(model, images, _deform_fn(w, [3, 4]), runner=runner)
        assert len(rows) == len(runner.points)
    else:
        _forward_3n(model, images, chunk)()
    return {"workload": w.name, "entry": what, "peak_mib": _peak_mib(), "baseline_mib": baseline,
            "chunk": chunk, "points": len(runner.points), "seconds": common.clock() - start,
            "stored_mib": w.num_images * runner.feature_count * 4 / 2**20}


def measure_memory(workload, quick, what, log):
    """Runs `child_memory` in a subprocess; returns its dict."""
    command = [sys.executable, "-m", "bench.profile", "--child", what,
               "--workloads", workload.name] + (["--quick"] if quick else [])
    log(f"  memory: {workload.name} {what} (subprocess)")
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _stage_entries(w, model, images, runner, chunk, seeds):
    """[(name, fn)] timing the profile's stages alone, the way `measure_deformation` runs them,
    and the Gram matrices by TF's matmul for comparison (with several chunks; with one, the
    chunk's call forms the Gram matrices, within the measures' stage)."""
    deformed = sensitivity.apply_deformation(_deform_fn(w, [3, 4]), images)
    groups = [images, deformed,
              images + sensitivity.matched_gaussian_noise(images, deformed, (0, 0))]
    whole = chunk >= w.num_images  # then the chunk's call forms the Gram matrices itself
    filled = None if whole else runner.row_buffers(w.num_images)
    measured = list(runner.measure_groups(groups, chunk, True, buffers=filled))
    grams = np.stack([layer.gram.numpy() for layer in measured[0]] if whole else
                     [runner.gram_of_rows(b) for b in filled])
    norms = np.ones(grams.shape[:2])
    # One compiled function for every layer: `reduce_retracing` takes the row count as the
    # only fixed dimension.
    tf_gram = tf.function(pairwise.gram_matrix_by_halves, reduce_retracing=True)

    def run_noise():
        moved = sensitivity.apply_deformation(_deform_fn(w, tf.constant([next(seeds), 7])),
                                              images)
        (images + sensitivity.matched_gaussian_noise(images, moved, (0, 0))).numpy()

    def run_measures():
        buffers = None if whole else runner.row_buffers(w.num_images)
        for _ in runner.measure_groups(groups, chunk, True, buffers=buffers):
            pass

    def run_medians():
        for distance in sensitivity.DISTANCES:
            pairwise.medians_of_pairs(pairwise.distances_from_gram(grams, distance, norms))

    entries = [(STAGE_NOISE, run_noise), (STAGE_MEASURES, run_measures),
               (STAGE_MEDIANS, run_medians)]
    if not whole:
        entries += [
            (STAGE_GRAM, lambda: [runner.gram_of_rows(b) for b in filled]),
            (ASIDE_TF_GRAM, lambda: [tf_gram(tf.reshape(b.value(), [w.num_images, -1])).numpy()
                                     for b in filled])]
    return entries


def measure_time(w, reps, log, breakdown=False, candidate=None):
    """Median seconds of FORWARD and PROFILE (and, with `breakdown`, of the profile's stages;
    with a `candidate` module, of its `measure_deformation`), round-robin; returns
    ({entry: [seconds]}, chunk)."""
    model = w.build()
    images = _images(w)
    runner = sensitivity.RepresentationRunner(model)
    chunk = profile.chunk_size(runner, w.num_images)
    seeds = iter(range(1, 10**6))

    def run_profile():
        profile.profile(model, images, _deform_fn(w, tf.constant([next(seeds), 7])),
                        runner=runner)

    entries = [(FORWARD, _forward_3n(model, images, chunk)), (PROFILE, run_profile)]
    if candidate is not None:
        candidate_runner = candidate.RepresentationRunner(model)

        def run_candidate():
            # What `profile.profile` calls, through the candidate's implementation.
            candidate.measure_deformation(
                None, images, _deform_fn(w, tf.constant([next(seeds), 7])), batch_size=chunk,
                runner=candidate_runner)

        entries.append((CANDIDATE, run_candidate))
    if breakdown:
        entries += _stage_entries(w, model, images, runner, chunk, seeds)
    for name, fn in entries:
        log(f"  warm-up {w.name} {name}: {common.seconds(fn):.1f} s")

    def settled(fn):
        # numpy's BLAS threads keep spinning for ~0.1 s after a product (measured); let them
        # stop before the next entry so that no entry pays for the previous one.
        time.sleep(BLAS_SETTLE_SECONDS)
        return common.seconds(fn)

    samples = common.round_robin([lambda fn=fn: settled(fn) for _, fn in entries], reps, log,
                                 label=f"{w.name}: ")
    return {name: values for (name, _), values in zip(entries, samples)}, chunk


def run_benchmark(workloads, reps, quick, memory=True, log=None, breakdown=False,
                  candidate=None):
    """Rows (dicts) of the memory and time measurements of every workload."""
    log = log or (lambda message: None)
    rows = []
    for w in workloads:
        row = {"workload": w.name}
        if memory:
            for what in (PROFILE, FORWARD):
                m = measure_memory(w, quick, what, log)
                key = "profile" if what == PROFILE else "forward"
                row[f"{key}_peak_mib"] = m["peak_mib"]
                row["baseline_mib"], row["stored_mib"] = m["baseline_mib"], m["stored_mib"]
                row["points"] = m["points"]
        samples, chunk = measure_time(w, reps, log, breakdown, candidate)
        timings = common.Timings(samples)
        row["chunk"], row["entries"] = chunk, list(samples)
        for name in samples:
            row[name] = timings.median(name)
            row[f"{name} IQR"] = timings.spread(name)
        row["ratio"] = timings.ratio(PROFILE, FORWARD)
        rows.append(row)
    return rows


def format_report(rows, memory):
    lines = []
    if memory:
        lines += common.markdown_table(
            ("workload", "points", "chunk", "peak RSS, profile", "peak RSS, forward 3N",
             "baseline (model, images)", "unit rows N x F x 4 B"), "lrrrrrr",
            [(r["workload"], str(r["points"]), str(r["chunk"])) + tuple(
                f"{r[key] / 1024:.2f} GiB" for key in
                ("profile_peak_mib", "forward_peak_mib", "baseline_mib", "stored_mib"))
             for r in rows])
        lines.append("")

    def seconds(r, name):
        return f"{r[name]:.3f} ({100 * r[name + ' IQR']:.0f}%)"

    lines += common.markdown_table(
        ("workload", "forward 3N s (IQR)", "profile s (IQR)", "profile / forward 3N"), "lrrr",
        [(r["workload"], seconds(r, FORWARD), seconds(r, PROFILE), f"{r['ratio']:.2f}")
         for r in rows])
    lines.append("")
    stages = [(r, name) for r in rows for name in r["entries"] if name not in (FORWARD, PROFILE)]
    if stages:
        lines += ["Further entries of the same rounds (stages: timed alone):", ""]
        lines += common.markdown_table(
            ("workload", "entry", "s (IQR)", "x forward 3N"), "llrr",
            [(r["workload"], name.strip(), seconds(r, name), f"{r[name] / r[FORWARD]:.2g}")
             for r, name in stages])
        lines.append("")
    for r in rows:
        met = "met" if r["ratio"] <= TIME_TARGET else "NOT met"
        lines.append(f"- {r['workload']}: profile = {r['ratio']:.2f}x forward 3N; target <= "
                     f"{TIME_TARGET}x: {met}.")
        if memory and r["workload"] in MEMORY_TARGET_GIB:
            peak, target = r["profile_peak_mib"] / 1024, MEMORY_TARGET_GIB[r["workload"]]
            lines.append(f"- {r['workload']}: peak RSS {peak:.2f} GiB; target <= {target:g} "
                         f"GiB: {'met' if peak <= target else 'NOT met'}.")
    return "\n".join(lines)


def parse_args(argv):
    parser = common.ArgumentParser("bench.profile", __doc__, "smoke run: a tiny MobileNetV2")
    parser.add_reps(1, DEFAULT_REPS, "round-robin rounds per workload")
    parser.add_workloads(PAPER_WORKLOADS)
    parser.add_argument("--no_memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--candidate", default=None, metavar="PATH",
                        help="also time another deform_tf/sensitivity.py (e.g. from another "
                        "commit) in the same rounds")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the profile's stages alone, and the Gram matrices by "
                        "TF's matmul")
    parser.add_argument("--child", choices=(PROFILE, FORWARD), default=None,
                        help=argparse.SUPPRESS)  # internal: one memory measurement
    return parser.parse(argv, at_least={"reps": 1})


def main(argv=None, out=None):
    """Runs the benchmark and prints the report; returns it as a string."""
    args = parse_args(argv)
    workloads = common.select_workloads(args.workloads,
                                        QUICK_WORKLOADS if args.quick else PAPER_WORKLOADS)
    if args.child:
        print(json.dumps(child_memory(workloads[0], args.child)),
              file=sys.stdout if out is None else out, flush=True)
        return None
    run = common.Run(args.quick, args.verbose)
    candidate = common.load_candidate(args.candidate) if args.candidate else None
    rows = run_benchmark(workloads, args.reps, args.quick, memory=not args.no_memory,
                         log=run.log, breakdown=args.breakdown, candidate=candidate)
    return run.report("Deformation-stability profile: memory and time (bench.profile)", [
        common.workloads_line(workloads),
        f"Round-robin rounds: {args.reps}; median s/call; IQR = interquartile range / median; "
        f"memory: one subprocess per measurement; total {run.elapsed():.0f} s."
        + (f" Candidate: {args.candidate}." if args.candidate else "")],
        [format_report(rows, not args.no_memory)], out)


if __name__ == "__main__":
    main()
