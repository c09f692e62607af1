r"""Reproduces the paper: runs the experiment grid, then draws Figures 1-7 and writes a report.

  python -m launch.reproduce --profile=quick           # ~13 min on 2 CPU cores, Fashion-MNIST
  python -m launch.reproduce --profile=standard        # ~2 hours, the full Fashion-MNIST
  python -m launch.reproduce --profile=standard --dataset=cifar10 --data_dir=/data/cifar10
  python -m launch.reproduce --profile=paper --data_dir=/data/cifar10 \
      --imagenet_dir=/data/imagenet --print_commands  # one launcher command per run

The profiles are defined in experiments/study/grid.py. --dataset runs a profile's grid on another
data set (cifar10, fashion_mnist, mnist) unchanged; the standard and paper profiles refuse the
small embedded Fashion-MNIST subset (install Debian's dataset-fashion-mnist or give --data_dir).

Runs already finished in --output_dir are skipped and interrupted ones resume, so the same
command continues where it stopped. Writes into --output_dir: one directory per run (see
experiments/training.py), grid.json, results.json, tables/*.csv, figures/*.png and report.md,
which states for each of the paper's five findings what this run measured, whether it agrees
with the paper, contradicts it or does not show it, and the run's power. `python -m launch.plot --results_dir=...` redraws figures and report without training.
"""

import dataclasses
import json
import os

from absl import flags
from absl import logging
import tensorflow as tf

from launch import common
from experiments import datasets as data_lib
from launch import deformation_figures
from experiments.study import grid as grid_lib
from experiments.study import report
from experiments.study import results as results_lib
# The launchers the grid runs (importing them defines their flags and DEFAULTS).
from launch import cifar10  # pylint: disable=unused-import
from launch import imagenet  # pylint: disable=unused-import
from launch import synthetic_mnist  # pylint: disable=unused-import

flags.DEFINE_enum("profile", "quick", list(grid_lib.PROFILES), "Experiment grid and sizes.")
flags.DEFINE_string("imagenet_dir", None, "ImageNet TFRecord shards (paper profile).")
flags.DEFINE_bool("print_commands", False, "Print the launcher command of every run (e.g. to "
                  "submit them to a cluster) and exit; `launch.plot` then aggregates.")

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise common.usage_error(f"Unexpected arguments: {' '.join(argv[1:])}")
    common.setup_runtime()
    profile = grid_lib.PROFILES[FLAGS.profile]
    if FLAGS.dataset:
        if FLAGS.dataset not in ("cifar10", *data_lib.MNIST_LIKE):
            raise common.usage_error(f"--dataset={FLAGS.dataset}: the grid trains the CIFAR-10 "
                                     "net, on cifar10, fashion_mnist or mnist.")
        profile = dataclasses.replace(profile, dataset=FLAGS.dataset)
    root = FLAGS.output_dir
    runs = grid_lib.grid(profile, FLAGS.data_dir, FLAGS.imagenet_dir)
    if FLAGS.print_commands:
        print("\n".join(run.command(root) for run in runs))
        return
    if profile.imagenet_seeds and not FLAGS.imagenet_dir:
        raise common.usage_error("The paper profile trains on ImageNet: give --imagenet_dir.")
    if not profile.allow_embedded:
        common.refuse_embedded_data(profile.name, profile.dataset, FLAGS.data_dir)
    tf.io.gfile.makedirs(os.path.join(root, "figures"))
    grid_path = os.path.join(root, "grid.json")
    grid = {"profile": dataclasses.asdict(profile), "title": profile.title,
            "runs": [dataclasses.asdict(r) for r in runs]}
    if tf.io.gfile.exists(grid_path):
        with tf.io.gfile.GFile(grid_path) as f:
            if json.load(f) != json.loads(json.dumps(grid)):
                raise common.usage_error(
                    f"{root} holds another grid (grid.json differs); choose another "
                    "--output_dir.")
    with tf.io.gfile.GFile(grid_path, "w") as f:
        json.dump(grid, f, indent=1)
    deformation_figures.write_figures(os.path.join(root, "figures"))
    try:
        grid_lib.run_grid(runs, root)
    except (FileNotFoundError, ValueError) as e:
        raise common.usage_error(str(e)) from None
    results = results_lib.collect(runs, root, profile.title)
    findings = report.make_figures_and_report(
        results, root, notes=[f"Runs: {len(runs)} ({profile.title})."], data_dir=FLAGS.data_dir)
    for finding in findings:
        logging.info("Finding %d: %s", finding.number, finding.verdict)
    logging.info("Wrote %s", os.path.join(root, "report.md"))


if __name__ == "__main__":
    FLAGS.set_default("output_dir", "out/reproduce")
    common.run(main)
