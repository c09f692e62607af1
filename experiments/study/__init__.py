"""The reproduction study of Ruderman et al. 2018 (Figs. 3-7 and the paper's five findings).

Project code, kept apart from the library (`deform_tf`, `pipelines`) and above the launchers it
runs: `grid` (the experiment grid per profile, running it, the flagfiles of launch/configs),
`results` (the runs' measurements collected into typed results, results.json and the CSV
tables), `findings` (the paper's five findings judged on those results), `figures` (Figs. 3-7
and two extra views) and `report` (report.md). The launchers `launch.reproduce`, `launch.plot`
and `launch.write_configs` parse flags and call these modules.
"""
