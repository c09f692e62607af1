"""Converts MNIST-layout IDX files or the CIFAR-10 binary release into TFRecord shards.

    python -m launch.convert --source=idx --dataset=fashion_mnist \\
        --input_dir=/usr/share/datasets/fashion-mnist --output_dir=/data/fmnist --num_shards=4
    python -m launch.convert --source=cifar10_binary --input_dir=/data/cifar-10-batches-bin \\
        --output_dir=/data/cifar10 --num_shards=8

Both splits are written, as `{output_dir}/train-XXXXX-of-YYYYY` and `{output_dir}/test-...`, in
the layout of `pipelines.tfrecord` (raw uint8 HWC pixels, `image/shape`, 0-based
`image/class/label`): [28, 28, 1] images for IDX, [32, 32, 3] for CIFAR-10. Read them back with
`pipelines.tfrecord.read_image_tfrecords(pattern, image_shape, num_classes)` (IDX: (28, 28, 1),
10 classes) or `pipelines.cifar10.load(split, output_dir)`. Shards of a split are never
overwritten unless --overwrite is given.

Exit status: 0 on success; 2 with a one-line message on bad flags, missing or corrupt input, or
existing output shards; 143 on SIGTERM, with no file of the interrupted conversion left
behind (as on SIGINT). TensorFlow is imported only after the flags and paths are checked, so
those errors come back at once.
"""

import glob
import os
import signal
import sys

from absl import app
from absl import flags

SOURCES = ("idx", "cifar10_binary")
IDX_DATASETS = ("fashion_mnist", "mnist")
SPLITS = ("train", "test")
IDX_IMAGE_SHAPE = (28, 28, 1)
# Where Debian's dataset-fashion-mnist package puts the IDX files (docs/method.md#data): the default
# --input_dir for --dataset=fashion_mnist.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
EXIT_USAGE = 2


def _existing_shards(output_dir):
    """Returns the existing shard files of any split in `output_dir`."""
    return sorted(p for split in SPLITS
                  for p in glob.glob(os.path.join(output_dir, f"{split}-*-of-*")))


def _refuse_existing(output_dir, overwrite):
    existing = _existing_shards(output_dir)
    if existing and not overwrite:
        raise FileExistsError(
            f"Refusing to overwrite {len(existing)} existing shard(s) in {output_dir!r} (e.g. "
            f"{os.path.basename(existing[0])!r}); delete them, choose another output directory, "
            "or pass --overwrite.")


def _write_splits(splits, output_dir, num_shards, overwrite):
    """Writes {split: (images uint8 [N, H, W, C], labels [N])}; returns {split: shard paths}.

    All splits or none (`tfrecord.write_splits`): a --num_shards larger than a split is refused
    before anything is written.
    """
    from pipelines import tfrecord

    _refuse_existing(output_dir, overwrite)
    examples = {split: list(zip(images, labels)) for split, (images, labels) in splits.items()}
    return tfrecord.write_splits(
        examples, output_dir, num_shards,
        lambda example: tfrecord.serialize_image_example(*example), overwrite=overwrite)


def convert_idx(input_dir, output_dir, num_shards, overwrite=False):
    """Converts an MNIST-layout IDX directory (train-*, t10k-*) into TFRecord shards.

    Args:
      input_dir: directory with train-images-idx3-ubyte[.gz], ..., t10k-labels-idx1-ubyte[.gz].
      output_dir: where the shards go (created if missing).
      num_shards: shards per split (>= 1, at most the number of examples of each split).
      overwrite: replace existing shards instead of refusing.

    Returns:
      {'train': [paths], 'test': [paths]}; images are uint8 [28, 28, 1], labels 0-based.

    Raises:
      FileNotFoundError, ValueError: missing or malformed input (see pipelines.idx).
      FileExistsError: shards exist in `output_dir` and `overwrite` is False.
    """
    from pipelines import idx

    splits = {}
    for split in SPLITS:
        images, labels = idx.load_mnist_split(input_dir, split)
        splits[split] = (images[..., None], labels)
    return _write_splits(splits, os.fspath(output_dir), num_shards, overwrite)


