r"""Redraws the figures and the report of a reproduction from its saved results, no training.

  python -m launch.plot --results_dir=out/reproduce

Reads --results_dir/grid.json (written by launch.reproduce) and every finished run's
measurements, then writes results.json, tables/, figures/ and report.md again.
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from experiments.study import grid as grid_lib
from experiments.study import report
from experiments.study import results as results_lib

flags.DEFINE_string("results_dir", None, "Output directory of launch.reproduce.")
flags.DEFINE_string("data_dir", None, "Fashion-MNIST directory for Fig. 5's samples (default: the "
                    "standard locations, then the embedded subset).")
flags.mark_flag_as_required("results_dir")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    grid_path = os.path.join(FLAGS.results_dir, "grid.json")
    if not tf.io.gfile.exists(grid_path):
        sys.stderr.write(f"error: {grid_path} not found; --results_dir must be the output "
                         "directory of launch.reproduce.\n")
        sys.exit(2)
    with tf.io.gfile.GFile(grid_path) as f:
        grid = json.load(f)
    runs = [grid_lib.Run(**r) for r in grid["runs"]]
    results = results_lib.collect(runs, FLAGS.results_dir, grid["title"])
    finished = sum(results_lib.load_run(os.path.join(FLAGS.results_dir, r.name)) is not None
                   for r in runs)
    report.make_figures_and_report(
        results, FLAGS.results_dir, data_dir=FLAGS.data_dir,
        notes=[f"Runs: {finished} of {len(runs)} finished ({grid['title']})."])
    logging.info("Wrote %s", os.path.join(FLAGS.results_dir, "report.md"))


if __name__ == "__main__":
    app.run(main)
