"""The paper's result figures (Ruderman et al. 2018, Fig. 3-7) and two extra views.

Every function takes the study's results (`experiments.study.results.StudyResults`, e.g.
`StudyResults.from_json` of a results.json) and returns a `matplotlib.figure.Figure` built on
the Agg canvas (no `pyplot`, no `show`, no printing). Any group of the results may be absent
(not run): the figures that need it raise a `ValueError` naming it, the others still work.

Conventions (the paper's): x = layer index (0 = the input image; then every conv unit and every
downsampling layer), optionally with the layer names as small rotated tick labels; y = the
normalized sensitivity or the normalized smoothness TV(W) / sum|W| (docs/method.md; lower =
smoother); one line per condition = the mean over seeds, with a shaded band of +-2 standard
deviations over seeds (drawn only with 2 or more seeds). Smoothness figures show the mean
smoothness at initialization as a black dashed line ("init mean"). Each downsampling variant has
one colour and marker in every figure: pooled variants (max/avg pooling) in warm colours,
non-pooled ones (subsampling, strided convs) in cool colours, so the paper's finding 1 (pooling
lowers sensitivity at init, docs/method.md#findings) shows at once. Missing conditions (a variant, a
sigma, a strength) are skipped; mapping keys of sigma/C are matched numerically ("1" == "1.0").
"""

import os
import re

import matplotlib
import matplotlib.colors
from matplotlib import lines as mlines
from matplotlib.backends.backend_agg import FigureCanvasAgg
import numpy as np

from deform_tf import sensitivity
from deform_tf.figures import canvas
from experiments.study import grid as grid_lib

# Downsampling variants in legend order: pooled (warm) first, then non-pooled (cool).
VARIANT_ORDER = grid_lib.POOLED + grid_lib.NOT_POOLED
VARIANT_COLORS = {
    "max_pool": "#D55E00",      # vermillion (warm)
    "avg_pool": "#E69F00",      # orange (warm)
    "subsample": "#0072B2",     # blue (cool)
    "strided": "#009E73",       # bluish green (cool)
    "strided_relu": "#6A3D9A",  # purple (cool)
}
VARIANT_MARKERS = {
    "max_pool": "o", "avg_pool": "s", "subsample": "v", "strided": "^", "strided_relu": "D"}
VARIANT_LABELS = {
    "max_pool": "max pool",
    "avg_pool": "avg pool",
    "subsample": "subsample",
    "strided": "strided conv",
    "strided_relu": "strided conv+BN+ReLU",
}
# Variants not in VARIANT_ORDER (e.g. added later) get these neutral colours in turn.
_EXTRA_COLORS = ("#555555", "#999933", "#882255", "#44AA99")

INIT_MEAN_STYLE = dict(color="black", linestyle=(0, (5, 3)), linewidth=1.1)
BAND_ALPHA = 0.18
DPI = 120

_DISTANCE_LABELS = {"cosine": "cosine", "euclidean": "Euclidean"}
_SMOOTHNESS_LABEL = "normalized smoothness\nTV(W) / \u03a3|W|  (lower = smoother)"


# ---------------------------------------------------------------------------------------------
# Numbers.

