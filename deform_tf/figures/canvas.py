"""Where every figure of the project starts: an empty Figure on its own Agg canvas."""

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(figsize):
    """An empty `Figure` of `figsize` (width, height) inches on its own Agg canvas.

    Constrained layout; not registered with `pyplot`, so it never opens a window, never changes
    matplotlib's backend and is freed once unreferenced. Save it with `figure.savefig(path)`.
    """
    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure
