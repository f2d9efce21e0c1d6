"""The scenario: what a swarm does, declared once.

``KNOBS`` is the one declaration. ``fanbench run`` turns it into flags, the
Locust plugin into Locust custom arguments (shown in the web UI), scenario files
use its names as keys, and ``Scenario`` is what the load generator reads. A
scenario file, in the manner of OpenMessaging Benchmark's workload files, is
TOML:

    description = "a 1,000-member room"
    users = 1000
    send_interval = 10.0

    [faults]                 # any fault of ``fanbench stage --help``, by name
    post_latency_ms = 20

    [stage]                  # local-stage settings, by name
    concurrency = 16

Flags given on the command line override the file.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fanbench_common.errors import ScenarioError
from fanbench_common.limits import INTEGRATION_TIMEOUT_S
from fanbench_common.redaction import redact_mapping

GLOBAL_AUDIENCE = "*"
"""The audience of a user in no room: everyone, as in the tutorial."""
UNKNOWN_VARIANT = "unknown"
"""The label of a run whose handler variant nobody named (a ``--target`` without ``--variant``)."""
TOKEN_ENV = "FANBENCH_TOKEN"
"""The $connect token reaches Locust through the environment, never its command line."""

SCENARIO_SECTIONS = ("faults", "stage", "lambda_env", "parameters")
"""Tables a scenario file may hold besides the knobs."""


@dataclass(frozen=True)
class Knob:
    """One scenario setting: its name (attribute, flag and file key), type, default, help."""

    name: str
    kind: type[int] | type[float] | type[str]
    default: int | float | str
    help: str
    locust: bool = True
    """Forwarded to Locust as a custom argument (the generator needs it)."""
    minimum: float | None = 0.0
    """Smallest accepted value; ``None`` for strings."""
    positive: bool = False
    """Zero is refused as well."""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


KNOBS: tuple[Knob, ...] = (
    Knob("users", int, 20, "WebSocket clients", locust=False, positive=True),
    Knob("spawn_rate", float, 10.0, "clients started per second", locust=False, positive=True),
    Knob("duration", float, 60.0, "seconds of sending", locust=False, positive=True),
    Knob("workers", int, 0, "Locust worker processes (0: one process, no master)", locust=False),
    Knob("room_size", int, 0, "users per room; 0 = everyone in one audience"),
    Knob("message_bytes", int, 64, "chat message size in bytes"),
    Knob("send_interval", float, 2.0, "seconds between one user's messages", positive=True),
    Knob("warmup", float, 5.0, "seconds excluded from latency statistics"),
    Knob("drain", float, 3.0, "seconds after sending stops within which receipts are on time"),
    Knob(
        "drain_limit",
        float,
        INTEGRATION_TIMEOUT_S,
        "at most this many seconds after sending stops, wait for fan-outs to finish",
    ),
    Knob("settle", float, 1.0, "a recipient must stay connected this long after a send"),
    Knob("variant", str, "", "label of the handler variant under test", minimum=None),
)
KNOB_NAMES = frozenset(knob.name for knob in KNOBS)


@dataclass(frozen=True)
class Scenario:
    """What the load generator needs of a scenario, as one process sees it."""

    room_size: int = 0
    """Users per room; 0 broadcasts to everyone (the tutorial's behaviour)."""
    message_bytes: int = 64
    send_interval_s: float = 2.0
    """Each user sends one message per interval (open loop)."""
    warmup_s: float = 5.0
    drain_s: float = 3.0
    """After sending stops, receipts within this window are on time; later ones are late."""
    drain_limit_s: float = INTEGRATION_TIMEOUT_S
    """Receivers keep listening past the drain window until the fan-outs go quiet, at most
    this long after sending stops (``fanbench run`` adds the stage's function timeouts)."""
    settle_s: float = 1.0
    run_dir: str = ""
    variant: str = ""
    token: str = ""

    def as_metadata(self) -> dict[str, Any]:
        """For run.json: the token is redacted, never written."""
        return redact_mapping(asdict(self))

    def audience_for(self, seat: int) -> str:
        """The room of the swarm's ``seat``-th user. Seats are numbered across the whole
        swarm (the master hands them out, ``loadtest/seats.py``), so a room fills from
        whichever processes and hosts spawn its users."""
        if self.room_size <= 0:
            return GLOBAL_AUDIENCE
        return f"r{seat // self.room_size}"

    @classmethod
    def from_options(cls, options: Any) -> Scenario:
        """From an argparse namespace that holds every Locust-side knob."""
        return cls(
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


def connect_url(host: str, room: str | None, token: str) -> str:
    query = {}
    if room:
        query["room"] = room
    if token:
        query["token"] = token
    return host + ("?" + urlencode(query) if query else "")


def add_knob_arguments(parser: Any, *, locust: bool, exclude: frozenset[str] = frozenset()) -> None:
    """Register the knobs as flags: every knob for ``fanbench run``, Locust's share for Locust.

    Locust's parser (configargparse) takes ``include_in_web_ui``, so the knobs
    show among the web UI's custom parameters.
    """
    for knob in KNOBS:
        if (locust and not knob.locust) or knob.name in exclude:
            continue
        extra: dict[str, Any] = {"include_in_web_ui": True} if locust else {}
        parser.add_argument(
            knob.flag,
            dest=knob.name,
            type=knob.kind,
            default=knob.default,
            help=f"{knob.help} (default: {knob.default!r})",
            **extra,
        )


def check_knobs(values: Mapping[str, Any]) -> None:
    """Refuse values a swarm cannot run with, naming the flag."""
    for knob in KNOBS:
        value = values.get(knob.name)
        if value is None or knob.minimum is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ScenarioError(f"{knob.flag} must be a finite number, not {value}")
        if knob.positive and value <= 0:
            raise ScenarioError(f"{knob.flag} must be positive, not {value}")
        if value < knob.minimum:
            raise ScenarioError(f"{knob.flag} cannot be negative, not {value}")


@dataclass(frozen=True)
class ScenarioFile:
    """A parsed scenario file: knob values and the tables for the stage."""

    source: str
    description: str = ""
    knobs: dict[str, int | float | str] = field(default_factory=dict)
    faults: dict[str, int | float] = field(default_factory=dict)
    stage: dict[str, Any] = field(default_factory=dict)
    lambda_env: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)


def _coerce(knob: Knob, value: Any, source: str) -> int | float | str:
    """TOML's types to the knob's: an int may stand for a float, nothing else converts."""
    if knob.kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, knob.kind) and not isinstance(value, bool):
        return value
    raise ScenarioError(
        f"{source}: {knob.name} must be {knob.kind.__name__}, not {type(value).__name__} {value!r}"
    )


def _table(data: Mapping[str, Any], name: str, source: str) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ScenarioError(f"{source}: [{name}] must be a table, not {type(table).__name__}")
    return dict(table)


def _string_table(data: Mapping[str, Any], name: str, source: str) -> dict[str, str]:
    table = _table(data, name, source)
    for key, value in table.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ScenarioError(f"{source}: [{name}] {key} must be a string or a number")
    return {key: str(value) for key, value in table.items()}


def parse_scenario(text: str, source: str) -> ScenarioFile:
    """Parse and check a scenario file's text; ``source`` names it in every error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{source}: not valid TOML: {error}") from None
    known = {*KNOB_NAMES, "description", *SCENARIO_SECTIONS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ScenarioError(
            f"{source}: unknown key {unknown[0]!r}; a scenario has {', '.join(sorted(known))}"
        )
    by_name = {knob.name: knob for knob in KNOBS}
    knobs = {name: _coerce(by_name[name], data[name], source) for name in KNOB_NAMES & set(data)}
    try:
        check_knobs(knobs)
    except ScenarioError as error:
        raise ScenarioError(f"{source}: {error}") from None
    faults = _table(data, "faults", source)
    for name, value in faults.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ScenarioError(f"{source}: [faults] {name} must be a number, not {value!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ScenarioError(f"{source}: description must be a string")
    return ScenarioFile(
        source=source,
        description=description,
        knobs=knobs,
        # As TOML typed them: an integer fault (the seed) must stay an integer.
        faults=faults,
        stage=_table(data, "stage", source),
        lambda_env=_string_table(data, "lambda_env", source),
        parameters=_string_table(data, "parameters", source),
    )


SHIPPED_DIR = Path(__file__).resolve().parent / "scenarios"
"""Example scenarios that ship with fanbench; ``--scenario NAME`` finds them by name."""


def shipped_scenarios() -> list[str]:
    return sorted(path.stem for path in SHIPPED_DIR.glob("*.toml"))


def load_scenario(reference: str) -> ScenarioFile:
    """A path to a scenario file, or the name of a shipped one (``tutorial``, ``room-1000``...)."""
    path = Path(reference)
    if not path.is_file() and path.suffix == "" and (SHIPPED_DIR / f"{reference}.toml").is_file():
        path = SHIPPED_DIR / f"{reference}.toml"
    if not path.is_file():
        names = ", ".join(shipped_scenarios())
        raise ScenarioError(f"no scenario file {reference!r} (shipped scenarios: {names})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(f"cannot read scenario {path}: {error}") from None
    return parse_scenario(text, str(path))
