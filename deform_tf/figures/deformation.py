"""The paper's pictures of a random smooth deformation (Ruderman et al. 2018, Fig. 1 and Fig. 2).

Fig. 2 explains how a deformed image is made: (a) an evenly spaced grid of control points, each
taking its value from a random source position within [-C, C] pixels per axis; (b) the
thin-plate-spline interpolation of those displacements into a dense vector field; (c) that field
over the original image (the value at each arrow's tip in the result is the bilinear sample of the
original at the arrow's tail); (d) the result. Fig. 1 shows originals beside deformed copies.

`deformation_panels` computes everything with the library itself (`random_source_offsets` and
`tps_grid_warp`), so the figure shows exactly what the training pipelines do. Conventions are the
library's: points are (y, x) in pixels, y downward; a flow means
`deformed[y, x] = image[y - flow_y, x - flow_x]`.
"""

import dataclasses
import math

from matplotlib import lines
from matplotlib import patches
import numpy as np
import tensorflow as tf

from deform_tf import checks
from deform_tf import tps
from deform_tf.figures import canvas

# Colours of the construction figure (colour-blind safe Okabe-Ito hues).
GRID_COLOR = "black"
SOURCE_COLOR = "#D55E00"  # vermillion
FIELD_COLOR = "#0072B2"  # blue, on the white panels
OVERLAY_COLOR = "#FFB000"  # amber, over photos and dark digits
NEIGHBOURHOOD_COLOR = "0.6"


@dataclasses.dataclass(frozen=True)
class DeformationPanels:
    """What the Fig. 2 panels show, as numpy arrays (all positions (y, x) in pixels).

    Attributes:
      grid_points: [K, 2] float64, the control grid (row-major, border included).
      source_points: [K, 2] float64, grid_points + offsets: where each grid point's value comes
        from (the pixel at a source lands on its grid point).
      flow: [H, W, 2] float32 dense flow, deformed[p] = image[p - flow[p]]; at a grid point g the
        flow is g - source.
      deformed: [H, W, C] float32 deformed image, in the value range of the input image (e.g.
        0..255 for a uint8 input; not rounded).
      grid_size: (rows, cols) of the control grid.
      strength: C, the maximal source offset per axis in pixels.
      seed: the stateless seed pair used to draw the offsets.
    """

    grid_points: np.ndarray
    source_points: np.ndarray
    flow: np.ndarray
    deformed: np.ndarray
    grid_size: tuple
    strength: float
    seed: tuple


