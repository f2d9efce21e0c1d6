"""A scenario's knobs, as Locust custom arguments (shown in Locust's web UI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlencode

from aws_limits import INTEGRATION_TIMEOUT_S

GLOBAL_AUDIENCE = "*"
TOKEN_ENV = "FANBENCH_TOKEN"
"""The $connect token reaches Locust through the environment, never its command line."""


@dataclass(frozen=True)
class Scenario:
    room_size: int = 0
    """Users per room; 0 broadcasts to everyone (the tutorial's behaviour)."""
    message_bytes: int = 64
    send_interval_s: float = 2.0
    """Each user sends one message per interval (open loop)."""
    warmup_s: float = 5.0
    """Excluded from the latency statistics."""
    drain_s: float = 3.0
    """After sending stops, receipts within this window are on time; later ones are late."""
    drain_limit_s: float = INTEGRATION_TIMEOUT_S
    """Receivers keep listening past the drain window until the fan-outs go quiet, at most
    this long after sending stops (``fanbench run`` adds the stage's function timeouts)."""
    settle_s: float = 1.0
    """A recipient must stay connected this long after a send to be expected."""
    run_dir: str = ""
    variant: str = ""
    token: str = ""

    def as_metadata(self) -> dict[str, Any]:
        """For run.json: the token is redacted, never written."""
        return {**asdict(self), "token": "<redacted>" if self.token else ""}

    def audience_for(self, process: int, user_number: int) -> str:
        """Rooms are made of users of one process (Locust has no global user index)."""
        if self.room_size <= 0:
            return GLOBAL_AUDIENCE
        return f"p{process}-r{user_number // self.room_size}"


def connect_url(host: str, room: str | None, token: str) -> str:
    query = {}
    if room:
        query["room"] = room
    if token:
        query["token"] = token
    return host + ("?" + urlencode(query) if query else "")


def add_arguments(parser: Any) -> None:
    """Register the knobs on Locust's argument parser (``init_command_line_parser``)."""
    defaults = Scenario()
    parser.add_argument("--room-size", type=int, default=defaults.room_size, include_in_web_ui=True,
                        help="users per room; 0 = broadcast to everyone")  # fmt: skip
    parser.add_argument("--message-bytes", type=int, default=defaults.message_bytes,
                        include_in_web_ui=True, help="chat message size")  # fmt: skip
    parser.add_argument("--send-interval", type=float, default=defaults.send_interval_s,
                        include_in_web_ui=True, help="seconds between sends")  # fmt: skip
    parser.add_argument("--warmup", type=float, default=defaults.warmup_s, include_in_web_ui=True,
                        help="seconds excluded from latency statistics")  # fmt: skip
    parser.add_argument("--drain", type=float, default=defaults.drain_s, include_in_web_ui=True,
                        help="seconds to keep receiving after sending stops")  # fmt: skip
    parser.add_argument("--drain-limit", type=float, default=defaults.drain_limit_s,
                        include_in_web_ui=True,
                        help="at most this many seconds after sending stops, wait for"
                        " fan-outs to finish")  # fmt: skip
    parser.add_argument("--settle", type=float, default=defaults.settle_s, include_in_web_ui=True,
                        help="settle window of the loss accounting (seconds)")  # fmt: skip
    parser.add_argument("--run-dir", type=str, default=defaults.run_dir, include_in_web_ui=True,
                        help="where the master writes the run directory")  # fmt: skip
    parser.add_argument("--variant", type=str, default=defaults.variant, include_in_web_ui=True,
                        help="label for the handler variant under test")  # fmt: skip
    parser.add_argument("--token", type=str, default=defaults.token, is_secret=True,
                        env_var=TOKEN_ENV,
                        include_in_web_ui=True, help="?token= for $connect")  # fmt: skip


def from_options(options: Any) -> Scenario:
    return Scenario(
        room_size=options.room_size,
        message_bytes=options.message_bytes,
        send_interval_s=options.send_interval,
        warmup_s=options.warmup,
        drain_s=options.drain,
        drain_limit_s=max(options.drain, options.drain_limit),
        settle_s=options.settle,
        run_dir=options.run_dir,
        variant=options.variant,
        token=options.token,
    )
