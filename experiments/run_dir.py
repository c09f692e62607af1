"""The output directory of one training run: lock, config, result files, checkpoint state.

A run directory belongs to one run, identified by its `config.json`. `open_run` takes the
directory for a run after every setting has been checked: it refuses a directory in use by
another process (an `fcntl` lock on `run.lock`), one holding a different run, and one holding
files that are not a run of these launchers; it commits `config.json` (and `flags.txt`) only then.
A run therefore counts as started once its config is committed, and the same command run again
finds the identical config and resumes.

Every result file is replaced atomically: written to a temporary file in the same directory
(`.<name>.tmp-<random>`, removed on failure), then renamed over the old one, so a kill or a full
disk leaves the previous complete file, never a partial one. `StepLog` keeps the per-step files
(`metrics.csv`, `measurements.json`) keyed by step: a step replayed after a resume replaces its
row.

`checkpoint_to_resume` reads the `checkpoint` state file of `tf.train.CheckpointManager` before
a resume: a damaged state file is an error naming it, never a silent restart from step 0, and a
state file naming a checkpoint whose files were moved away is rebuilt from the complete
`ckpt-N` files present, so the advice of `damaged_checkpoint_error` ("move these files away")
resumes from the previous checkpoint. `disk_full_is_run_error` turns a full disk into one
`RunError` naming the path and the checkpoint the same command resumes from.

The lock works on local file systems (where `fcntl.flock` does); an output directory given as a
URL (`gs://...`) is used without one.
"""

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import re
import socket
import time
import uuid

from absl import logging
import tensorflow as tf

from deform_tf import model_io

CONFIG_FILE = "config.json"
FLAGS_FILE = "flags.txt"
LOCK_FILE = "run.lock"
FINAL_FILE = "final.json"
METRICS_FILE = "metrics.csv"
MEASUREMENTS_FILE = "measurements.json"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_STATE_FILE = "checkpoint"  # the state file tf.train.CheckpointManager keeps
METRICS_FIELDS = ("step", "loss", "accuracy", "learning_rate", "examples_per_sec")
# Keys every config.json of these launchers has (how a run directory is told from others).
RUN_CONFIG_KEYS = ("experiment",)
_TEMP_MARK = ".tmp-"


class RunError(Exception):
    """A problem with the run's inputs or output directory; the message says what to do."""


# --- Atomic writes ------------------------------------------------------------------------------

def write_text(path, text):
    """Replaces the file `path` by `text` atomically (temporary file in its directory, rename)."""
    directory, name = os.path.split(path)
    temp = os.path.join(directory, f".{name}{_TEMP_MARK}{uuid.uuid4().hex[:8]}")
    try:
        with tf.io.gfile.GFile(temp, "w") as f:
            f.write(text)
        tf.io.gfile.rename(temp, path, overwrite=True)
    except BaseException:
        with contextlib.suppress(tf.errors.OpError, OSError):
            tf.io.gfile.remove(temp)
        raise


def write_json(path, value, indent=1, sort_keys=False):
    """Replaces the file `path` by `value` as JSON, atomically (see `write_text`)."""
    write_text(path, json.dumps(value, indent=indent, sort_keys=sort_keys))


def _is_own_temp_file(name):
    return name.startswith(".") and _TEMP_MARK in name


# --- Per-step records ---------------------------------------------------------------------------

class StepLog:
    """Rows (dicts with an integer "step") in one file, at most one row per step, by step.

    With `fields`, the file is CSV with those columns in that order; without, a JSON list of
    objects. It is rewritten atomically on every change, so it always holds complete rows (a
    log of thousands of rows costs well under a second per rewrite).
    """

    def __init__(self, path, fields=None):
        self.path = path
        self.fields = fields
        self.rows = self._read()

    def _read(self):
        if not tf.io.gfile.exists(self.path):
            return []
        try:
            with tf.io.gfile.GFile(self.path) as f:
                text = f.read()
            rows = list(csv.DictReader(io.StringIO(text))) if self.fields else json.loads(text)
            for row in rows:
                row["step"] = int(row["step"])
        except (ValueError, TypeError, KeyError) as e:
            raise RunError(
                f"{self.path} is damaged ({type(e).__name__}: {e}). Restore it from a copy, or "
                "move it away to continue the run without its earlier rows.") from None
        return sorted(rows, key=lambda row: row["step"])

    def truncate(self, last_step):
        """Drops the rows after `last_step` (a resumed run redoes them)."""
        kept = [row for row in self.rows if row["step"] <= last_step]
        if len(kept) != len(self.rows):
            self.rows = kept
            self._write()

    def put(self, row):
        """Adds `row`, replacing the row of the same step if there is one."""
        step = int(row["step"])
        self.rows = sorted([r for r in self.rows if r["step"] != step] + [dict(row, step=step)],
                           key=lambda r: r["step"])
        self._write()

    def _write(self):
        if self.fields:
            text = io.StringIO()
            writer = csv.DictWriter(text, list(self.fields))
            writer.writeheader()
            writer.writerows(self.rows)
            write_text(self.path, text.getvalue())
        else:
            write_json(self.path, self.rows)


