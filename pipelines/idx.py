"""Strict reader and writer for IDX files (the MNIST / Fashion-MNIST file format).

An IDX file is a 4-byte magic number followed by one big-endian uint32 per dimension and then the
row-major payload:

    byte 0, 1   always 0
    byte 2      type code; only 0x08 (unsigned byte) is supported here
    byte 3      number of dimensions, D >= 1
    4 * D bytes the dimensions, big-endian uint32
    payload     prod(dims) bytes

Files may be gzip-compressed. Compression is detected from the gzip magic bytes (1f 8b), never from
the file name. Every malformed input (bad magic, truncated or over-long payload, corrupt gzip
stream, ...) raises a ValueError whose message names the file; a missing file raises
FileNotFoundError naming it.

`load_mnist_split` reads one split of an MNIST-layout directory, and `EMBEDDED_FASHION_MNIST_DIR`
points at the small class-balanced Fashion-MNIST subset shipped with this package (see
data/fashion_mnist_small/README.md).
"""

import gzip
import os
import struct
import zlib

import numpy as np

EMBEDDED_FASHION_MNIST_DIR = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "data", "fashion_mnist_small"
)

_GZIP_MAGIC = b"\x1f\x8b"
_UBYTE_TYPE_CODE = 0x08
_TYPE_CODE_NAMES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "short (int16)",
    0x0C: "int (int32)",
    0x0D: "float (float32)",
    0x0E: "double (float64)",
}

MNIST_IMAGE_SHAPE = (28, 28)
MNIST_NUM_CLASSES = 10
_SPLIT_PREFIXES = {"train": "train", "test": "t10k"}