def mean_and_band(values, log=False):
    """Mean over seeds and the +-2 std band: the paper's error bands.

    Args:
      values: array-like [seeds, ...] (e.g. [seeds, layers]); reduced over axis 0.
      log: if True, the statistics are taken on log(values) and exponentiated back (geometric
        mean, multiplicative band mean * exp(+-2 std of log)), which is what a log-scale axis
        shows; values must then be positive (non-positive ones become NaN).

    Returns:
      (mean, lower, upper), float64 arrays of shape values.shape[1:]; lower/upper = mean -+ 2 *
      std. The std is the sample std (ddof=1) over seeds when there are 2 or more seeds; with a
      single seed there is no spread to estimate and lower = upper = mean. NaNs propagate.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 1 or values.shape[0] == 0:
        raise ValueError(f"`values` must be [seeds, ...] with at least one seed, got shape "
                         f"{list(values.shape)}.")
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.log(np.where(values > 0, values, np.nan))
    mean = values.mean(axis=0)
    std = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.zeros_like(mean)
    lower, upper = mean - 2.0 * std, mean + 2.0 * std
    if log:
        return np.exp(mean), np.exp(lower), np.exp(upper)
    return mean, lower, upper


# ---------------------------------------------------------------------------------------------
# Access to the results.

def _training_group(results, group, figure_name):
    """results.training[group], a non-empty {variant: ConditionCurves}, or a ValueError."""
    variants = results.training.get(group)
    if not variants:
        what = {"real": "training on the real labels",
                "random": "training on random labels"}[group]
        raise ValueError(
            f"{figure_name} needs the group results.training['{group}'] ({what}), which is "
            "missing or empty in the results.")
    return variants


def _sweep(sweep, name, figure_name, what):
    """The sweep `results.<name>`, or a ValueError naming it when it was not run."""
    if sweep is None:
        raise ValueError(f"{figure_name} needs the group results.{name} ({what}), which is "
                         "missing in the results.")
    return sweep


def _ordered_variants(variants):
    """Variant names of a training group in legend order (known ones first)."""
    known = [v for v in VARIANT_ORDER if v in variants]
    return known + sorted(v for v in variants if v not in VARIANT_ORDER)


def variant_style(variant, index=0):
    """(color, marker, label) of a downsampling variant, the same in every figure."""
    if variant in VARIANT_COLORS:
        return VARIANT_COLORS[variant], VARIANT_MARKERS[variant], VARIANT_LABELS[variant]
    return _EXTRA_COLORS[index % len(_EXTRA_COLORS)], "x", variant


def _per_seed(values):
    """Nested lists [seed][...] -> a float64 array with a leading seed axis, None when empty."""
    if values is None:
        return None
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("Results arrays must be rectangular (same length for every seed); got "
                         "ragged lists.") from None
    if array.size == 0:
        return None
    return array


def _numeric_keys(mapping, order=None):
    """[(number, key)] of a mapping keyed by numbers as strings, ascending by number; with
    `order` (numbers), only the keys whose number it lists."""
    by_value = {}
    for key in mapping or {}:
        try:
            by_value[float(key)] = key
        except (TypeError, ValueError):
            continue
    if order is not None:
        wanted = {float(value) for value in order}
        by_value = {value: key for value, key in by_value.items() if value in wanted}
    return sorted(by_value.items())


def _condition_mean(by_condition, value):
    """Mean of the values of the condition numbered `value` (a sigma or C) in a mapping keyed by
    numbers as strings, or None when the condition is absent or has no values."""
    keys = dict(_numeric_keys(by_condition))
    values = _per_seed(by_condition[keys[value]]) if value in keys else None
    return None if values is None else float(np.mean(values))


_SHORT_NAMES = (
    (re.compile(r"^block(\d+)_(?:relu|conv)(\d+)$"), r"conv\1_\2"),
    (re.compile(r"^block(\d+)_down(?:_relu)?$"), r"down\1"),
)


def short_layer_name(name):
    """'block2_relu1' / 'block2_conv1' -> 'conv2_1', 'block3_down[_relu]' -> 'down3'."""
    for pattern, replacement in _SHORT_NAMES:
        if pattern.match(name):
            return pattern.sub(replacement, name)
    return name


def _number(value):
    return f"{float(value):g}"


# ---------------------------------------------------------------------------------------------
# Drawing helpers.

def _suptitle(figure, results, extra=None):
    parts = [p for p in (extra, results.title) if p]
    if parts:
        figure.suptitle("\n".join(parts), fontsize=9.5)


def _plot_condition(ax, x, values, color, label, marker=None, log=False, band=True,
                    linewidth=1.5, zorder=3):
    """Mean line (+ band with >= 2 seeds) of values [seeds, points]; returns the Line2D."""
    mean, lower, upper = mean_and_band(values, log=log)
    (line,) = ax.plot(x, mean, color=color, marker=marker, markersize=3.5, linewidth=linewidth,
                      label=label, zorder=zorder)
    if band and values.shape[0] > 1:
        ax.fill_between(x, lower, upper, color=color, alpha=BAND_ALPHA, linewidth=0,
                        zorder=zorder - 1)
    return line


def _layer_axis(ax, names, first_index=0, layer_names=True, xlabel="layer (0 = input image)"):
    """Ticks at every layer index; with `layer_names`, 'name · index' rotated, else the index."""
    ticks = np.arange(first_index, first_index + len(names))
    ax.set_xticks(ticks)
    if layer_names:
        ax.set_xticklabels([f"{short_layer_name(n)} \u00b7 {k}" for k, n in zip(ticks, names)],
                           rotation=90, fontsize=6.5)
    else:
        ax.set_xticklabels([str(k) for k in ticks], fontsize=7.5)
    ax.set_xlim(ticks[0] - 0.4, ticks[-1] + 0.4)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(axis="y", labelsize=7.5)
    ax.tick_params(length=2.5)
    ax.grid(True, axis="y", color="0.9", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _zero_based(ax):
    """y from 0 to the autoscaled top, once every (shared) panel is drawn."""
    ax.relim()
    ax.autoscale(axis="y")
    ax.set_ylim(bottom=0)


def _panel_title(ax, text):
    ax.set_title(text, fontsize=9, loc="left")


def _figure_legend(figure, handles, ncols=None, title=None):
    if not handles:
        return
    figure.legend(handles=handles, loc="outside lower center",
                  ncols=ncols or min(len(handles), 6), fontsize=7.5, frameon=False,
                  handlelength=2.2, columnspacing=1.6, title=title, title_fontsize=7.5)


def _init_mean_line(ax, value):
    """The paper's black dashed line at the mean smoothness at init, its value written on it."""
    line = ax.axhline(value, label=f"init mean ({value:.3f})", zorder=2, **INIT_MEAN_STYLE)
    ax.annotate(f"init mean {value:.3f}", xy=(0.995, value), xycoords=("axes fraction", "data"),
                xytext=(0, 2), textcoords="offset points", ha="right", va="bottom",
                fontsize=7, color="black")
    return line


