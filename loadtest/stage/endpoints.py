"""What a running stage announces: its URLs, emulators and settings (the ready line).

The stage process writes one JSON line ``{"ready": {...}}`` on stdout once it
listens; ``LocalStage`` reads it back. Both sides use :class:`StageEndpoints`,
so the line's keys are its fields and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

READY_KEY = "ready"


@dataclass(frozen=True)
class StageEndpoints:
    ws_url: str
    """``ws://HOST:PORT/{stage}``: the API without TLS, for clients."""
    connections_url: str
    """The plain-HTTP @connections base URL (``.../{stage}/@connections``)."""
    callback_url: str
    """``http://HOST:PORT/{stage}``: the plain-HTTP callback base (``--callbacks http``)."""
    management_url: str
    """The stage's own HTTP API (``/_fanbench/stats``, faults)."""
    dynamodb_endpoint: str
    table_name: str
    variant: str
    log_dir: Path
    wss_url: str = ""
    """The same API over TLS, on the port that also serves https:// @connections."""
    https_callback_url: str = ""
    """``https://{domainName}/{stage}``, what handlers written for AWS post to."""
    ca_file: Path | None = None
    """The stage's certificate authority: trust it to use ``wss_url`` and https."""
    lambda_url: str = ""
    """Lambda's Invoke API on the stage (what ``AWS_ENDPOINT_URL_LAMBDA`` is set to)."""
    dynamodb_emulator: str = ""
    """``dynalite``, ``moto`` or ``external``."""
    tables: tuple[str, ...] = ()
    template: str = ""
    callbacks: str = "https"
    freeze: bool = True
    routes: dict[str, str] = field(default_factory=dict)
    """Route key → the logical id of the function behind it."""
    unemulated_functions: dict[str, str] = field(default_factory=dict)
    """Functions no route reaches that the stage cannot run, with why."""
    pid: int = 0

    def ready_line(self) -> str:
        """The line the stage process prints once it listens."""
        values = asdict(self)
        values.update(
            log_dir=str(self.log_dir),
            ca_file=None if self.ca_file is None else str(self.ca_file),
            tables=list(self.tables),
        )
        return json.dumps({READY_KEY: values})

    @classmethod
    def from_ready(cls, info: dict[str, Any]) -> StageEndpoints:
        """The announcement a ready line carried; keys this version does not know are ignored."""
        known = {item.name for item in fields(cls)}
        values = {name: value for name, value in info.items() if name in known}
        values["log_dir"] = Path(values["log_dir"])
        if values.get("ca_file"):
            values["ca_file"] = Path(values["ca_file"])
        values["tables"] = tuple(values.get("tables", ()))
        return cls(**values)
