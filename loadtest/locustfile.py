"""fanbench's Locust entry point: ``locust -f loadtest/locustfile.py --host ws://...``.

Works headless or with the web UI, in one process or distributed
(``--processes N``, ``--master``/``--worker``). Scenario knobs appear in the web
UI's custom parameters; the master writes the run directory when the test stops.
"""

from __future__ import annotations

from loadtest.coordination import install_hooks
from loadtest.users import ChatUser

__all__ = ["ChatUser"]

install_hooks()
