"""Petrini et al.'s relation across architectures (relative stability R_f vs test error).

`grid` (the architectures, seeds and training settings of each profile, and running them),
`measure` (D_f, G_f and R_f at every point of a run's model, at init and trained), `analysis`
(the fit of log error against log R_f, bootstrap intervals, Spearman correlations, the verdicts
on Petrini's five claims) and `report` (results.json, report.md, figures). `launch.stability_study`
runs them; only it and the tests import this package.
"""
