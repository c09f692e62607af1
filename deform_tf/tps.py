"""The paper's random smooth deformation, on a fast path (Ruderman et al. 2018, Fig. 2).

An evenly spaced grid of control points (rows x cols, border included: `linspace(0, size - 1, n)`
per axis) is the *destination*; each grid point takes its value from a random *source* position,
the grid point plus a uniform offset in [-strength, strength] pixels per axis. The displacement
field is the thin-plate spline through the control displacements, located at the grid, and the
image is resampled bilinearly, clamping at the edges. This equals

    sparse_image_warp(image, grid + offsets, grid)

but, because the spline is always fitted at the same grid, the dense field is a fixed linear map
of the offsets. `tps_grid_operator` solves that map once per (height, width, grid) in float64 and
caches it; per image only a [2, K] x [K, H*W] matmul and the bilinear gather remain.
"""

import functools

import numpy as np
import tensorflow as tf

from deform_tf import checks
from deform_tf import dense_warp
from deform_tf import stateless_random


def grid_points(height, width, grid_size):
    """The control grid: [rows * cols, 2] float64 (y, x) pixel positions, row-major."""
    rows, cols = checks.check_grid_size(grid_size)
    ys = np.linspace(0.0, height - 1.0, rows)
    xs = np.linspace(0.0, width - 1.0, cols)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([grid_y.ravel(), grid_x.ravel()], axis=1)


def _thin_plate_kernel(squared_distance):
    """phi(r) = r^2 log r = 0.5 r^2 log r^2, with phi(0) = 0."""
    safe = np.where(squared_distance > 0, squared_distance, 1.0)
    return 0.5 * squared_distance * np.log(safe)


def _squared_distance(a, b):
    return np.sum(np.square(a[:, None, :] - b[None, :, :]), axis=-1)


@functools.lru_cache(maxsize=32)
def _cached_operator(height, width, rows, cols):
    centers = grid_points(height, width, (rows, cols))
    k = len(centers)
    affine = np.concatenate([centers, np.ones([k, 1])], axis=1)  # [K, 3]
    system = np.zeros([k + 3, k + 3])
    system[:k, :k] = _thin_plate_kernel(_squared_distance(centers, centers))
    system[:k, k:] = affine
    system[k:, :k] = affine.T
    # Column j: the spline coefficients (w; v) for a unit value at control point j.
    coefficients = np.linalg.solve(system, np.eye(k + 3)[:, :k])  # [K + 3, K]
    ys, xs = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                         indexing="ij")
    pixels = np.stack([ys.ravel(), xs.ravel()], axis=1)  # [H * W, 2]
    # Stored as a contiguous [K, H * W] array (the layout the fast path's matmul uses) and
    # returned as its [H * W, K] transposed view, so one cached array serves both.
    transposed = np.empty([k, height * width])
    for start in range(0, len(pixels), 65536):  # bounds the [chunk, K] temporaries
        chunk = pixels[start:start + 65536]
        basis = np.concatenate(
            [_thin_plate_kernel(_squared_distance(chunk, centers)), chunk,
             np.ones([len(chunk), 1])], axis=1)
        transposed[:, start:start + len(chunk)] = (basis @ coefficients).T
    transposed.setflags(write=False)
    return transposed.T


def tps_grid_operator(height, width, grid_size):
    """The linear map from control displacements to the dense thin-plate-spline field.

    Args:
      height, width: image size in pixels (ints >= 2).
      grid_size: int n (an n x n grid) or (rows, cols), each >= 2.

    Returns:
      Read-only float64 array M of shape [height * width, rows * cols]: for displacements u
      [K, 2] located at `grid_points(height, width, grid_size)`, the spline's value at pixel
      p = y * width + x is M[p] @ u. Rows sum to 1 (constants are reproduced exactly).
      Cached per (height, width, grid).
    """
    rows, cols = checks.check_grid_size(grid_size)
    height, width = int(height), int(width)
    if height < 2 or width < 2:
        raise ValueError(f"The image must be at least 2x2 pixels, got {height}x{width}.")
    return _cached_operator(height, width, rows, cols)


def _static_size(images):
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise ValueError(
            "The fast TPS path needs the image height and width at graph-build time, got "
            f"shape {images.shape.as_list()}. Resize or `ensure_shape` the images first, or use "
            "`sparse_image_warp`, which accepts unknown sizes."
        )
    return height, width


def tps_grid_flow(height, width, grid_size, source_offsets):
    """The dense flow of the paper's deformation for given source offsets.

    Args:
      height, width: image size in pixels.
      grid_size: int n or (rows, cols).
      source_offsets: [batch, rows * cols, 2] float (dy, dx) offsets in pixels of the source
        positions from the grid points (row-major, as `grid_points`).

    Returns:
      [batch, height, width, 2] flow in the dtype of `source_offsets`, in the
      `dense_image_warp` convention out[y, x] = image[(y, x) - flow[y, x]]. At a grid point g the
      flow is -offset, so the output there is the input at the source g + offset.
    """
    dy, dx = _grid_displacements(height, width, grid_size, source_offsets)
    return -tf.stack([dy, dx], axis=-1)