def _as_hwc(image, name="image"):
    """Returns `image` as a [H, W, C] numpy array (a [H, W] image gets C = 1)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(
            f"`{name}` must be [H, W], [H, W, 1] (grayscale) or [H, W, 3] (RGB), got shape "
            f"{list(image.shape)}."
        )
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise ValueError(f"`{name}` must be an integer or float image, got dtype {image.dtype}.")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"`{name}` must be at least 2x2 pixels, got shape {list(image.shape)}.")
    return image


def _seed_pair(seed):
    """An int or a pair of ints -> the (int, int) stateless seed."""
    if isinstance(seed, (int, np.integer)):
        return int(seed), 0
    try:
        first, second = (int(s) for s in seed)
    except (TypeError, ValueError):
        raise ValueError(f"`seed` must be an int or a pair of ints, got {seed!r}.") from None
    return first, second


def deformation_panels(image, grid_size, strength, seed):
    """Draws one random deformation of `image` with the library and returns what Fig. 2 shows.

    Args:
      image: [H, W], [H, W, 1] or [H, W, 3] array, uint8 (0..255) or float (0..1 or 0..255);
        H, W >= 2.
      grid_size: int n (n x n control grid) or (rows, cols), each >= 2. The paper's Fig. 2 uses 4.
      strength: C >= 0 pixels, the maximal source offset per axis.
      seed: int or pair of ints, the stateless seed of `random_source_offsets` (an int s means
        (s, 0)). Same seed, same deformation.

    Returns:
      A `DeformationPanels`; `deformed` is exactly `tps_grid_warp(image[None], offsets,
      grid_size)[0]` with the image cast to float32.
    """
    image = _as_hwc(image)
    rows, cols = checks.check_grid_size(grid_size)
    strength = checks.check_strength(float(strength))
    seed = _seed_pair(seed)
    height, width = image.shape[:2]
    grid = tps.grid_points(height, width, (rows, cols))
    offsets = tps.random_source_offsets(
        1, rows * cols, strength, tf.constant(seed, tf.int64), dtype=tf.float32)
    deformed, flow = tps.tps_grid_warp(
        tf.constant(image[None], tf.float32), offsets, (rows, cols))
    return DeformationPanels(
        grid_points=grid,
        source_points=grid + offsets.numpy()[0].astype(np.float64),
        flow=flow.numpy()[0],
        deformed=deformed.numpy()[0],
        grid_size=(rows, cols),
        strength=strength,
        seed=seed,
    )


def _value_scale(image):
    """255 for integer images and floats beyond 1 (a 0..255 float image), else 1."""
    if np.issubdtype(image.dtype, np.integer):
        return 255.0
    return 255.0 if float(np.nanmax(image)) > 1.0 + 1e-6 else 1.0


def _show(ax, image, scale):
    """imshow of a [H, W, C] image in value range [0, scale], pixel centres at integer (x, y)."""
    shown = np.clip(np.asarray(image, np.float64) / scale, 0.0, 1.0)
    if shown.shape[-1] == 1:
        ax.imshow(shown[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(shown, interpolation="nearest")


def _lattice(size, count):
    """About `count` evenly spaced integer pixel positions in [0, size - 1], ends included."""
    return np.unique(np.round(np.linspace(0, size - 1, min(count, size))).astype(int))


def _auto_offset_zoom(height, width, rows, cols, reach):
    """Largest integer zoom keeping a zoomed [-reach, reach] square under 45% of the spacing."""
    if reach <= 0:
        return 1.0
    spacing = min((height - 1) / (rows - 1), (width - 1) / (cols - 1))
    return float(max(1, math.floor(0.45 * spacing / reach)))


def _image_frame(ax, height, width):
    ax.add_patch(patches.Rectangle(
        (-0.5, -0.5), width, height, fill=False, edgecolor="0.3", linewidth=0.8, zorder=1))


def _quiver(ax, tail_y, tail_x, d_y, d_x, color, width, zorder=3):
    """Arrows from (tail_y, tail_x) by (d_y, d_x), drawn at true length in pixel units."""
    return ax.quiver(
        tail_x, tail_y, d_x, d_y, color=color, angles="xy", scale_units="xy", scale=1.0,
        width=width, headwidth=4.0, headlength=4.5, headaxislength=4.0, minlength=0.5,
        zorder=zorder)


def plot_deformation_construction(panels, image, arrows_per_axis=12, offset_zoom=None):
    """The paper's Fig. 2: how a random smooth deformation is built, in four panels.

    (a) the control grid (black dots), each grid point's random source (vermillion) inside its
        [-C, C]^2 neighbourhood (dashed square), and an arrow from the source to the grid point:
        the pixel at the source lands on the grid point;
    (b) the thin-plate interpolation: the dense field on a subsampled pixel lattice, each arrow
        from where a pixel is sampled (p - flow) to where it lands (p);
    (c) the same field over the original image;
    (d) the deformed image.
    The arrows of (b) and (c) are drawn at true length (pixels). In (a) the offsets (and the
    neighbourhood squares) may be magnified about each grid point by `offset_zoom`, stated in its
    title, because at realistic strengths (C = 10 px on 224 px) they are a few points long. Axes
    are pixels with y downward, as `imshow`; (b)-(d) share the same limits (the image plus a
    margin so arrow tails outside the image stay visible).

    Args:
      panels: a `DeformationPanels` from `deformation_panels(image, ...)`.
      image: the original image given to `deformation_panels`.
      arrows_per_axis: size of the lattice of (b) and (c) per axis (at most one per pixel).
      offset_zoom: magnification of the offsets in (a), a number >= 1. Default: the largest
        integer that keeps the magnified neighbourhoods under ~45% of the grid spacing (1, i.e.
        true scale, whenever C is already that large).

    Returns:
      A `matplotlib.figure.Figure` with 4 axes.
    """
    image = _as_hwc(image)
    height, width = image.shape[:2]
    if panels.flow.shape[:2] != (height, width):
        raise ValueError(
            f"`panels` were computed for a {panels.flow.shape[0]}x{panels.flow.shape[1]} image, "
            f"but `image` is {height}x{width}."
        )
    scale = _value_scale(image)
    rows, cols = panels.grid_size
    strength = panels.strength
    grid, source = panels.grid_points, panels.source_points

    aspect = width / height
    figure = canvas.new_figure((4 * 2.9 * max(aspect, 0.6), 2.9 + 0.95))
    axes = figure.subplots(1, 4)
    max_offset = float(np.max(np.abs(source - grid), initial=0.0))
    if offset_zoom is None:
        offset_zoom = _auto_offset_zoom(height, width, rows, cols, max(strength, max_offset))
    offset_zoom = float(offset_zoom)
    if not (math.isfinite(offset_zoom) and offset_zoom >= 1):
        raise ValueError(f"`offset_zoom` must be a number >= 1, got {offset_zoom!r}.")
    shown_source = grid + offset_zoom * (source - grid)
    margin_a = offset_zoom * max(strength, max_offset) + 0.5
    flow_max = float(np.max(np.abs(panels.flow), initial=0.0))
    margin = max(strength, max_offset, flow_max) + 0.5
    ys, xs = _lattice(height, arrows_per_axis), _lattice(width, arrows_per_axis)
    lat_y, lat_x = np.meshgrid(ys, xs, indexing="ij")
    lat_flow = panels.flow[lat_y, lat_x].astype(np.float64)
    # Arrow shafts: thin enough for the lattice, as a fraction of the axes width.
    shaft = 0.0055

    ax_a, ax_b, ax_c, ax_d = axes
    # (a) Control grid, neighbourhoods, sources and arrows source -> grid point.
    _image_frame(ax_a, height, width)
    zoomed = offset_zoom * strength
    if strength > 0:
        for gy, gx in grid:
            ax_a.add_patch(patches.Rectangle(
                (gx - zoomed, gy - zoomed), 2 * zoomed, 2 * zoomed, fill=False,
                edgecolor=NEIGHBOURHOOD_COLOR, linestyle=(0, (2, 2)), linewidth=0.7, zorder=1))
    for (sy, sx), (gy, gx) in zip(shown_source, grid):
        # Fixed-size heads (in points) that stop at the grid dot, so even short arrows show.
        ax_a.add_patch(patches.FancyArrowPatch(
            (sx, sy), (gx, gy), arrowstyle="-|>", mutation_scale=8, shrinkA=0, shrinkB=2.2,
            color=SOURCE_COLOR, linewidth=1.1, zorder=3))
    ax_a.scatter(shown_source[:, 1], shown_source[:, 0], s=8, color=SOURCE_COLOR, zorder=4)
    ax_a.scatter(grid[:, 1], grid[:, 0], s=12, color=GRID_COLOR, zorder=5)

    # (b) and (c) Dense field: arrows from p - flow (sampled) to p (lands).
    def field(ax, color):
        _quiver(ax, lat_y - lat_flow[..., 0], lat_x - lat_flow[..., 1], lat_flow[..., 0],
                lat_flow[..., 1], color, width=shaft)
        ax.scatter(grid[:, 1], grid[:, 0], s=14, color=GRID_COLOR, edgecolors="white",
                   linewidths=0.6, zorder=5)

    _image_frame(ax_b, height, width)
    field(ax_b, FIELD_COLOR)
    _show(ax_c, image, scale)
    field(ax_c, OVERLAY_COLOR)
    # (d) The result.
    _show(ax_d, panels.deformed, scale)

    zoom_text = f" (offsets \u00d7{offset_zoom:g})" if offset_zoom != 1 else ""
    titles = (
        "(a) control grid, random sources" + zoom_text,
        "(b) thin-plate interpolation",
        "(c) field over the original",
        "(d) deformed result",
    )
    for ax, title, pad in zip(axes, titles, (margin_a, margin, margin, margin)):
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlim(-0.5 - pad, width - 0.5 + pad)
        ax.set_ylim(height - 0.5 + pad, -0.5 - pad)  # y downward, as imshow
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7, length=2)
        ax.set_xlabel("x (px)", fontsize=7, labelpad=1)
    ax_a.set_ylabel("y (px)", fontsize=7, labelpad=1)
    handles = [
        lines.Line2D([], [], linestyle="none", marker="o", markersize=4.5, color=GRID_COLOR,
                     label="grid point (destination)"),
        lines.Line2D([], [], linestyle="none", marker="o", markersize=3, color=SOURCE_COLOR,
                     label="its random source"),
        patches.Patch(fill=False, edgecolor=NEIGHBOURHOOD_COLOR, linestyle=(0, (2, 2)),
                      label="neighbourhood [\u2212C, C]\u00b2" + zoom_text),
        lines.Line2D([], [], color=FIELD_COLOR, linewidth=1.5,
                     label="dense field: sampled at tail (p \u2212 flow), lands at tip (p)"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=7,
                  frameon=False, handlelength=1.5, columnspacing=1.5)
    grid_text = f"{rows}\u00d7{cols}" if rows != cols else f"{rows}\u00d7{rows}"
    figure.suptitle(
        f"Random smooth deformation of a {height}\u00d7{width} image: {grid_text} control grid, "
        f"strength C = {strength:g} px (sources uniform in [\u2212C, C] per axis)",
        fontsize=10)
    return figure


def plot_examples(images, deformed, titles=None, pairs_per_row=None, suptitle=None):
    """The paper's Fig. 1: originals beside their deformed copies, in rows of pairs.

    Args:
      images: sequence of N original images, each [H, W], [H, W, 1] or [H, W, 3], uint8 or float
        (sizes may differ between pairs).
      deformed: sequence of N deformed images, each the same size as its original and in the same
        value range (e.g. `DeformationPanels.deformed`).
      titles: optional N strings, shown over each original (default "original").
      pairs_per_row: pairs per row (default: 2 if N > 3, else N).
      suptitle: optional figure title.

    Returns:
      A `matplotlib.figure.Figure` with 2 * rows * pairs_per_row axes (unused ones hidden).
    """
    images = [_as_hwc(x, "images[%d]" % i) for i, x in enumerate(images)]
    deformed = [_as_hwc(x, "deformed[%d]" % i) for i, x in enumerate(deformed)]
    count = len(images)
    if count == 0 or len(deformed) != count:
        raise ValueError(
            f"Need at least one pair and as many deformed images as originals, got {count} "
            f"originals and {len(deformed)} deformed.")
    for i, (a, b) in enumerate(zip(images, deformed)):
        if a.shape[:2] != b.shape[:2]:
            raise ValueError(f"Pair {i}: original {list(a.shape)} and deformed {list(b.shape)} "
                             "differ in size.")
    if titles is not None and len(titles) != count:
        raise ValueError(f"Got {len(titles)} titles for {count} pairs.")
    if pairs_per_row is None:
        pairs_per_row = 2 if count > 3 else count
    pairs_per_row = max(1, min(int(pairs_per_row), count))
    num_rows = math.ceil(count / pairs_per_row)

    # Each pair is two adjacent columns; a narrow empty column separates neighbouring pairs.
    spacer = 0.12
    widths = [1.0, 1.0] + [spacer, 1.0, 1.0] * (pairs_per_row - 1)
    figure = canvas.new_figure(
        (1.9 * (2 * pairs_per_row + spacer * (pairs_per_row - 1)),
         num_rows * 2.05 + (0.45 if suptitle else 0.2)))
    layout = figure.add_gridspec(num_rows, len(widths), width_ratios=widths)
    axes = np.empty([num_rows, 2 * pairs_per_row], dtype=object)
    for row in range(num_rows):
        for column in range(2 * pairs_per_row):
            pair, side = divmod(column, 2)
            axes[row, column] = figure.add_subplot(layout[row, 3 * pair + side])
            axes[row, column].set_axis_off()
    for i, (original, warped) in enumerate(zip(images, deformed)):
        row, pair = divmod(i, pairs_per_row)
        ax_o, ax_d = axes[row, 2 * pair], axes[row, 2 * pair + 1]
        scale = _value_scale(original)
        _show(ax_o, original, scale)
        _show(ax_d, warped, scale)
        ax_o.set_title(titles[i] if titles is not None else "original", fontsize=8)
        ax_d.set_title("deformed", fontsize=8)
    if suptitle:
        figure.suptitle(suptitle, fontsize=10)
    return figure