def _sequential_colors(count, cmap="Blues", low=0.35, high=1.0):
    """`count` colours of `cmap` from light to dark."""
    colormap = matplotlib.colormaps[cmap]
    if count == 1:
        return [colormap(high)]
    return [colormap(low + (high - low) * i / (count - 1)) for i in range(count)]


def _shades_of(color, count, lightest=0.62, darkest=0.35):
    """`count` shades of `color`: a light tint (init) -> the colour -> darker (final)."""
    rgb = np.array(matplotlib.colors.to_rgb(color))
    white, black = np.ones(3), np.zeros(3)

    def shade(t):  # t in [0, 1]: 0 -> tint toward white, 0.5 -> colour, 1 -> toward black.
        if t <= 0.5:
            return tuple(rgb + (white - rgb) * lightest * (1 - 2 * t))
        return tuple(rgb + (black - rgb) * darkest * (2 * t - 1))

    if count == 1:
        return [shade(1.0)]
    return [shade(i / (count - 1)) for i in range(count)]


def _sensitivity_ylabel(distance):
    return f"normalized sensitivity\n({_DISTANCE_LABELS.get(distance, distance)} distance)"


def _sensitivity(curves, distance):
    return _per_seed(curves.sensitivity.get(distance))


def _step_panel_title(letter, steps, step_index, label_init="at initialization",
                      label_final="after training"):
    if not steps:
        return f"({letter})"
    step = steps[step_index]
    if step_index == 0 and step == 0:
        return f"({letter}) {label_init}"
    if step_index in (-1, len(steps) - 1):
        return f"({letter}) {label_final} (step {step})"
    return f"({letter}) step {step}"


def _accuracy_text(curves):
    accuracy = _per_seed(curves.accuracy)
    if accuracy is None:
        return ""
    return f" (acc {np.mean(accuracy):.3f})"


def _variant_curves(ax, variants, values_of, step_index, first_index=0, conv_layers=False,
                    with_accuracy=False, log=False):
    """One line per variant at `step_index` of values_of(curves) [seed, step, point]; the
    points are the measured layers, or the conv layers with `conv_layers`. Returns (legend
    handles, point names)."""
    handles, names = [], []
    for index, variant in enumerate(_ordered_variants(variants)):
        curves = variants[variant]
        data = values_of(curves)
        if data is None or data.ndim != 3 or data.shape[1] == 0:
            continue
        color, marker, label = variant_style(variant, index)
        if with_accuracy:
            label += _accuracy_text(curves)
        values = data[:, step_index, :]
        x = np.arange(first_index, first_index + values.shape[-1])
        handles.append(_plot_condition(ax, x, values, color, label, marker=marker, log=log))
        variant_names = list((curves.conv_layers if conv_layers else curves.layers)
                             or [str(k) for k in x])
        if len(variant_names) > len(names):
            names = variant_names
    return handles, names


