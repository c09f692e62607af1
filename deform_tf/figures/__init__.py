"""The library's pictures: a random deformation (paper Fig. 1, 2) and a sensitivity profile.

The study's result figures (paper Fig. 3-7) are project code: `experiments.study.figures`.

Library code: every function takes numpy arrays (or small containers of them) and returns a
`matplotlib.figure.Figure`; nothing here calls `pyplot`, `show()` or `print`. Figures are built
directly on the non-interactive Agg canvas (`FigureCanvasAgg`), so importing this package never
changes the user's matplotlib backend and works on headless machines; save them with
`fig.savefig(path)`. Every figure starts as `canvas.new_figure(figsize)`.
"""