def convert_cifar10_binary(input_dir, output_dir, num_shards, overwrite=False):
    """Converts the CIFAR-10 binary release into TFRecord shards.

    Args:
      input_dir: the `cifar-10-batches-bin` directory, or a directory containing it.
      output_dir, num_shards, overwrite: as in `convert_idx`.

    Returns:
      {'train': [paths], 'test': [paths]}; images are uint8 [32, 32, 3] HWC, labels 0..9.

    Raises:
      FileNotFoundError, ValueError: missing files, truncated files, label bytes > 9.
      FileExistsError: shards exist in `output_dir` and `overwrite` is False.
    """
    from pipelines import cifar10

    input_dir = os.fspath(input_dir)
    nested = os.path.join(input_dir, cifar10.BINARY_DIR_NAME)
    batches_dir = nested if os.path.isdir(nested) else input_dir
    splits = {split: cifar10.read_binary_split(batches_dir, split) for split in SPLITS}
    return _write_splits(splits, os.fspath(output_dir), num_shards, overwrite)


def define_flags(flag_values):
    """Defines this tool's flags (and their validators) in `flag_values`."""
    flags.DEFINE_enum("source", None, SOURCES, "Input format.", flag_values=flag_values)
    flags.DEFINE_string("input_dir", None,
                        "Input directory. For --source=idx --dataset=fashion_mnist it defaults to "
                        f"{DEBIAN_FASHION_MNIST_DIR} (Debian's dataset-fashion-mnist).",
                        flag_values=flag_values)
    flags.DEFINE_string("output_dir", None, "Directory for the TFRecord shards.",
                        flag_values=flag_values)
    flags.DEFINE_integer("num_shards", None, "Shards per split.", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_enum("dataset", None, IDX_DATASETS,
                      "Which IDX dataset (--source=idx only); only sets the default --input_dir "
                      "and the report.", flag_values=flag_values)
    flags.DEFINE_bool("overwrite", False, "Replace existing shards.", flag_values=flag_values)
    for name in ("source", "output_dir", "num_shards"):
        flags.mark_flag_as_required(name, flag_values=flag_values)
    flags.register_multi_flags_validator(
        ["source", "dataset"], lambda f: f["dataset"] is None or f["source"] == "idx",
        message="--dataset applies only to --source=idx.", flag_values=flag_values)
    flags.register_multi_flags_validator(
        ["source", "dataset", "input_dir"],
        lambda f: f["input_dir"] is not None or (
            f["source"] == "idx" and f["dataset"] == "fashion_mnist"),
        message="--input_dir is required (it has a default only for --source=idx "
        "--dataset=fashion_mnist).", flag_values=flag_values)


def run(flag_values):
    """Runs the conversion described by parsed `flag_values`.

    Returns:
      The exit status: 0, or 2 after writing a message to stderr.
    """
    input_dir = flag_values.input_dir
    if input_dir is None:
        input_dir = DEBIAN_FASHION_MNIST_DIR
    output_dir = flag_values.output_dir
    try:
        if not os.path.isdir(input_dir):
            raise FileNotFoundError(f"--input_dir {input_dir!r} does not exist.")
        _refuse_existing(output_dir, flag_values.overwrite)
        convert = convert_idx if flag_values.source == "idx" else convert_cifar10_binary
        paths = convert(input_dir, output_dir, flag_values.num_shards,
                        overwrite=flag_values.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        sys.stderr.write(f"convert: error: {e}\n")
        return EXIT_USAGE
    name = flag_values.dataset or flag_values.source
    for split, split_paths in paths.items():
        print(f"{name} {split}: {len(split_paths)} shard(s) written to {output_dir}")
    return 0


def _parse_flags_or_exit(argv):
    """absl flags parser exiting with status 2 (not absl's 1) on a bad command line."""
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        sys.stderr.write(f"convert: error: {e}\nPass --helpshort to see the flags.\n")
        sys.exit(EXIT_USAGE)
    if len(rest) > 1:
        sys.stderr.write(f"convert: error: unexpected arguments {rest[1:]}.\n")
        sys.exit(EXIT_USAGE)
    return rest


def exit_on_sigterm():
    """Makes SIGTERM end the process as SIGINT does: by an exception (SystemExit 143) raised in
    the main thread, so that the writers' cleanup removes their temporary files."""

    def handler(signum, frame):
        del frame
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv):
    del argv
    exit_on_sigterm()
    return run(flags.FLAGS)


if __name__ == "__main__":
    define_flags(flags.FLAGS)
    app.run(main, flags_parser=_parse_flags_or_exit)