def _steps_of(variants):
    for variant in _ordered_variants(variants):
        steps = variants[variant].steps
        if steps:
            return list(steps)
    return []


def _require_lines(handles, figure_name, what):
    if not handles:
        raise ValueError(f"{figure_name}: no {what} found in the results.")


def _init_and_final_panels(variants, values_of, figure_name, what, layer_names, log=False,
                           with_accuracy=False):
    """Two panels, (a) at the first measurement step and (b) at the last, with one line per
    variant of values_of(curves) [seed, step, layer] (geometric means with `log`).

    Returns:
      (figure, its 2 axes sharing y, the legend handles of the first panel's lines).

    Raises:
      ValueError: a panel has no line; the message names `figure_name` and `what`.
    """
    figure = canvas.new_figure((9.0, 4.1))
    axes = figure.subplots(1, 2, sharey=True)
    steps = _steps_of(variants)
    handles = None
    for ax, letter, step_index in zip(axes, "ab", (0, -1)):
        lines, names = _variant_curves(ax, variants, values_of, step_index,
                                       with_accuracy=with_accuracy, log=log)
        _require_lines(lines, figure_name, what)
        handles = handles or lines
        _layer_axis(ax, names, 0, layer_names)
        _panel_title(ax, _step_panel_title(letter, steps, step_index))
    return figure, axes, handles


# ---------------------------------------------------------------------------------------------
# The figures.

def plot_fig3(results, distance="cosine", layer_names=True):
    """Fig. 3: sensitivity per layer and variant, (a) at initialization, (b) after training.

    Real labels (results.training["real"]); finding 1 (pooling lowers sensitivity at init) and
    finding 2 (after training the pattern is nearly the same for every variant).

    Returns:
      A Figure with 2 axes, one line per variant present in each (+ a band with >= 2 seeds).
    """
    sensitivity.check_distance(distance)
    variants = _training_group(results, "real", "plot_fig3")
    figure, axes, handles = _init_and_final_panels(
        variants, lambda curves: _sensitivity(curves, distance), "plot_fig3",
        f"{distance} sensitivity", layer_names, with_accuracy=True)
    _zero_based(axes[0])
    axes[0].set_ylabel(_sensitivity_ylabel(distance), fontsize=8)
    _figure_legend(figure, handles)
    _suptitle(figure, results, "Deformation sensitivity per layer (real labels)")
    return figure


def plot_fig4(results, layer_names=True, cmap="Blues"):
    """Fig. 4: sensitivity at init for smoothed random filters; darker line = larger sigma.

    Uses results.smooth_init; the legend also gives each sigma's mean init filter smoothness
    when present. Finding 3: smoother filters (larger sigma) give lower sensitivity at every layer.

    Returns:
      A Figure with 1 axes, one line per sigma present.
    """
    sweep = _sweep(results.smooth_init, "smooth_init", "plot_fig4",
                   "sensitivity at init with Gaussian-smoothed filters")
    sigmas = [(value, key) for value, key in _numeric_keys(sweep.sensitivity, sweep.sigmas)
              if _per_seed(sweep.sensitivity[key]) is not None]
    if not sigmas:
        raise ValueError("plot_fig4: results.smooth_init.sensitivity has no sigma with data.")
    figure = canvas.new_figure((5.6, 4.3))
    ax = figure.subplots()
    colors = _sequential_colors(len(sigmas), cmap)
    names = []
    handles = []
    for (sigma, key), color in zip(sigmas, colors):
        values = _per_seed(sweep.sensitivity[key])
        label = f"\u03c3 = {_number(sigma)}"
        smoothness = _condition_mean(sweep.smoothness, sigma)
        if smoothness is not None:
            label += f"  (smoothness {smoothness:.2f})"
        handles.append(_plot_condition(ax, np.arange(values.shape[-1]), values, color, label,
                                       marker="o"))
        names = max(names, list(sweep.layers or [str(k) for k in range(values.shape[-1])]),
                    key=len)
    _layer_axis(ax, names, 0, layer_names)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(_sensitivity_ylabel("cosine"), fontsize=8)
    _panel_title(ax, "smoother filters (larger \u03c3) \u2192 lower sensitivity")
    _figure_legend(figure, handles, ncols=2, title="Gaussian smoothing of the init filters")
    _suptitle(figure, results, "Sensitivity at initialization, smoothed random filters")
    return figure