def _grid_displacements(height, width, grid_size, source_offsets):
    """The spline of the source offsets, M @ offsets, as (dy, dx) planes [batch, height, width].

    Computed as one [2 * batch, K] x [K, H * W] matmul with the operator stored transposed, so
    the result is already the contiguous planes (dy of every example, then dx).
    """
    # The transpose of the cached operator is a contiguous [K, H * W] view, not a copy.
    operator = tf.constant(tps_grid_operator(height, width, grid_size).T, source_offsets.dtype)
    num_points = operator.shape[0]
    batch = tf.shape(source_offsets)[0]
    rows = tf.reshape(tf.transpose(source_offsets, [2, 0, 1]), [-1, num_points])  # [2B, K]
    planes = tf.reshape(tf.matmul(rows, operator), [2, batch, height, width])
    return planes[0], planes[1]


def _warp_core(images, source_offsets, image_size, grid, return_flow=True, fill=("nearest", 0.0)):
    """Warped images (and flow); images and offsets already in one float compute dtype.

    `image_size` is the static (height, width, channels) (channels may be None), `grid` the
    (rows, cols) and `fill` the (fill_mode, fill_value) of `dense_warp.resample_bilinear`; as
    Python values they keep the shapes static in every trace (a
    `reduce_retracing` trace would otherwise relax a channel count that varied between calls).
    """
    height, width, channels = image_size
    images = tf.ensure_shape(images, [None, height, width, channels])
    dy, dx = _grid_displacements(height, width, grid, source_offsets)
    grid_y, grid_x = dense_warp.pixel_grid(height, width, images.dtype)
    # out[y, x] = image[(y, x) - flow] with flow = -(dy, dx).
    warped = dense_warp.resample_bilinear(images, grid_y + dy, grid_x + dx, *fill)
    return (warped, -tf.stack([dy, dx], axis=-1)) if return_flow else warped


def _random_warp_core(images, seed, seed_shape, strength, image_size, grid, return_flow=True,
                      fill=("nearest", 0.0)):
    """`_warp_core` with the offsets drawn from a checked seed (one compiled call in all).

    The seed's shape, [2] or [batch, 2], is static in every trace: it selects one stream for
    the batch or one per example (a `reduce_retracing` trace could relax it to unknown rank).
    """
    seed = tf.ensure_shape(seed, seed_shape)
    rows, cols = grid
    offsets = _uniform_offsets(tf.shape(images)[0], rows * cols, strength, seed, images.dtype)
    return _warp_core(images, offsets, image_size, grid, return_flow, fill)


# The per-pixel gathers dominate the cost; XLA fuses them with the interpolation arithmetic into
# one loop, several times faster than TF's graph kernels on CPU (bench/deformation.py).
# Retraced per image size, grid, dtype and `return_flow`; the batch size (and the strength, a
# tensor) may vary.
_warp_core_xla = tf.function(_warp_core, jit_compile=True, reduce_retracing=True)
_random_warp_core_xla = tf.function(_random_warp_core, jit_compile=True, reduce_retracing=True)


def _check_images(images):
    """Converts and checks images; returns (images, (height, width, channels))."""
    images = tf.convert_to_tensor(images, name="images")
    checks.check_rank(images, 4, "images", "[batch, height, width, channels]")
    checks.check_image_dtype(images, "images")
    return images, _static_size(images) + (images.shape[3],)


def _finish(result, images, return_flow):
    """Casts the core's result to the output dtype and restores the static shapes."""
    warped = result[0] if return_flow else result
    warped = tf.ensure_shape(tf.cast(warped, dense_warp.output_dtype(images.dtype)), images.shape)
    if not return_flow:
        return warped
    return warped, tf.ensure_shape(result[1], images.shape[:3].concatenate([2]))