# --- Taking a directory for a run ---------------------------------------------------------------

def _is_local(path):
    return "://" not in path


class _Lock:
    """An exclusive, non-blocking `flock` on `directory/run.lock`, held until `release`."""

    def __init__(self, directory):
        self.path = os.path.join(directory, LOCK_FILE)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 200).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            raise RunError(
                f"{directory} is in use by another run ({holder}, holding {self.path}). Wait "
                "for it to finish, or choose another `output_dir`.") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())

    def release(self):
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class RunDir:
    """An output directory taken by `open_run` for one run; a context manager (releases it).

    Attributes:
      path: the directory.
      resuming: True if it already held this run (same config), which the run continues.
    """

    def __init__(self, path, resuming, lock):
        self.path = path
        self.resuming = resuming
        self._lock = lock

    def file(self, name):
        return os.path.join(self.path, name)

    def write_json(self, name, value):
        write_json(self.file(name), value)

    def metrics(self):
        """The `StepLog` of metrics.csv."""
        return StepLog(self.file(METRICS_FILE), METRICS_FIELDS)

    def measurements(self):
        """The `StepLog` of measurements.json."""
        return StepLog(self.file(MEASUREMENTS_FILE))

    def close(self):
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _entries(path):
    """The names in directory `path` other than the lock and leftover temporary files."""
    if not tf.io.gfile.isdir(path):
        return []
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(path)
                  if name.rstrip("/") != LOCK_FILE and not _is_own_temp_file(name))


def _read_config(path):
    """(config dict or None if absent, problem or None) of run directory `path`.

    A problem is a config.json that is not valid JSON (say, cut short by an older version):
    the directory may hold a run, which `--overwrite` can move aside. Raises RunError if `path`
    holds files but no config.json, or a config.json that is not of these launchers.
    """
    config_path = os.path.join(path, CONFIG_FILE)
    if not tf.io.gfile.exists(config_path):
        entries = _entries(path)
        if entries:
            raise RunError(
                f"{path} holds files ({', '.join(entries[:5])}) but no {CONFIG_FILE}, so it is "
                "not a run of these launchers; its files are left as they are. Choose a new or "
                "empty `output_dir`.")
        return None, None
    with tf.io.gfile.GFile(config_path, "rb") as f:
        raw = f.read()
    try:
        config = json.loads(raw)
    except ValueError:
        return None, f"{config_path} is not valid JSON ({len(raw)} bytes)"
    if not isinstance(config, dict) or not all(key in config for key in RUN_CONFIG_KEYS):
        raise RunError(
            f"{config_path} is not the config of a run of these launchers (no "
            f"{' / '.join(RUN_CONFIG_KEYS)} key); the directory is left as it is. Choose a new "
            "or empty `output_dir`.")
    return config, None


def _differences(existing, wanted):
    keys = sorted(k for k in set(existing) | set(wanted) if existing.get(k) != wanted.get(k))
    short = lambda value: repr(value)[:80]
    return "; ".join(f"{k}: {short(existing.get(k))} there, {short(wanted.get(k))} here"
                     for k in keys[:6])


def _move_aside(path):
    """Moves every entry of run directory `path` but the lock into `<path>.replaced-<time>`."""
    stem = f"{path.rstrip('/')}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
    aside, count = stem, 1
    while tf.io.gfile.exists(aside):
        count += 1
        aside = f"{stem}-{count}"
    tf.io.gfile.makedirs(aside)
    # config.json last: an interrupted move leaves a directory that is still a run.
    names = sorted((name.rstrip("/") for name in tf.io.gfile.listdir(path)),
                   key=lambda name: name == CONFIG_FILE)
    for name in names:
        if name != LOCK_FILE:
            tf.io.gfile.rename(os.path.join(path, name), os.path.join(aside, name))
    logging.info("Moved the previous run in %s to %s.", path, aside)
    return aside


