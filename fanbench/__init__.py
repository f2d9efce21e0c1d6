"""fanbench, the application: the command line, the run driver and the Locust master's ledger.

It composes the load generator (``loadtest``) and the reports (``reports``), which know
nothing of each other or of this package: it alone imports both.
"""

from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
"""The locustfile every fanbench swarm runs (master, workers and plain ``locust -f``): loadtest's
users and coordination, with the report's running ledger in the master. Named here, not in that
module, so that finding it does not import Locust (which monkey-patches the interpreter)."""