def tps_grid_warp(images, source_offsets, grid_size, jit_compile=True, return_flow=True,
                  fill_mode="nearest", fill_value=0.0):
    """Applies the paper's deformation with given source offsets (deterministic).

    Args:
      images: [batch, height, width, channels] images with static height and width (>= 2),
        float or integer (integer images come back as float32, not rounded).
      source_offsets: [batch, rows * cols, 2] (dy, dx) offsets in pixels of each grid point's
        source position (row-major grid order).
      grid_size: int n or (rows, cols).
      jit_compile: compute with XLA (the default, much faster on CPU; results agree with the
        uncompiled ops to float rounding, ~1e-6).
      return_flow: also compute and return the flow (skipping it saves a pass over memory).
      fill_mode, fill_value: the image beyond its border, as `dense_image_warp`'s ("nearest",
        the edge pixel, by default; "constant" with `fill_value`; "reflect").

    Returns:
      (warped, flow): the warped images and the [batch, height, width, 2] flow in the compute
      dtype (float64 for float64 inputs, else float32); only `warped` if not `return_flow`.
    """
    images, image_size = _check_images(images)
    rows, cols = checks.check_grid_size(grid_size)
    fill = dense_warp.check_fill_mode(fill_mode, fill_value)
    source_offsets = tf.convert_to_tensor(source_offsets, name="source_offsets")
    checks.check_rank(source_offsets, 3, "source_offsets", "[batch, rows * cols, 2]")
    checks.check_float(source_offsets, "source_offsets")
    checks.check_last_dim(source_offsets, 2, "source_offsets", "(dy, dx) in pixels")
    if source_offsets.shape[1] not in (None, rows * cols):
        raise ValueError(
            f"`source_offsets` must have rows * cols = {rows * cols} points for grid_size "
            f"{grid_size!r}, got shape {source_offsets.shape.as_list()}."
        )
    compute_images, dtype = dense_warp.to_compute_dtype(images, source_offsets)
    core = _warp_core_xla if jit_compile else _warp_core
    result = core(compute_images, tf.cast(source_offsets, dtype), image_size, (rows, cols),
                  return_flow, fill)
    return _finish(result, images, return_flow)


def _uniform_offsets(batch_size, num_points, strength, seed, dtype):
    unit = stateless_random.uniform([batch_size, num_points, 2], seed, dtype)
    # 2u - 1 is exact for 24-bit u, so strength 0 gives offsets of exactly 0.
    return tf.cast(strength, dtype) * (2.0 * unit - 1.0)


def random_source_offsets(batch_size, num_points, strength, seed, dtype=tf.float32):
    """Uniform source offsets in [-strength, strength) px: [batch, num_points, 2] (dy, dx).

    `strength` is a number or scalar tensor (>= 0 px), or a [batch, 1, 1] tensor of one strength
    per example.

    `seed` is a stateless seed: an integer tensor of shape [2] for the whole batch, or
    [batch, 2] for one seed per example (then each example's offsets depend only on its own seed,
    so a batch can be split across devices or hosts without changing any deformation). The
    numbers come from `deform_tf.stateless_random`, identical in eager, graph, tf.data and XLA.
    """
    seed = checks.check_stateless_seed(seed, batch_size)
    return _uniform_offsets(batch_size, num_points, strength, seed, dtype)


def random_tps_deformation(images, grid_size, strength, seed, return_flow=False,
                           jit_compile=True, fill_mode="nearest", fill_value=0.0):
    """Applies an independent random TPS deformation to each image (the paper's Fig. 2).

    Equal to `tps_grid_warp(images, random_source_offsets(batch, rows * cols, strength, seed),
    grid_size)`, computed in one compiled call when `jit_compile`.

    Args:
      images: [batch, height, width, channels] images with static height and width (>= 2),
        float or integer; the batch size may be unknown.
      grid_size: int n (n x n control grid, border included) or (rows, cols), each >= 2.
        Paper: 5 for ImageNet 224 px, 3 for CIFAR-10 32 px.
      strength: C >= 0, the maximal source offset per axis in pixels (paper: 10 for ImageNet,
        2 for CIFAR-10). A Python number or a scalar tensor.
      seed: stateless seed, int tensor of shape [2] (one draw for the batch) or [batch, 2] (one
        per example). Same seed, same random offsets (bit for bit) on any device and under XLA;
        the warped pixels then agree to float32 rounding (~1e-6) whatever the batch size.
      return_flow: also return the [batch, height, width, 2] flow.
      jit_compile: warp with XLA (default; see `tps_grid_warp`).
      fill_mode, fill_value: the image beyond its border (see `tps_grid_warp`); the default
        "nearest" is the paper's edge clamping.

    Returns:
      The deformed images (float images keep their dtype, integer images come back as float32),
      or (images, flow) if `return_flow`.
    """
    images, image_size = _check_images(images)
    grid = checks.check_grid_size(grid_size)
    fill = dense_warp.check_fill_mode(fill_mode, fill_value)
    strength = checks.check_strength(strength)
    seed = checks.check_stateless_seed(seed, checks.batch_size_of(images))
    compute_images, dtype = dense_warp.to_compute_dtype(images)
    core = _random_warp_core_xla if jit_compile else _random_warp_core
    seed_shape = (2,) if seed.shape.rank == 1 else (None, 2)
    result = core(compute_images, seed, seed_shape, tf.convert_to_tensor(strength, dtype),
                  image_size, grid, return_flow, fill)
    return _finish(result, images, return_flow)