def _read_payload(path):
    """Returns the decompressed bytes of `path` (gzip detected by magic bytes)."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"IDX file not found: {path!r}. Check the path, or point it at a directory holding "
            "the MNIST-layout files (e.g. the Debian package dataset-fashion-mnist installs them "
            "under /usr/share/datasets/fashion-mnist)."
        )
    if os.path.isdir(path):
        raise ValueError(f"IDX path {path!r} is a directory, not a file.")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError.
        raise ValueError(
            f"IDX file {path!r} starts with the gzip magic bytes but is not a valid gzip stream "
            f"(truncated or corrupt): {type(e).__name__}: {e}"
        ) from e


def _parse_idx(data, path):
    """Parses IDX bytes `data` (already decompressed) read from `path` into a uint8 array."""
    if len(data) < 4:
        raise ValueError(
            f"IDX file {path!r} is too short for an IDX header: {len(data)} bytes, need at least 4."
        )
    magic = data[:4]
    if magic[0] != 0 or magic[1] != 0:
        raise ValueError(
            f"IDX file {path!r} has a bad magic number 0x{magic.hex()}: the first two bytes must "
            "be zero (is this an IDX file?)."
        )
    type_code, ndim = magic[2], magic[3]
    if type_code != _UBYTE_TYPE_CODE:
        name = _TYPE_CODE_NAMES.get(type_code, "unknown type")
        raise ValueError(
            f"IDX file {path!r} has magic number 0x{magic.hex()} with type code 0x{type_code:02x} "
            f"({name}); only 0x08 (unsigned byte) is supported."
        )
    if ndim == 0:
        raise ValueError(
            f"IDX file {path!r} has magic number 0x{magic.hex()} declaring 0 dimensions; "
            "at least 1 is required."
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise ValueError(
            f"IDX file {path!r} is truncated inside its header: it declares {ndim} dimensions, "
            f"needing a {header_len}-byte header, but has only {len(data)} bytes."
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    expected = 1
    for d in dims:
        expected *= d
    actual = len(data) - header_len
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"IDX file {path!r} {kind}: dims {list(dims)} need a payload of {expected} bytes "
            f"after the {header_len}-byte header, but it has {actual} bytes."
        )
    array = np.frombuffer(data, dtype=np.uint8, count=expected, offset=header_len)
    return array.reshape(dims).copy()


def read_idx(path):
    """Reads an IDX file of unsigned bytes (raw or gzip-compressed).

    Args:
      path: str or os.PathLike, the file. Gzip compression is detected from the content.

    Returns:
      A writable np.ndarray of dtype uint8 whose shape is the dims in the header, e.g. [N, 28, 28]
      for an MNIST image file and [N] for a label file.

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: the file is not a valid uint8 IDX file (bad magic, unsupported type code, zero
        dims, truncated header, payload size != prod(dims), corrupt gzip). The message names
        the file.
    """
    path = os.fspath(path)
    return _parse_idx(_read_payload(path), path)


def write_idx(path, array, compress=None):
    """Writes a uint8 array as an IDX file (magic 0x000008<ndim>, big-endian uint32 dims).

    Args:
      path: str or os.PathLike, the file to write (overwritten if it exists).
      array: array-like of dtype uint8 with 1 to 255 dimensions, each < 2**32.
      compress: bool; gzip the file. Defaults to whether `path` ends with '.gz'. Compression is
        deterministic (level 9, mtime 0, no file name in the header), so equal arrays give
        byte-identical files.

    Raises:
      TypeError: `array` is not of dtype uint8.
      ValueError: `array` has 0 or more than 255 dimensions, or a dimension >= 2**32.
    """
    path = os.fspath(path)
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(
            f"write_idx({path!r}): array must have dtype uint8, got {array.dtype}; convert it "
            "explicitly (e.g. np.clip(x, 0, 255).astype(np.uint8))."
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(
            f"write_idx({path!r}): array must have 1 to 255 dimensions, got shape {array.shape}."
        )
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx({path!r}): dimension too large for IDX: {array.shape}.")
    if compress is None:
        compress = path.endswith(".gz")
    header = struct.pack(">BBBB", 0, 0, _UBYTE_TYPE_CODE, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array).tobytes()
    if compress:
        data = gzip.compress(data, compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        f.write(data)


def _find_split_file(directory, stem):
    """Returns the path of `stem`.gz or `stem` in `directory` (the .gz one if both exist)."""
    candidates = [os.path.join(directory, stem + ".gz"), os.path.join(directory, stem)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"Neither {candidates[0]!r} nor {candidates[1]!r} exists. The directory must hold "
        "MNIST-layout IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]); the Debian package "
        "dataset-fashion-mnist installs them under /usr/share/datasets/fashion-mnist, and "
        f"a small subset ships in {EMBEDDED_FASHION_MNIST_DIR!r}."
    )


def load_mnist_split(directory, split):
    """Loads one split of an MNIST-layout directory (MNIST, Fashion-MNIST, the embedded subset).

    Looks for `{prefix}-images-idx3-ubyte[.gz]` and `{prefix}-labels-idx1-ubyte[.gz]` with prefix
    'train' for split 'train' and 't10k' for split 'test'. If both the .gz and the raw file
    exist, the .gz one is read.

    Args:
      directory: str or os.PathLike, the directory holding the IDX files.
      split: 'train' or 'test'.

    Returns:
      (images, labels): images is a uint8 np.ndarray of shape [N, 28, 28] (pixel values 0..255),
      labels a uint8 np.ndarray of shape [N] with values in 0..9. N >= 1.

    Raises:
      FileNotFoundError: the directory or one of the two files is missing.
      ValueError: bad `split`, a malformed file (see read_idx), images not [N, 28, 28], labels not
        [N], image/label counts differing, no examples, or a label >= 10. Messages name the files.
    """
    if split not in _SPLIT_PREFIXES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_PREFIXES)}, got {split!r}.")
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"MNIST data directory not found: {directory!r}. Pass a directory holding the IDX "
            f"files, e.g. the embedded subset {EMBEDDED_FASHION_MNIST_DIR!r}."
        )
    prefix = _SPLIT_PREFIXES[split]
    images_path = _find_split_file(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_split_file(directory, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != MNIST_IMAGE_SHAPE:
        raise ValueError(
            f"Image file {images_path!r} has shape {list(images.shape)}; expected [N, 28, 28]."
        )
    if labels.ndim != 1:
        raise ValueError(f"Label file {labels_path!r} has shape {list(labels.shape)}; expected [N].")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Image/label count mismatch: {images_path!r} holds {images.shape[0]} images but "
            f"{labels_path!r} holds {labels.shape[0]} labels."
        )
    if labels.shape[0] == 0:
        raise ValueError(f"{images_path!r} and {labels_path!r} contain no examples.")
    bad = np.flatnonzero(labels >= MNIST_NUM_CLASSES)
    if bad.size:
        raise ValueError(
            f"Label file {labels_path!r} has {bad.size} label(s) outside 0..9; the first is "
            f"{int(labels[bad[0]])} at index {int(bad[0])}."
        )
    return images, labels
