"""The scaffolding every benchmark runs in, so that a script states only its workloads and what
it times.

- Command line: `ArgumentParser` (--quick, --verbose; --reps, --min_sample_time, --workloads;
  defaults that depend on --quick; lower bounds).
- A run (`Run`): the 1-minute load average and the clock at its start, progress messages
  (--verbose), and the printed report: title, machine line (`machine_line`), details, tables
  (`markdown_table`).
- Timing: `round_robin` takes one sample of every entry per round, starting one entry later
  each round, so that machine noise hits all entries alike; `seconds` times one call,
  `calls_per_sample` sizes a sample; `Timings` gives each entry's median, spread (interquartile
  range / median) and ratio to a stated baseline entry.
- `select_workloads`, `load_candidate` (another `deform_tf/sensitivity.py` to time beside the
  library's).

Importing this module sets the benchmarks' environment (`bench.tf_env`) before TensorFlow.
"""

import argparse
import dataclasses
import importlib.util
import math
import os
import platform
import sys
import time

import numpy as np

from bench import tf_env

tf_env.configure()  # before TF is imported
import keras  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

clock = time.perf_counter  # the clock of every timed region


def machine_info():
    """One line: TF, Keras and Python versions, CPU model, usable cores, TF threads, GPUs and
    the CPU allocator."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = tf.config.threading
    return (f"TF {tf.__version__} (Keras {keras.__version__}), "
            f"Python {platform.python_version()}, {platform.system()} {platform.machine()}; "
            f"CPU: {cpu}; os.cpu_count()={os.cpu_count()}, "
            f"usable cores={affinity}; TF intra/inter-op threads="
            f"{threads.get_intra_op_parallelism_threads()}/"
            f"{threads.get_inter_op_parallelism_threads()} (0 = TF default); "
            f"GPUs visible={len(tf.config.list_physical_devices('GPU'))}; {tf_env.describe()}")


def machine_line(load):
    """`machine_info` and the 1-minute load average `load` at the benchmark's start."""
    return machine_info() + f"; 1-min load average at start {load:.2f}"


def workloads_line(workloads):
    """"Workloads: " and each workload's name and `describe()`."""
    return "Workloads: " + "; ".join(f"{w.name} {w.describe()}" for w in workloads)


