"""Helpers shared by the benchmarks: the machine they ran on, a report's header, workload choice,
a candidate implementation to time against the library's.

Import after `bench.tf_env.configure()` (this module imports TensorFlow).
"""

import importlib.util
import os
import platform

import keras
import tensorflow as tf

from bench import tf_env


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


def report_header(title, quick, load, workloads, details):
    """The first lines of a benchmark report: title, machine, load, workloads, `details`."""
    return ["# " + title + (" -- QUICK smoke run" if quick else ""), "",
            machine_line(load),
            "Workloads: " + "; ".join(f"{w.name} {w.describe()}" for w in workloads),
            details, ""]


def select_workloads(spec, pool):
    """The workloads of `pool` named in the comma-separated `spec` (case-insensitive)."""
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
