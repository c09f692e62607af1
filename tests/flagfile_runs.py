"""Builds launcher runs from flagfiles in a process of their own; prints what each resolved to.

The training launchers define their flags in absl's global FLAGS when imported, which would
clash with other launchers imported by other tests in the same process, so
tests/launch_real_data_test.py runs this module in a subprocess:

    python -m tests.flagfile_runs '<JSON list of cases>'

Each case is {"name", "launcher" (module), "args" (command-line flags, flagfile included),
"data_dirs" ({data set: --data_dir}, chosen after the flagfile says which data set)}. For each
case the flags are parsed as the launcher would, the run is built with
`experiments.settings.build_run` (data read and checked, steps resolved) and the first training
batch is drawn. One JSON line per case:
{"name", "steps_setting" (--train_steps or the launcher's default, None for epochs), "epochs",
"train_steps", "warmup_steps", "train_examples", "input_shape", "batch_shape", "label_shape"},
or {"name", "error"} for a launcher error (exit status 2 in a real run).
"""

import importlib
import json
import sys

from absl import flags
import tensorflow as tf


def build(case):
    from experiments import settings as settings_lib  # pylint: disable=import-outside-toplevel
    from launch import common  # pylint: disable=import-outside-toplevel
    from launch import messages  # pylint: disable=import-outside-toplevel

    launcher = importlib.import_module(case["launcher"])
    flag_values = flags.FLAGS
    flag_values.unparse_flags()
    flag_values(["flagfile_runs"] + case["args"])
    # The launchers' own data settings (what their `train_main` passes as spec_fields).
    spec_fields = {
        "launch.imagenet": lambda: dict(image_size=flag_values.image_size),
        "launch.synthetic_mnist": lambda: dict(synthetic_strength=flag_values.synthetic_strength,
                                               synthetic_source=flag_values.synthetic_source),
    }.get(case["launcher"], lambda: None)()
    try:
        settings = common.settings_from_flags(launcher.EXPERIMENT)
        settings["data_dir"] = case["data_dirs"][settings["dataset"]]
        config, data = settings_lib.build_run(launcher.EXPERIMENT, settings, spec_fields)
    except common.LaunchError as e:
        return {"name": case["name"], "error": e.message}
    except (ValueError, FileNotFoundError) as e:
        return {"name": case["name"], "error": messages.as_flags(str(e))}
    images, labels = next(iter(data.train(tf.distribute.InputContext(), 0)))
    return {"name": case["name"], "steps_setting": settings["train_steps"],
            "epochs": settings["epochs"], "train_steps": config.train_steps,
            "warmup_steps": config.warmup_steps, "train_examples": config.data["train_examples"],
            "input_shape": list(config.input_shape), "batch_shape": list(images.shape),
            "label_shape": list(labels.shape)}


def main(argv):
    cases = json.loads(argv[1])
    for module in {case["launcher"] for case in cases}:
        importlib.import_module(module)  # defines the launcher's flags before any parsing
    for case in cases:
        print(json.dumps(build(case)), flush=True)


if __name__ == "__main__":
    main(sys.argv)