def _as_image_stack(images, key):
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"sample_images[{key!r}] must be [k, H, W] or [k, H, W, 1], got shape "
                         f"{list(images.shape)}.")
    return images


def plot_fig5(results, sample_images=None, layer_names=True, cmap="Greens"):
    """Fig. 5: tasks that need more stability (larger C) give smoother trained filters.

    (a) optional samples of the synthetic task: `sample_images` = {C: [k, H, W] or
        [k, H, W, 1] arrays in [0, 1]}, one row per C;
    (b) trained filter smoothness per conv layer, one line per strength C (darker = larger C),
        with the mean smoothness at init over all C as a black dashed line.
    Uses results.synthetic.

    Returns:
      A Figure with 1 axes (no samples) or 1 + rows * k axes (the image grid, unused cells
      hidden).
    """
    sweep = _sweep(results.synthetic, "synthetic", "plot_fig5",
                   "filter smoothness on the synthetic task")
    final = sweep.smoothness_final
    strengths = [(value, key) for value, key in _numeric_keys(final, sweep.strengths)
                 if _per_seed(final[key]) is not None]
    if not strengths:
        raise ValueError("plot_fig5: results.synthetic.smoothness_final has no strength with "
                         "data.")
    samples = []
    if sample_images:
        for key in sorted(sample_images, key=float):
            samples.append((float(key), _as_image_stack(sample_images[key], key)))
    if samples:
        columns = max(stack.shape[0] for _, stack in samples)
        figure = canvas.new_figure((4.2 + 0.8 * columns, max(3.9, 0.85 * len(samples) + 1.6)))
        left, right = figure.subfigures(1, 2, width_ratios=[0.75 * columns, 5.2], wspace=0.02)
        grid = left.subplots(len(samples), columns, squeeze=False)
        for row, (strength, stack) in enumerate(samples):
            for column in range(columns):
                cell = grid[row, column]
                cell.set_xticks([])
                cell.set_yticks([])
                for spine in cell.spines.values():
                    spine.set_visible(False)
                if column < stack.shape[0]:
                    cell.imshow(np.clip(stack[column], 0, 1), cmap="gray", vmin=0, vmax=1,
                                interpolation="nearest")
                else:
                    cell.set_axis_off()
            grid[row, 0].set_ylabel(f"C = {_number(strength)}", fontsize=8, rotation=0,
                                    ha="right", va="center")
        left.suptitle("(a) synthetic task samples", fontsize=9, x=0.02, ha="left")
        ax = right.subplots()
    else:
        figure = canvas.new_figure((5.8, 4.3))
        ax = figure.subplots()
    colors = _sequential_colors(len(strengths), cmap)
    handles = []
    width = 0
    for (strength, key), color in zip(strengths, colors):
        values = _per_seed(final[key])
        label = f"C = {_number(strength)}"
        accuracy = _condition_mean(sweep.accuracy, strength)
        if accuracy is not None:
            label += f"  (acc {accuracy:.3f})"
        width = max(width, values.shape[-1])
        handles.append(_plot_condition(ax, np.arange(1, values.shape[-1] + 1), values, color,
                                       label, marker="o"))
    init = [_per_seed(v) for v in sweep.smoothness_init.values()]
    init = [v for v in init if v is not None]
    if init:
        handles.append(_init_mean_line(ax, float(np.mean(np.concatenate(
            [v.ravel() for v in init])))))
    names = list(sweep.conv_layers or [f"conv{k}" for k in range(1, width + 1)])
    _layer_axis(ax, names, 1, layer_names, xlabel="conv layer")
    ax.set_ylabel(_SMOOTHNESS_LABEL, fontsize=8)
    _panel_title(ax, ("(b) " if samples else "")
                 + "trained filters: larger deformations C \u2192 smoother")
    (right if samples else figure).legend(
        handles=handles, loc="outside lower center", ncols=3, fontsize=7.5, frameon=False,
        handlelength=2.2, columnspacing=1.6, title="training deformation strength C",
        title_fontsize=7.5)
    _suptitle(figure, results, "Filter smoothness after training on the synthetic task")
    return figure


def _smoothness(curves):
    return _per_seed(curves.smoothness)


def _init_smoothness_mean(variants):
    values = [_smoothness(curves) for curves in variants.values()]
    values = [v[:, 0, :].ravel() for v in values if v is not None and v.ndim == 3]
    return float(np.mean(np.concatenate(values))) if values else None


