"""What every command-line tool shares, without defining a flag: errors, exit status 2, numbers.

`run(main)` is `absl.app.run` with one difference: any bad flag, missing flagfile or
`LaunchError` (raised through `usage_error`) prints one message and exits with status 2, where
the settings a library message names in backquotes (`epochs`) read as flags (--epochs,
`launch.messages`). The training launchers' shared flags are in `launch.common`.
"""

import sys

from absl import app
from absl import flags

from launch import messages

FLAGS = flags.FLAGS


class LaunchError(SystemExit):
    """Raised inside main for bad input: `run` prints the message alone and exits with 2."""

    def __init__(self, message):
        super().__init__(2)
        self.message = message


def plain_number(value):
    """A number for a log line: numpy scalars as Python prints them (no `np.float64(...)`),
    floats with 6 significant digits."""
    value = value.item() if hasattr(value, "item") else value
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def usage_error(message):
    """The exception to raise for bad flags, data or output directories (exit status 2); the
    settings the message names in backquotes read as flags."""
    return LaunchError(messages.as_flags(message))


def _parse(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        sys.stderr.write(f"{argv[0]}: {e}\nPass --help to see the flags.\n")
        sys.exit(2)


def run(main):
    """absl.app.run(main); bad flags and `LaunchError`s print one message and exit with 2."""
    try:
        app.run(main, flags_parser=_parse)
    except LaunchError as e:
        sys.stderr.write(f"{sys.argv[0]}: error: {e.message}\n")
        sys.exit(2)
