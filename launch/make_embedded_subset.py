"""Regenerates the embedded class-balanced Fashion-MNIST subset (pipelines/data/fashion_mnist_small).

One-off maintenance tool. From the repository root:

    apt-get install -y dataset-fashion-mnist
    python3 -m launch.make_embedded_subset \
        --source_dir /usr/share/datasets/fashion-mnist \
        --output_dir pipelines/data/fashion_mnist_small

Selection: for each class c in 0..9, the first `--train_per_class` (400) training examples with
label c and the first `--test_per_class` (100) test examples with label c; the selected examples
keep their original relative order (indices sorted ascending). Files are written as gzipped IDX
with gzip mtime 0, so reruns give byte-identical files. The sha256 values printed at the end must
be copied into the subset's README.md (tests/idx_test.py checks them).
"""

import argparse
import hashlib
import os
import sys

import numpy as np

from pipelines import idx

_SPLITS = (("train", "train"), ("test", "t10k"))


def select_balanced(labels, per_class, num_classes=idx.MNIST_NUM_CLASSES):
    """Returns ascending int64 indices of the first `per_class` examples of each class.

    Raises ValueError if a class has fewer than `per_class` examples.
    """
    chosen = []
    for c in range(num_classes):
        where = np.flatnonzero(labels == c)
        if where.size < per_class:
            raise ValueError(f"class {c} has only {where.size} examples, need {per_class}")
        chosen.append(where[:per_class])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def make_subset(source_dir, output_dir, train_per_class=400, test_per_class=100):
    """Writes the subset into `output_dir`; returns {file name: sha256 hex} of the written files."""
    os.makedirs(output_dir, exist_ok=True)
    per_class = {"train": train_per_class, "test": test_per_class}
    digests = {}
    for split, prefix in _SPLITS:
        images, labels = idx.load_mnist_split(source_dir, split)
        keep = select_balanced(labels, per_class[split])
        for kind, array in (("images-idx3", images[keep]), ("labels-idx1", labels[keep])):
            name = f"{prefix}-{kind}-ubyte.gz"
            path = os.path.join(output_dir, name)
            idx.write_idx(path, array, compress=True)
            with open(path, "rb") as f:
                digests[name] = hashlib.sha256(f.read()).hexdigest()
        # Read back through the strict loader as a sanity check.
        sub_images, sub_labels = idx.load_mnist_split(output_dir, split)
        np.testing.assert_array_equal(sub_images, images[keep])
        np.testing.assert_array_equal(sub_labels, labels[keep])
    return digests


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source_dir", default="/usr/share/datasets/fashion-mnist",
                        help="Directory with the full Fashion-MNIST IDX files.")
    parser.add_argument("--output_dir", default=idx.EMBEDDED_FASHION_MNIST_DIR,
                        help="Directory to write the subset into.")
    parser.add_argument("--train_per_class", type=int, default=400)
    parser.add_argument("--test_per_class", type=int, default=100)
    args = parser.parse_args(argv)
    digests = make_subset(args.source_dir, args.output_dir, args.train_per_class,
                          args.test_per_class)
    total = 0
    for name, digest in sorted(digests.items()):
        size = os.path.getsize(os.path.join(args.output_dir, name))
        total += size
        print(f"{digest}  {name}  ({size} bytes)")
    print(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