def plot_fig6(results, layer_names=True):
    """Fig. 6: filter smoothness per conv layer after training, per variant.

    (a) real labels, (b) random labels (only when results.training["random"] is present); the
    black dashed line is the mean smoothness at init (step 0) of that panel's runs. Finding 5:
    trained filters are smoother than at init; with random labels it depends on the variant.

    Returns:
      A Figure with one axes per label group present (1 or 2); each has one line per variant
      plus the init-mean line.
    """
    groups = [g for g in ("real", "random") if results.training.get(g)]
    if not groups:
        raise ValueError("plot_fig6 needs results.training['real'] and/or "
                         "results.training['random'] (trained filter smoothness), which are "
                         "missing.")
    figure = canvas.new_figure((4.6 * len(groups) + 0.6, 4.1))
    axes = np.atleast_1d(figure.subplots(1, len(groups), sharey=True))
    legend_handles = []
    for ax, letter, group in zip(axes, "ab", groups):
        variants = results.training[group]
        handles, names = _variant_curves(ax, variants, _smoothness, -1, first_index=1,
                                         conv_layers=True, with_accuracy=group == "real")
        _require_lines(handles, "plot_fig6", f"smoothness ({group} labels)")
        init_mean = _init_smoothness_mean(variants)
        if init_mean is not None:
            _init_mean_line(ax, init_mean)
        _layer_axis(ax, names, 1, layer_names, xlabel="conv layer")
        label = "real labels" if group == "real" else "random labels"
        _panel_title(ax, f"({letter}) after training, {label}" if len(groups) > 1
                     else f"after training, {label}")
        legend_handles = legend_handles or handles
    # One "init mean" entry (the per-panel values are in the per-axes lines' labels).
    proxy = mlines.Line2D([], [], label="mean at initialization", **INIT_MEAN_STYLE)
    axes[0].set_ylabel(_SMOOTHNESS_LABEL, fontsize=8)
    _figure_legend(figure, legend_handles + [proxy])
    _suptitle(figure, results, "Filter smoothness after training")
    return figure


def plot_fig7(results, distance="cosine", layer_names=True):
    """Fig. 7: sensitivity after training on random labels, per variant.

    Uses results.training["random"] (last measurement step).

    Returns:
      A Figure with 1 axes, one line per variant present.
    """
    sensitivity.check_distance(distance)
    variants = _training_group(results, "random", "plot_fig7")
    figure = canvas.new_figure((5.8, 4.3))
    ax = figure.subplots()
    handles, names = _variant_curves(ax, variants,
                                     lambda curves: _sensitivity(curves, distance), -1)
    _require_lines(handles, "plot_fig7", f"{distance} sensitivity (random labels)")
    _layer_axis(ax, names, 0, layer_names)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(_sensitivity_ylabel(distance), fontsize=8)
    _panel_title(ax, "after training on random labels"
                 + (f" (step {_steps_of(variants)[-1]})" if _steps_of(variants) else ""))
    _figure_legend(figure, handles, ncols=3)
    _suptitle(figure, results, "Deformation sensitivity, random labels")
    return figure


