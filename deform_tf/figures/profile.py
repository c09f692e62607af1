"""The deformation-stability profile of one or more models, against relative depth.

`plot_profiles(rows)` takes `deform_tf.profile.ProfileRow`s (or dicts with the same keys, e.g.
read back from profile.json) of any number of models and returns a `matplotlib.figure.Figure`
on the Agg canvas (no `pyplot`, no printing) with three panels sharing the x axis, the points'
relative depth (0 = input, 1 = the deepest layer): (a) the cosine deformation sensitivity, (b) the
Euclidean one, (c) the relative stability R_f = D_f / G_f on a log scale with R_f = 1 (the
input's value) as a dotted line. One curve per model, in the order the models first appear.
"""

import itertools

import matplotlib

from deform_tf.figures import canvas

# (key, axis label, log scale)
PANELS = (
    ("sensitivity_cosine", "deformation sensitivity (cosine)", False),
    ("sensitivity_euclidean", "deformation sensitivity (Euclidean)", False),
    ("relative_stability", "relative stability $R_f = D_f / G_f$", True),
)
MARKERS = "os^vD<>pXh*"


def _value(row, key):
    return row[key] if isinstance(row, dict) else getattr(row, key)


def _by_model(rows):
    """{model: [rows sorted by index]}, models in order of first appearance."""
    models = {}
    for row in rows:
        models.setdefault(_value(row, "model"), []).append(row)
    return {m: sorted(r, key=lambda row: _value(row, "index")) for m, r in models.items()}


def plot_profiles(rows, title=None):
    """The profile figure (see the module docstring).

    Args:
      rows: iterable of `ProfileRow`s or dicts with keys "model", "index", "relative_depth",
        "sensitivity_cosine", "sensitivity_euclidean", "relative_stability".
      title: optional super-title.

    Raises:
      ValueError: no rows.
    """
    models = _by_model(rows)
    if not models:
        raise ValueError("No profile rows to plot.")
    figure = canvas.new_figure((6.5, 8.5))
    axes = figure.subplots(len(PANELS), 1, sharex=True)
    # Ten distinct colours up to ten models (matplotlib's default cycle), twenty beyond.
    colors = ([f"C{k}" for k in range(len(models))] if len(models) <= 10 else
              [matplotlib.colormaps["tab20"](k % 20) for k in range(len(models))])
    for ax, (key, label, log) in zip(axes, PANELS):
        for (model, model_rows), color, marker in zip(models.items(), colors,
                                                      itertools.cycle(MARKERS)):
            ax.plot([_value(r, "relative_depth") for r in model_rows],
                    [_value(r, key) for r in model_rows], color=color, marker=marker,
                    markersize=3, linewidth=1.2, label=model)
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
            ax.axhline(1.0, color="0.5", linestyle=":", linewidth=1)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("relative depth (0 = input, 1 = deepest layer)")
    axes[-1].set_xlim(-0.02, 1.02)
    axes[0].legend(fontsize="small", ncols=2 if len(models) > 4 else 1)
    if title:
        figure.suptitle(title)
    return figure
