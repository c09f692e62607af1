r"""Feeds every flagfile of launch/configs to its launcher; prints what happened, as JSON.

  python -m tests.flagfile_check EMPTY_DIR OUTPUT_ROOT

Run by tests/configs_test.py in a subprocess: the launchers define absl flags (launch.common)
that other modules of the test process define too. For each flagfile: the flags it sets that its
launcher does not define, the settings the launcher resolves that differ from the grid run's, and
how `main` stopped with --data_dir=EMPTY_DIR (the exception and its message) and whether it wrote
its --output_dir under OUTPUT_ROOT.
"""

import json
import os
import re
import sys

from absl import flags

from experiments.study import grid as grid_lib
import launch
from launch import common
# The launchers (importing them defines their flags).
from launch import cifar10
from launch import imagenet
from launch import synthetic_mnist

FLAGS = flags.FLAGS
LAUNCHERS = {m.__name__: m for m in (cifar10, imagenet, synthetic_mnist)}


def flag_names(text):
    """Flag names set by a flagfile's lines (`--no<name>` counts as <name>)."""
    names = []
    for line in text.splitlines():
        if line.startswith("--"):
            name = re.match(r"--([^=]+)", line).group(1)
            if name not in FLAGS and name.startswith("no"):
                name = name[2:]
            names.append(name)
    return names


def check(flagfile, empty_dir, output_root):
    launcher = LAUNCHERS[flagfile.run.launcher]
    path = os.path.join(launch.CONFIGS_DIR, flagfile.name)
    with open(path) as f:
        text = f.read()
    own = {f.name for module in ("launch.common", launcher.__name__)
           for f in FLAGS.get_flags_for_module(module)}
    output_dir = os.path.join(output_root, flagfile.name)
    result = {"foreign_flags": [n for n in flag_names(text) if n not in own]}
    FLAGS.unparse_flags()
    try:
        FLAGS([launcher.__name__, f"--flagfile={path}", f"--data_dir={empty_dir}",
               f"--output_dir={output_dir}"])  # flags exist and validators pass
    except flags.Error as e:
        return dict(result, stopped="flags.Error", message=str(e))
    settings = common.settings_from_flags(launcher.EXPERIMENT)
    result["mismatched_settings"] = {
        key: [settings[key], value] for key, value in flagfile.run.settings.items()
        if key not in grid_lib.COMMAND_LINE_SETTINGS and settings[key] != value}
    try:
        launcher.main([launcher.__name__])
        result.update(stopped=None, message="")
    except common.LaunchError as e:
        result.update(stopped="LaunchError", message=e.message)
    except Exception as e:  # pylint: disable=broad-except  # reported to the test
        result.update(stopped=type(e).__name__, message=str(e))
    result["wrote_output_dir"] = os.path.exists(output_dir)
    return result


def main(argv):
    empty_dir, output_root = argv[1:3]
    results = {f.name: check(f, empty_dir, output_root) for f in grid_lib.flagfiles()}
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv)