def plot_sensitivity_across_training(results, distance="cosine", layer_names=True):
    """Small multiples: one panel per variant, one line per measurement step (real labels).

    Lines go from a light tint of the variant's colour (init) to a dark shade (final); bands
    (+-2 std over seeds) are drawn for the first and last step only, to keep the panels legible.
    Shows how the sensitivity pattern moves during training (finding 2: pooled nets'
    sensitivity can rise).

    Returns:
      A Figure with one axes per variant present, each with one line per step.
    """
    sensitivity.check_distance(distance)
    real = _training_group(results, "real", "plot_sensitivity_across_training")
    drawn = [v for v in _ordered_variants(real) if _sensitivity(real[v], distance) is not None]
    if not drawn:
        raise ValueError(f"plot_sensitivity_across_training: no {distance} sensitivity found "
                         "in the results.")
    count = len(drawn)
    figure = canvas.new_figure((2.55 * count + 0.7, 4.3))
    axes = np.atleast_1d(figure.subplots(1, count, sharey=True))
    max_steps = 0
    for index, (ax, variant) in enumerate(zip(axes, drawn)):
        data = _sensitivity(real[variant], distance)
        steps = list(real[variant].steps or range(data.shape[1]))
        color, marker, label = variant_style(variant, index)
        shades = _shades_of(color, data.shape[1])
        x = np.arange(data.shape[-1])
        for step_index in range(data.shape[1]):
            edge = step_index in (0, data.shape[1] - 1)
            _plot_condition(ax, x, data[:, step_index, :], shades[step_index],
                            f"step {steps[step_index]}", marker=marker if edge else None,
                            band=edge, linewidth=1.6 if edge else 1.1, zorder=3 + step_index)
        max_steps = max(max_steps, data.shape[1])
        _layer_axis(ax, list(real[variant].layers or [str(k) for k in x]), 0, layer_names)
        ax.set_title(label, fontsize=9, color=color, fontweight="bold")
    _zero_based(axes[0])
    axes[0].set_ylabel(_sensitivity_ylabel(distance), fontsize=8)
    # Legend in grey levels: the shade (not the hue) encodes the step in every panel.
    steps = _steps_of(real)[:max_steps] or list(range(max_steps))
    greys = _shades_of("#606060", len(steps))
    shown = sorted({0, len(steps) - 1} | set(np.linspace(0, len(steps) - 1, 6).round()
                                              .astype(int).tolist()))
    proxies = []
    for step_index in shown:
        text = f"step {steps[step_index]}"
        text += " (init)" if step_index == 0 and steps[step_index] == 0 else ""
        text += " (final)" if step_index == len(steps) - 1 and step_index > 0 else ""
        proxies.append(mlines.Line2D([], [], color=greys[step_index], linewidth=1.8,
                                     label=text))
    _figure_legend(figure, proxies, ncols=len(proxies),
                   title="measurement step: light = early, dark = late")
    _suptitle(figure, results, "Deformation sensitivity during training (real labels)")
    return figure


def plot_relative_stability(results, layer_names=True):
    """Relative stability R_f = D_f / G_f (Petrini et al. 2021) per layer and variant.

    (a) at initialization, (b) after training (real labels); log-scale y with a line at 1
    (below 1: more stable to the deformation than to Gaussian noise of the same norm). On the
    log axis the lines are geometric means over seeds and the bands multiplicative
    (`mean_and_band(..., log=True)`).

    Returns:
      A Figure with 2 axes, one line per variant present in each (+ the R_f = 1 line).
    """
    variants = _training_group(results, "real", "plot_relative_stability")
    figure, axes, handles = _init_and_final_panels(
        variants, lambda curves: _per_seed(curves.relative_stability),
        "plot_relative_stability", "relative stability", layer_names, log=True)
    for ax in axes:
        ax.set_yscale("log")
        ax.axhline(1.0, color="0.35", linestyle=":", linewidth=1.0, zorder=2)
        ax.grid(True, axis="y", which="major", color="0.9", linewidth=0.6)
    axes[0].set_ylabel("relative stability R_f = D_f / G_f\n(deformation / same-norm noise)",
                       fontsize=8)
    proxy = mlines.Line2D([], [], color="0.35", linestyle=":", linewidth=1.0,
                          label="R_f = 1")
    _figure_legend(figure, list(handles) + [proxy])
    _suptitle(figure, results, "Relative stability to deformations vs. noise (real labels)")
    return figure


# File stem -> figure function (Fig. 1 and Fig. 2 are `deform_tf.figures.deformation`'s).
FIGURES = {
    "fig3": plot_fig3,
    "fig4": plot_fig4,
    "fig5": plot_fig5,
    "fig6": plot_fig6,
    "fig7": plot_fig7,
    "sensitivity_across_training": plot_sensitivity_across_training,
    "relative_stability": plot_relative_stability,
}


def save(figure, path, dpi=DPI):
    """Writes `figure` as a PNG at `path` (parent directories created), tight bounding box."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if not isinstance(figure.canvas, FigureCanvasAgg):
        FigureCanvasAgg(figure)
    figure.savefig(path, dpi=dpi, format="png", bbox_inches="tight")
    return path


def render_all(results, directory, names=None):
    """Draws and saves every figure of FIGURES (or `names`) that `results` has the data for.

    Returns:
      (written, skipped): the list of PNG paths written, and {name: reason} of the figures
      whose sections are missing (their ValueError message).
    """
    written, skipped = [], {}
    for name in names or FIGURES:
        try:
            figure = FIGURES[name](results)
        except ValueError as error:
            skipped[name] = str(error)
            continue
        written.append(save(figure, os.path.join(directory, f"{name}.png")))
    return written, skipped
