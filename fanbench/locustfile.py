"""fanbench's Locust entry point: ``locust -f "$(fanbench locustfile)" --host ws://...``.

Works headless or with the web UI, in one process or distributed
(``--processes N``, ``--master``/``--worker``). Scenario knobs appear in the web
UI's custom parameters; the master writes the run directory when the test stops.

The load generator's users and coordination, with the application's running ledger plugged
into the master (``fanbench/locust_ledger.py``): loss, duplicates and lateness as the report
counts them, in Locust's statistics and web UI while the test runs.
"""

from __future__ import annotations

from fanbench import locust_ledger
from loadtest.coordination import install_hooks
from loadtest.users import ChatUser

__all__ = ["ChatUser"]

install_hooks(master_plugins=[locust_ledger.install])
