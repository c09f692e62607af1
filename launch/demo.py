r"""Draws the paper's deformation pictures (Fig. 1 and Fig. 2) with the library's own deformation.

Writes three PNGs into --output_dir (and nothing else; existing files of these names are
replaced):

  fig2_photo.png     how a deformation is built (control grid and random sources, thin-plate
                     interpolation, field over the image, result) on matplotlib's sample photo
                     (grace_hopper.jpg) resized and centre-cropped to 224x224, strength
                     --strength_photo (the paper's ImageNet C = 10 px);
  fig2_digit.png     the same on a Fashion-MNIST item of the embedded subset, padded to 32x32 as
                     the synthetic-MNIST task (docs/method.md#data), strength --strength_digit;
  fig1_examples.png  originals beside deformed copies: the photo with two seeds at
                     --strength_photo and four Fashion-MNIST items at --strength_digit.

All three use a --grid_size x --grid_size control grid (4 as in the paper's Fig. 2).

  python3 -m launch.demo --output_dir=out/demo
"""

import math
import os

from absl import app
from absl import flags

from launch import deformation_figures

flags.DEFINE_string("output_dir", "out/demo",
                    "Directory for fig2_photo.png, fig2_digit.png and fig1_examples.png "
                    "(created if missing).")
flags.DEFINE_integer("grid_size", 4, "Control grid of the Fig. 2 pictures: n x n points, n >= 2.")
flags.DEFINE_float("strength_photo", 10.0,
                   "Deformation strength C (px) for the 224x224 photo (paper's ImageNet C).")
flags.DEFINE_float("strength_digit", 3.0,
                   "Deformation strength C (px) for the 32x32 Fashion-MNIST items "
                   "(synthetic-MNIST C in {1, 2, 3, 4}).")
flags.DEFINE_integer("seed", 0, "Seed of the random deformations (stateless; same seed, same "
                     "figures).")

flags.register_validator("output_dir", lambda v: bool(v and v.strip()),
                         message="--output_dir must be a non-empty path.")
flags.register_validator("grid_size", lambda v: v is not None and v >= 2,
                         message="--grid_size must be >= 2 (a thin-plate spline needs a grid "
                         "spanning the image).")
for _name in ("strength_photo", "strength_digit"):
    flags.register_validator(
        _name, lambda v: v is not None and math.isfinite(v) and v >= 0,
        message=f"--{_name} is a maximal offset in pixels and must be a finite number >= 0.")

FLAGS = flags.FLAGS




def _prepare_output_dir(path):
    """Creates `path` if needed; raises app.UsageError (exit status 2) if it is not writable."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise app.UsageError(f"Cannot create --output_dir={path!r}: {e}", exitcode=2) from e
    if not os.access(path, os.W_OK | os.X_OK):
        raise app.UsageError(f"--output_dir={path!r} is not writable.", exitcode=2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}", exitcode=2)
    _prepare_output_dir(FLAGS.output_dir)
    deformation_figures.write_figures(FLAGS.output_dir, FLAGS.grid_size, FLAGS.strength_photo,
                                      FLAGS.strength_digit, FLAGS.seed)
    return 0


def parse_flags(argv):
    """Parses flags like absl's default, but a bad flag value exits with status 2 (usage)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        app.usage(shorthelp=True, detailed_error=error, exitcode=2)
        raise  # Unreachable: usage() exits.


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