def _take(path, wanted, resume, overwrite):
    """True if `path` holds this run to continue, False if it is free (after moving an old
    run aside with `overwrite`); RunError otherwise. Called with the lock held."""
    existing, problem = _read_config(path)
    if existing is None and problem is None:
        return False
    aside = f"{path.rstrip('/')}.replaced-<time>"
    if overwrite:
        _move_aside(path)
        return False
    if problem:
        raise RunError(
            f"{problem}, so the run in {path} is unknown. Pass `overwrite=True` to move it aside "
            f"to "
            f"{aside} (nothing is deleted) and start afresh, or choose a new `output_dir`.")
    if existing != wanted:
        raise RunError(
            f"{path} holds another run's {CONFIG_FILE} ({_differences(existing, wanted)}). "
            "Choose a new `output_dir`, or pass `overwrite=True` to move the old run aside to "
            f"{aside} (nothing is deleted).")
    checkpoints = model_io.complete_checkpoints(os.path.join(path, CHECKPOINT_DIR))
    if not resume and checkpoints:
        raise RunError(
            f"{path} holds the same run, with checkpoints; pass `resume=True` to continue it, or "
            f"`overwrite=True` to move it aside to {aside} and start afresh.")
    trains = wanted.get("train_steps", 1) != 0  # a run of 0 steps only measures the init
    if trains and not checkpoints and tf.io.gfile.exists(os.path.join(path, FINAL_FILE)):
        raise RunError(
            f"{path} holds this run, finished ({FINAL_FILE}), but no checkpoint to resume from "
            f"in {os.path.join(path, CHECKPOINT_DIR)}. Pass `overwrite=True` to move it aside to "
            f"{aside} and train again, or choose a new `output_dir`.")
    return True


def open_run(path, config, resume=True, overwrite=False, flags_text=None):
    """Takes directory `path` for the run with `config` (a JSON-able dict); returns a `RunDir`.

    Call it after every setting has been checked: it is the first thing that writes. The
    directory is created if needed and locked; `config.json` is committed, then `flags.txt`
    (`flags_text`) if absent. The same config found there is continued (also with `resume`
    False while it has no checkpoint: nothing is lost by starting it again).

    Raises:
      RunError: the directory is in use by another process; it holds a different run's config
        (or a damaged config.json) and `overwrite` is False; it holds the same run with
        checkpoints and `resume` is False, or finished but without checkpoints; it holds files
        but no config.json of these launchers (refused even with `overwrite`); or it cannot be
        created. With `overwrite`, the old run's files are moved to `<path>.replaced-<time>`
        (all but run.lock, which stays); nothing is deleted.
    """
    config = json.loads(json.dumps(config))  # tuples as lists, as read back from the file
    _read_config(path)  # refuses a foreign directory before a lock file is created in it
    try:
        tf.io.gfile.makedirs(path)
        lock = _Lock(path) if _is_local(path) else None
    except (OSError, tf.errors.OpError) as e:
        if is_disk_full(e):
            raise
        raise RunError(f"Cannot create or lock `output_dir` {path}: {e}") from None
    if lock is None:
        logging.warning("%s is not a local path: no lock keeps a second run out of it.", path)
    run = RunDir(path, False, lock)
    try:
        run.resuming = _take(path, config, resume, overwrite)
        if not run.resuming:
            write_json(run.file(CONFIG_FILE), config, indent=2, sort_keys=True)
        if flags_text is not None and not tf.io.gfile.exists(run.file(FLAGS_FILE)):
            write_text(run.file(FLAGS_FILE), flags_text)
    except BaseException:
        run.close()
        raise
    return run


# --- Checkpoints ----------------------------------------------------------------------------

def _write_checkpoint_state(checkpoint_dir, prefixes):
    """Rewrites the state file to list `prefixes` (oldest first), the last as the latest."""
    names = [json.dumps(os.path.basename(p)) for p in prefixes]
    text = f"model_checkpoint_path: {names[-1]}\n" + "".join(
        f"all_model_checkpoint_paths: {name}\n" for name in names)
    write_text(os.path.join(checkpoint_dir, CHECKPOINT_STATE_FILE), text)


# What a checkpoint save killed midway leaves: TensorFlow writes a checkpoint into
# `ckpt-N_temp/` and the state file as `checkpoint.tmp<hex>` before renaming them.
_SAVE_LEFTOVERS = re.compile(r"^(ckpt-\d+_temp|checkpoint\.tmp[0-9a-f]+)$")


def remove_save_leftovers(checkpoint_dir):
    """Deletes the temporaries of an interrupted checkpoint save (`ckpt-N_temp/` directories,
    `checkpoint.tmp<hex>` files) from `checkpoint_dir`; returns their names, sorted.

    Only for a run that holds the directory (no save can be in progress): they are never a
    complete checkpoint, which is only ever `ckpt-N.index` and `ckpt-N.data-*`.
    """
    if not tf.io.gfile.isdir(checkpoint_dir):
        return []
    removed = []
    for name in sorted(tf.io.gfile.listdir(checkpoint_dir)):
        name = name.rstrip("/")
        if not _SAVE_LEFTOVERS.match(name):
            continue
        path = os.path.join(checkpoint_dir, name)
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
        removed.append(name)
    return removed


