"""Errors a user can cause, shared by the load generator and the reports.

Each carries a one-line message that the CLI prints as it is, without a
traceback: a bad flag, a corrupt run directory, an unreadable scenario file.
"""

from __future__ import annotations


class FanbenchError(Exception):
    """The root of every error fanbench raises on purpose.

    Apart from :class:`FanbenchBug`, a problem the user can fix; ``str(error)`` is
    the whole explanation.
    """


class FanbenchBug(FanbenchError, RuntimeError):
    """fanbench caught itself in an inconsistency: a bug to report, never the user's input.

    The CLI lets it through with its traceback instead of printing one line.
    """


class RunDirError(FanbenchError, ValueError):
    """A run directory is missing, incomplete, corrupt or from another schema version."""


class ScenarioError(FanbenchError, ValueError):
    """A scenario file or a scenario flag is unusable; the message names the key."""
