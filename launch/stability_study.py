r"""Petrini et al.'s relation across architectures: trains a grid of nets, measures R_f, reports.

  python -m launch.stability_study --profile=quick --output_dir=/runs/stability_quick
  python -m launch.stability_study --profile=standard --output_dir=/runs/stability_standard
  python -m launch.stability_study --profile=paper --data_dir=/data/cifar10 \
      --output_dir=/runs/stability_paper --print_commands   # one launch.train command per run

The profiles are defined in experiments/stability/grid.py (quick: the embedded Fashion-MNIST
subset; standard: the full Fashion-MNIST, which it refuses to replace by the subset; paper:
CIFAR-10 with Petrini et al.'s training settings); each sets the data set and every training
setting. Each run trains into <output_dir>/<model>/seed<k> and is then measured at init and
trained (stability.json: D_f, G_f, R_f at every point, with Petrini's diffeomorphisms and the
paper's TPS). Runs already trained or measured are skipped, so the same command continues where
it stopped; after the commands of --print_commands have run elsewhere, run this command without
it on the same --output_dir to measure and report. Writes grid.json, results.json, report.md
(the verdicts on Petrini's claims (a)-(e)) and figures/*.png into --output_dir.
"""

import dataclasses
import json
import os
import time

from absl import flags
from absl import logging

from experiments import settings as settings_lib
from experiments import training
from experiments.stability import grid as grid_lib
from experiments.stability import measure
from experiments.stability import report
from launch import common

flags.DEFINE_enum("profile", "quick", list(grid_lib.PROFILES), "Architectures, seeds and "
                  "training settings (experiments/stability/grid.py).")
flags.DEFINE_bool("print_commands", False, "Print the launch.train command of every run (e.g. "
                  "to submit them to a cluster) and exit.")

FLAGS = flags.FLAGS


def _profile():
    """The profile of --profile; refuses training flags, which the profile sets (they would
    be ignored)."""
    profile = grid_lib.PROFILES[FLAGS.profile]
    given = [name for name in settings_lib.SETTINGS
             if name != "data_dir" and name in FLAGS and FLAGS[name].present
             and not (name == "dataset" and FLAGS.dataset == profile.dataset)]
    if given:
        raise common.usage_error(
            f"{', '.join('--' + n for n in given)}: the {profile.name} profile sets the data set "
            "and the training settings (experiments/stability/grid.py); give only --profile, "
            "--data_dir and --output_dir.")
    return profile


def _check_data(profile, data_dir):
    if not profile.allow_embedded:
        common.refuse_embedded_data(profile.name, profile.dataset, data_dir)


def _write_grid(profile, runs, root, data_dir):
    """Writes grid.json; refuses a --output_dir that holds another grid.

    `data_dir` is recorded as given (None: the profile's own), not the path it resolves to, so
    a study on the embedded data continues after the repository has moved.
    """
    grid = {"profile": dataclasses.asdict(profile), "title": profile.title,
            "data_dir": data_dir,
            "runs": [dict(name=r.name, **{k: v for k, v in r.settings.items()
                                          if k != "data_dir"}) for r in runs]}
    grid["profile"].pop("data_dir")
    grid = json.loads(json.dumps(grid))
    path = os.path.join(root, "grid.json")
    if os.path.exists(path):
        with open(path) as f:
            if json.load(f) != grid:
                raise common.usage_error(f"{root} holds another grid (grid.json differs); "
                                         "choose another --output_dir.")
    with open(path, "w") as f:
        json.dump(grid, f, indent=1)


def main(argv):
    if len(argv) > 1:
        raise common.usage_error(f"Unexpected arguments: {' '.join(argv[1:])}")
    common.setup_runtime()
    profile = _profile()
    root = FLAGS.output_dir
    data_dir = FLAGS.data_dir or profile.data_dir
    runs = grid_lib.grid(profile, data_dir)
    if FLAGS.print_commands:
        print("\n".join(run.command(root) for run in runs))
        return
    _check_data(profile, data_dir)
    os.makedirs(root, exist_ok=True)
    _write_grid(profile, runs, root, FLAGS.data_dir)
    started = time.time()
    stabilities = []
    done_before = sum(os.path.exists(os.path.join(grid_lib.run_dir(r, root),
                                                  measure.STABILITY_FILE)) for r in runs)

    def measure_run(run, run_dir):
        stabilities.append(measure.measure_run(run_dir, data_dir, profile.num_measure_images))

    try:
        grid_lib.run_grid(runs, root, after_run=measure_run)
        results = report.collect(stabilities, profile.title, profile.dataset)
        report.write_results(results, root)
        elapsed = time.time() - started
        if done_before == len(runs):
            timing = (f"All {len(runs)} runs were trained and measured before the invocation "
                      "that wrote this report.")
        else:
            timing = (f"This invocation took {elapsed:.0f} s, training and measuring "
                      f"{len(runs) - done_before} of the {len(runs)} runs (os.cpu_count() = "
                      f"{os.cpu_count()}).")
        analyses = report.write_report(results, root, notes=[
            f"Runs: {len(runs)} ({profile.title}).", timing])
    except (training.RunError, FileNotFoundError, ValueError) as e:
        raise common.usage_error(str(e)) from None
    for verdict in analyses["diffeo"].verdicts:
        logging.info("(%s) %s", verdict.claim, verdict.verdict)
    logging.info("Wrote %s", os.path.join(root, report.REPORT_FILE))


if __name__ == "__main__":
    FLAGS.set_default("output_dir", "out/stability")
    common.run(main)
