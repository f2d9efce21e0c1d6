"""Errors a user can cause, shared by the load generator and the reports.

Each carries a one-line message that the CLI prints as it is, without a
traceback: a bad flag, a corrupt run directory, an unreadable scenario file.
"""

from __future__ import annotations


class FanbenchError(Exception):
    """A problem the user can fix; ``str(error)`` is the whole explanation."""


class RunDirError(FanbenchError, ValueError):
    """A run directory is missing, incomplete, corrupt or from another schema version."""


class ScenarioError(FanbenchError, ValueError):
    """A scenario file or a scenario flag is unusable; the message names the key."""