def markdown_table(header, align, rows):
    """A markdown table, one string per line.

    Args:
      header: the column titles.
      align: one letter per column, "l" (left) or "r" (right, numbers).
      rows: sequences of cells (strings), one per row.
    """
    lines = ["| " + " | ".join(header) + " |",
             "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


# --- Command line --------------------------------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser for `python -m <module>`, with --quick, --verbose and flags whose
    default depends on --quick."""

    def __init__(self, module, doc, quick_help, verbose=True):
        """`doc`: the module docstring (its first paragraph describes the command)."""
        super().__init__(prog=f"python -m {module}", description=doc.split("\n\n")[0])
        self._by_quick = {}
        self.add_argument("--quick", action="store_true", help=quick_help)
        if verbose:
            self.add_argument("--verbose", action="store_true", help="print warm-up and progress")

    def add_by_quick(self, flag, quick, full, what, type=int):  # pylint: disable=redefined-builtin
        """--flag: `full` by default, `quick` with --quick (`what` says what it sets)."""
        self._by_quick[flag] = (quick, full)
        self.add_argument("--" + flag, type=type, default=None,
                          help=f"{what}; default {full:g}, {quick:g} with --quick")

    def add_reps(self, quick, full, what="round-robin rounds (samples per entry)"):
        self.add_by_quick("reps", quick, full, what)

    def add_min_sample_time(self, quick, full, what="seconds of back-to-back calls per sample"):
        self.add_by_quick("min_sample_time", quick, full, what, type=float)

    def add_workloads(self, pool, default=None):
        """--workloads: a comma-separated subset of the names of `pool` (default: all)."""
        self.add_argument("--workloads", default=default, help="comma-separated subset of "
                          + ",".join(w.name for w in pool))

    def parse(self, argv, at_least=(), positive=()):
        """Parses `argv` (None: the command line); fills the flags of `add_by_quick` left unset.

        Args:
          at_least: {flag: lowest allowed value}.
          positive: flags that must be > 0.

        Exits with status 2 and a message naming the flag if a bound does not hold.
        """
        args = self.parse_args(argv)
        for key, (quick, full) in self._by_quick.items():
            if getattr(args, key) is None:
                setattr(args, key, quick if args.quick else full)
        for key, lowest in dict(at_least).items():
            if getattr(args, key) < lowest:
                self.error(f"--{key} must be >= {lowest:g}")
        for key in positive:
            if not getattr(args, key) > 0:
                self.error(f"--{key} must be > 0")
        return args


def select_workloads(spec, pool):
    """The workloads of `pool` named in the comma-separated `spec` (case-insensitive); all of
    them if `spec` is None."""
    if spec is None:
        return tuple(pool)
    names = {n.strip().lower() for n in spec.split(",") if n.strip()}
    workloads = tuple(w for w in pool if w.name.lower() in names)
    if not workloads:
        raise SystemExit(f"--workloads: none of {spec!r} is one of "
                         f"{', '.join(w.name for w in pool)}")
    return workloads


def load_candidate(path):
    """Loads an alternative `deform_tf/sensitivity.py` (e.g. a file from another commit) as a
    module, to time it against the library's in the same run. Exits with a message if `path`
    cannot be loaded."""
    spec = importlib.util.spec_from_file_location("candidate_sensitivity", path)
    if spec is None or not os.path.isfile(path):
        raise SystemExit(f"--candidate: cannot load {path!r} (give the path of a "
                         "sensitivity.py file).")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- A run and its report ------------------------------------------------------------------------


class Run:
    """One benchmark run: the 1-minute load average and the clock at its start, its progress
    messages and its report."""

    def __init__(self, quick, verbose=False):
        self.quick = quick
        self.verbose = verbose
        self.load = os.getloadavg()[0]
        self.start = clock()

    def log(self, message):
        """Prints `message` to stderr with --verbose."""
        if self.verbose:
            print(message, file=sys.stderr, flush=True)

    def elapsed(self):
        """Seconds since the run started."""
        return clock() - self.start

    def medians_note(self, unit):
        """The end of a report's timing line: "median <unit>; IQR = ...; total <seconds> s."."""
        return (f"median {unit}; IQR = interquartile range / median; total "
                f"{self.elapsed():.0f} s.")

    def report(self, title, details, body, out=None):
        """Prints the report to `out` (default stdout) and returns it: "# title" (marked as a
        quick run with --quick), the machine line, the `details` lines, a blank line, the
        `body` lines."""
        text = "\n".join(["# " + title + (" -- QUICK smoke run" if self.quick else ""), "",
                          machine_line(self.load), *details, "", *body])
        print(text, file=sys.stdout if out is None else out, flush=True)
        return text


# --- Timing --------------------------------------------------------------------------------------


def seconds(fn, *args):
    """Seconds of one call `fn(*args)` (the call must return when its work is done)."""
    start = clock()
    fn(*args)
    return clock() - start


def calls_per_sample(min_sample_time, call_seconds):
    """Back-to-back calls of `call_seconds` each that fill at least `min_sample_time` (>= 1)."""
    return max(1, int(math.ceil(min_sample_time / max(call_seconds, 1e-6))))


def round_robin(samplers, reps, log=None, label=""):
    """Takes `reps` samples of every entry, one per round, round-robin.

    Round r calls the samplers in turn starting at entry r mod len(samplers), so that no entry
    always runs right after the same one and machine noise hits all entries alike.

    Args:
      samplers: callables () -> one sample (e.g. seconds or items per second), or a list of
        samples.
      reps: number of rounds.
      log: optional callable(str), told of each finished round (prefixed with `label`).

    Returns:
      per sampler, the list of its samples in the order taken.
    """
    samples = [[] for _ in samplers]
    for rep in range(reps):
        shift = rep % len(samplers)
        for i in list(range(shift, len(samplers))) + list(range(shift)):
            got = samplers[i]()
            samples[i].extend(got if isinstance(got, list) else [got])
        if log is not None:
            log(f"  {label}round {rep + 1}/{reps} done")
    return samples


@dataclasses.dataclass(frozen=True)
class Timings:
    """The samples of named entries: median, spread and ratios.

    Attributes:
      samples: {entry key: list of samples}.
    """

    samples: dict

    def median(self, key):
        return float(np.median(self.samples[key]))

    def spread(self, key):
        """Interquartile range over the median of the entry's samples."""
        q25, q75 = np.percentile(self.samples[key], [25, 75])
        return float((q75 - q25) / self.median(key))

    def ratio(self, key, baseline):
        """median(key) / median(baseline); NaN if the baseline entry was not timed."""
        if baseline not in self.samples:
            return float("nan")
        return self.median(key) / self.median(baseline)
