"""Library messages shown on the command line: the settings they name become flags.

The flag-free layers (`experiments`) name a setting in backquotes, as a Python caller passes it
(`epochs`, `overwrite=True`, `weights='none'`); the launchers take the same settings as flags of
the same names. `as_flags` turns one into the other. Importing this module defines no flag.
"""

import re

_SETTING = re.compile(r"`([a-z_][a-z0-9_]*)(?:=([^`]*))?`")


def as_flags(message):
    """A library message with its settings as flags: `name` -> --name, `name=value` ->
    --name=value (quotes dropped), `name=True` / `name=False` -> --name / --noname."""

    def flag(match):
        name, value = match.group(1), match.group(2)
        if value is None:
            return f"--{name}"
        if value in ("True", "False"):
            return f"--{'' if value == 'True' else 'no'}{name}"
        return f"--{name}={value.strip(chr(39))}"

    return _SETTING.sub(flag, message)
