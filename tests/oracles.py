"""Independent numeric oracles (scipy) for the deformation ops' tests."""

import numpy as np
from scipy import interpolate
from scipy import ndimage


def scipy_dense_warp(image, flow):
    """Oracle: out[b, y, x] = image[b, y - flow_y, x - flow_x], bilinear, edges replicated."""
    batch, height, width, channels = image.shape
    grid_y, grid_x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    out = np.empty(image.shape, np.float64)
    for b in range(batch):
        coords = np.stack([grid_y - flow[b, ..., 0], grid_x - flow[b, ..., 1]])
        for c in range(channels):
            out[b, ..., c] = ndimage.map_coordinates(
                image[b, ..., c].astype(np.float64), coords, order=1, mode="nearest")
    return out


def scipy_tps(points, values, queries):
    """Oracle: scipy's thin-plate spline (phi = r^2 log r, affine tail), exact interpolation."""
    return interpolate.RBFInterpolator(
        points, values, kernel="thin_plate_spline", degree=1, smoothing=0.0)(queries)


def scipy_sparse_warp(image, source, dest, boundary=None):
    """Oracle: TPS of dest - source at dest (scipy), then bilinear warp (scipy)."""
    batch, height, width, _ = image.shape
    grid_y, grid_x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    pixels = np.stack([grid_y.ravel(), grid_x.ravel()], axis=1).astype(np.float64)
    flows = np.empty((batch, height, width, 2))
    for b in range(batch):
        points, values = dest[b].astype(np.float64), (dest[b] - source[b]).astype(np.float64)
        if boundary is not None:
            points = np.concatenate([points, boundary])
            values = np.concatenate([values, np.zeros_like(boundary)])
        flows[b] = scipy_tps(points, values, pixels).reshape(height, width, 2)
    return scipy_dense_warp(image, flows), flows
