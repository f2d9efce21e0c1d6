"""fanbench benchmarks: ``make bench`` or ``python -m bench``; see BENCHMARKS.md.

Not part of the test suite; ``tests/bench/`` runs each at smoke size so it cannot rot.
"""