def checkpoint_to_resume(checkpoint_dir):
    """The checkpoint prefix a resumed run restores from `checkpoint_dir`; None if it has none.

    First removes what an interrupted save left (`remove_save_leftovers`).

    The latest checkpoint named by the state file if its files are complete; otherwise (its
    files were moved away, or the state file is missing) the newest complete `ckpt-N` present,
    after rewriting the state file to list the complete checkpoints present, so that
    `tf.train.CheckpointManager` continues from it.

    Raises:
      RunError: the state file is damaged (naming it), or it names checkpoints of which none
        is present.
    """
    removed = remove_save_leftovers(checkpoint_dir)
    if removed:
        logging.info("Removed what an interrupted checkpoint save left in %s: %s.",
                     checkpoint_dir, ", ".join(removed))
    state_path = os.path.join(checkpoint_dir, CHECKPOINT_STATE_FILE)
    present = model_io.complete_checkpoints(checkpoint_dir)
    try:
        latest = model_io.latest_checkpoint(checkpoint_dir)
    except ValueError as e:
        if present:
            advice = (f"It only indexes the checkpoint files beside it: move it out of "
                      f"{checkpoint_dir} and run the same command again; the run then resumes "
                      f"from {os.path.basename(present[-1])}, the newest complete checkpoint.")
        else:
            advice = ("No complete checkpoint is beside it. Pass `overwrite=True` to move this run "
                      "aside (nothing is deleted) and start afresh, or choose a new "
                      "`output_dir`.")
        raise RunError(f"{e} {advice}") from None
    if latest is None:
        if tf.io.gfile.exists(state_path):
            raise RunError(
                f"The checkpoint state file {state_path} names checkpoints, but no complete "
                f"checkpoint (ckpt-N.index and its ckpt-N.data-* files) is in {checkpoint_dir}. "
                "Put the checkpoint files back to resume, or pass `overwrite=True` to move this "
                "run "
                "aside (nothing is deleted) and start afresh.")
        return None
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    named = state.model_checkpoint_path if state else None
    if named is None or os.path.basename(named) != os.path.basename(latest):
        found = f"names {named}, which is not complete there" if named else "is missing"
        logging.warning("The checkpoint state file in %s %s; resuming from %s, the newest "
                        "complete checkpoint, and listing the complete ones in a new state "
                        "file.", checkpoint_dir, found, latest)
        _write_checkpoint_state(checkpoint_dir, present)
    return latest


def damaged_checkpoint_error(prefix, error):
    """The RunError for a checkpoint `prefix` that cannot be restored: names its files and how
    to resume from the previous checkpoint (or to start afresh if it is the only one)."""
    directory = os.path.dirname(prefix)
    files = model_io.checkpoint_files(prefix)
    earlier = model_io.other_checkpoints(prefix)
    detail = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
    moved = ", ".join(os.path.basename(f) for f in files)
    if earlier:
        advice = (f"Move {moved} out of {directory} and run the same command again: the run "
                  f"resumes from {os.path.basename(earlier[-1])}.")
    else:
        advice = ("It is the run's only checkpoint: pass `overwrite=True` to move this run aside "
                  "(nothing is deleted) and start afresh, or choose a new `output_dir`.")
    return RunError(f"Cannot restore checkpoint {prefix} ({detail}). {advice}")


# --- A full disk --------------------------------------------------------------------------------

_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded")


def is_disk_full(error):
    """True if `error` (OSError or tf.errors.OpError) says the disk or quota is full."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(error, (OSError, tf.errors.OpError)) and any(
        text in str(error) for text in _DISK_FULL_TEXT)


def _path_in_message(message):
    """The path in a TensorFlow error message "... <path>; No space left on device ...", or
    None when the message names none."""
    match = re.search(r"(\S+); (?:%s)" % "|".join(_DISK_FULL_TEXT), message)
    return match.group(1) if match else None


@contextlib.contextmanager
def disk_full_is_run_error(output_dir):
    """Turns a full-disk error inside the block into one RunError naming the path and the
    checkpoint that the same command resumes from once space is freed."""
    try:
        yield
    except (OSError, tf.errors.OpError) as e:
        if not is_disk_full(e):
            raise
        path = getattr(e, "filename", None) or _path_in_message(str(e))
        what = (f"writing {path}" if path else
                f"while writing: {(str(e).splitlines() or [''])[0][:300]}")
        try:
            latest = model_io.latest_checkpoint(os.path.join(output_dir, CHECKPOINT_DIR))
        except (ValueError, OSError, tf.errors.OpError):
            latest = None
        resumes = (f"from {os.path.basename(latest)}" if latest else
                   "from step 0 (no checkpoint was written yet)")
        raise RunError(
            f"No space left on the device holding {output_dir} ({what}). Free some "
            f"space and run the same command again: it resumes {resumes}.") from None
