"""Helpers for tests that inspect what a run left in its output directory."""

import os


def snapshot(directory):
    """{path relative to `directory`: bytes} of every file under `directory`."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = f.read()
    return files
