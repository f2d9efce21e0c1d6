"""fanbench reports: the run-directory format, loss arithmetic, analysis, charts.

Reports read run directories only; nothing here imports the load generator.
"""
