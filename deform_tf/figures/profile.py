"""The deformation-stability profile of one or more models, against relative depth.

`plot_profiles(rows)` takes `deform_tf.profile.ProfileRow`s (or their flat `record()` dicts, e.g.
read back from profile.json) of any number of models and returns a `matplotlib.figure.Figure`
on the Agg canvas (no `pyplot`, no printing) with three panels sharing the x axis, the points'
relative depth (0 = input, 1 = the deepest layer): (a) the cosine deformation sensitivity, (b) the
Euclidean one, (c) the relative stability R_f = D_f / G_f on a log scale with R_f = 1 (the
input's value: as stable to deformations as to noise) as a dotted line; lower is more stable on
all three. One curve per model, in the order the models first appear; undefined values (None)
are gaps. The points' layer names are drawn when they fit: on the top axis for one model, or
models that share their points, with at most `MAX_NAMED_POINTS` points; else beside each marker
of panel (a) when all models together have at most `MAX_ANNOTATED_POINTS` points.
"""

import itertools

import matplotlib

from deform_tf.figures import canvas

# (key, axis label, log scale)
PANELS = (
    ("sensitivity_cosine", "deformation sensitivity\n(cosine; lower = more stable)", False),
    ("sensitivity_euclidean", "deformation sensitivity\n(Euclidean; lower = more stable)",
     False),
    ("relative_stability", "relative stability $R_f = D_f / G_f$\n(lower = more stable)", True),
)
MAX_NAMED_POINTS = 40  # layer names on the top axis up to this many points
MAX_ANNOTATED_POINTS = 30  # layer names beside the markers up to this many points in all
MARKERS = "os^vD<>pXh*"


def _plotted(value):
    """A measure as plotted: None (undefined) becomes a gap."""
    return float("nan") if value is None else value


def _shared_points(models):
    """[(relative depth, layer name)] if every model has the same points, else None."""
    points = [[(r["relative_depth"], r["layer"]) for r in model_rows]
              for model_rows in models.values()]
    return points[0] if all(p == points[0] for p in points) else None


def _name_points(ax, points):
    """The layer names on a top axis over `ax`, at their relative depths."""
    top = ax.secondary_xaxis("top")
    top.set_xticks([depth for depth, _ in points])
    top.set_xticklabels([name for _, name in points], rotation=90, fontsize=5)
    top.tick_params(length=2, pad=1)


def _by_model(rows):
    """{model: [rows sorted by index]}, models in order of first appearance."""
    models = {}
    for row in rows:
        models.setdefault(row["model"], []).append(row)
    return {m: sorted(r, key=lambda row: row["index"]) for m, r in models.items()}


def plot_profiles(rows, title=None):
    """The profile figure (see the module docstring).

    Args:
      rows: iterable of `ProfileRow`s or dicts with keys "model", "layer", "index",
        "relative_depth", "sensitivity_cosine", "sensitivity_euclidean", "relative_stability"
        (as `ProfileRow.record()`).
      title: optional super-title.

    Raises:
      ValueError: no rows.
    """
    models = _by_model([row if isinstance(row, dict) else row.record() for row in rows])
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
            ax.plot([r["relative_depth"] for r in model_rows],
                    [_plotted(r[key]) for r in model_rows], color=color, marker=marker,
                    markersize=3, linewidth=1.2, label=model)
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
            ax.axhline(1.0, color="0.5", linestyle=":", linewidth=1,
                       label="$R_f = 1$: as stable as to noise")
            ax.legend(handles=ax.get_lines()[-1:], fontsize="x-small", loc="best")
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("relative depth (0 = input, 1 = deepest layer)")
    axes[-1].set_xlim(-0.02, 1.02)
    axes[0].legend(fontsize="small", ncols=2 if len(models) > 4 else 1)
    points = _shared_points(models)
    if points is not None and len(points) <= MAX_NAMED_POINTS:
        _name_points(axes[0], points)
    elif sum(len(r) for r in models.values()) <= MAX_ANNOTATED_POINTS:
        for (model, model_rows), color in zip(models.items(), colors):
            for r in model_rows:
                value = r[PANELS[0][0]]
                if value is not None:
                    axes[0].annotate(r["layer"], (r["relative_depth"], value),
                                     xytext=(2, 2), textcoords="offset points", fontsize=5,
                                     rotation=45, color=color)
    if title:
        figure.suptitle(title, fontsize="medium")
    return figure
