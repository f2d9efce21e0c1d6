"""The local stage's settings and the command-line flags that set them.

One table (``_FLAGS``) maps flags to fields, so ``fanbench stage``, the launcher
that starts a stage in a subprocess, and the benchmarks cannot drift apart.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fanbench_common.limits import (
    ACCOUNT_THROTTLE_BURST,
    ACCOUNT_THROTTLE_RPS,
    IDLE_TIMEOUT_S,
    INTEGRATION_TIMEOUT_S,
    LAMBDA_ASYNC_RETRY_DELAYS_S,
    LAMBDA_DEFAULT_CONCURRENCY,
    MAX_CONNECTION_DURATION_S,
    NEW_CONNECTIONS_PER_S,
)
from fanbench_common.resources import bundled_app, tutorial_app
from fanbench_common.variants import DEFAULT_VARIANT, VARIANTS, Variant
from loadtest.stage.faults import Faults
from loadtest.stage.template import ApiSite, StageTemplate, read_stage_template

LOOPBACK = "127.0.0.1"
LAMBDA_OVERFLOWS = ("throttle", "queue")
TUTORIAL = Variant.TUTORIAL
CALLBACK_SCHEMES = ("https", "http")
AUTH_TOKEN_ENV = "FANBENCH_AUTH_TOKEN"
"""How a token reaches a stage subprocess: never on a command line, where ps shows it."""


@dataclass(frozen=True)
class StageConfig:
    host: str = LOOPBACK
    port: int = 0
    """WebSocket port; 0 picks a free one."""
    management_port: int = 0
    """@connections port; 0 picks a free one."""
    tls_port: int = 0
    """wss:// and https:// @connections on one port, as AWS serves them; 0 picks a free one."""
    stage: str = "local"
    template: Path | None = None
    """A SAM/CloudFormation template of your own WebSocket API; None: fanbench's own."""
    variant: str = DEFAULT_VARIANT
    concurrency: int = 8
    """Local slots: invocations running at once across all functions (the laptop's cores,
    not an AWS quota); admitted invocations past them wait, and the wait is reported."""
    lambda_concurrency_limit: int = LAMBDA_DEFAULT_CONCURRENCY
    """Lambda's concurrency limit (the account quota, or reserved concurrency): an invocation
    that finds this many in flight (running or waiting for one of ``concurrency``'s slots)
    is throttled, as Lambda does; ``lambda_overflow="queue"`` lifts the limit."""
    lambda_overflow: str = "throttle"
    """``throttle`` past ``lambda_concurrency_limit``, or ``queue`` without limit."""
    throttled_connect_status: int = 500
    """The handshake status when ``$connect`` is throttled: AWS documents 500 for REST APIs
    whose Lambda is throttled and says nothing for WebSocket APIs; 429 is the other choice."""
    provisioned: int = 1
    """Environments started per function before traffic (AWS: provisioned concurrency)."""
    function_timeout_s: float | None = None
    """Overrides every function's template Timeout."""
    integration_timeout_s: float = INTEGRATION_TIMEOUT_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    max_connection_s: float = MAX_CONNECTION_DURATION_S
    dynamodb_endpoint: str | None = None
    """Use this DynamoDB instead of starting the embedded emulator."""
    dynamodb_emulator: str = "auto"
    """The embedded emulator: ``dynalite`` (fast writes) or ``moto``."""
    table_name: str = "fanbench-connections"
    throttle_rps: float = ACCOUNT_THROTTLE_RPS
    """The @connections token bucket's rate, on by default as AWS's account quota; 0 lifts it."""
    throttle_burst: float = ACCOUNT_THROTTLE_BURST
    connect_rate: float = NEW_CONNECTIONS_PER_S
    """New connections per second (AWS's account quota) past which a handshake gets 429;
    0 lifts it."""
    connect_burst: float = NEW_CONNECTIONS_PER_S
    """Handshakes at once before ``connect_rate`` applies (AWS documents no burst: one
    second's worth)."""
    callbacks: str = "https"
    """How the stage's own functions reach @connections: ``https`` (handlers build
    ``https://{domainName}/{stage}``, TLS as on AWS) or ``http`` (``CallbackUrl`` set to the
    plain-HTTP port: no TLS handshakes, which AWS never spares)."""
    freeze: bool = True
    """Stop (SIGSTOP) an execution environment once it has answered, and resume it (SIGCONT)
    at its next invocation, as Lambda freezes it: work left running after the response
    stalls until then."""
    auth_token: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    """Extra template parameter overrides (e.g. PostConcurrency)."""
    lambda_environment: dict[str, str] = field(default_factory=dict)
    """Extra environment variables for every function (e.g. AWS_MAX_ATTEMPTS=1)."""
    disabled_routes: tuple[str, ...] = ()
    """Routes to leave out, to exercise API Gateway's behaviour without them."""
    log_dir: Path | None = None
    event_log: Path | None = None
    """Append every event the gateway sends to a function to this JSON-lines file."""
    async_retry_delay_s: float = LAMBDA_ASYNC_RETRY_DELAYS_S[0]
    """Before the first retry of a failed asynchronous invocation; later intervals scale
    alike (AWS: 60 s, then 120 s)."""
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            choices = f"{', '.join(VARIANTS[:-1])} or {VARIANTS[-1]}"
            raise ValueError(f"variant must be {choices}, not {self.variant!r}")
        if self.async_retry_delay_s < 0:
            raise ValueError("async_retry_delay_s must not be negative")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 <= self.provisioned <= self.concurrency:
            raise ValueError("provisioned must be within 0..concurrency")
        if self.dynamodb_emulator not in ("auto", "dynalite", "moto"):
            raise ValueError(
                f"dynamodb_emulator must be auto, dynalite or moto, not {self.dynamodb_emulator!r}"
            )
        if self.lambda_overflow not in LAMBDA_OVERFLOWS:
            raise ValueError(
                f"lambda_overflow must be throttle or queue, not {self.lambda_overflow!r}"
            )
        if self.lambda_concurrency_limit < 1:
            raise ValueError("lambda_concurrency_limit must be at least 1")
        if self.callbacks not in CALLBACK_SCHEMES:
            raise ValueError(f"callbacks must be https or http, not {self.callbacks!r}")
        if min(self.throttle_rps, self.connect_rate) < 0:
            raise ValueError("throttle_rps and connect_rate must not be negative (0 lifts them)")
        if self.throttled_connect_status not in (429, 500):
            raise ValueError("throttled_connect_status must be 429 or 500")

    @property
    def effective_concurrency_limit(self) -> int | None:
        """The limit the runtime throttles at; ``None`` when it queues instead."""
        return self.lambda_concurrency_limit if self.lambda_overflow == "throttle" else None

    def template_parameters(self, callback_url: str) -> dict[str, str]:
        """``callback_url`` is the plain-HTTP @connections URL, used only with ``callbacks="http"``;
        otherwise ``CallbackUrl`` stays empty and handlers build the https URL, as on AWS."""
        return {
            "Variant": self.variant,
            "StageName": self.stage,
            "AuthToken": self.auth_token,
            "CallbackUrl": callback_url if self.callbacks == "http" else "",
            **self.parameters,
        }


def default_template(config: StageConfig) -> Path:
    """The template the stage runs without ``--template``: fanbench's, or the tutorial's."""
    return tutorial_app().template if config.variant == TUTORIAL else bundled_app().template


def resolve_template(
    config: StageConfig,
    callback_url: str = "",
    site: ApiSite | None = None,
    inline_code_dir: Path | None = None,
) -> StageTemplate:
    """The API the stage runs: ``config.template``, or fanbench's own (raises TemplateError)."""
    return read_stage_template(
        config.template, default_template(config), config.template_parameters(callback_url),
        config.parameters, config.table_name, site, inline_code_dir,
    )  # fmt: skip


# flag, field, type, help. Fault fields live under ``faults``.
_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--host", "host", str, "address to bind (default 127.0.0.1: loopback only)"),
    ("--port", "port", int, "WebSocket port (0 = any free port)"),
    ("--management-port", "management_port", int, "@connections port (0 = any free port)"),
    ("--tls-port", "tls_port", int, "wss:// and https:// @connections port (0 = any free port)"),
    ("--stage", "stage", str, "stage name, the URL path"),
    (
        "--template",
        "template",
        Path,
        "your own WebSocket API's SAM/CloudFormation template (default: fanbench's own)",
    ),
    ("--variant", "variant", str, f"sendmessage handler: {', '.join(VARIANTS)}"),
    ("--concurrency", "concurrency", int, "Lambda execution environments, all functions"),
    ("--provisioned", "provisioned", int, "environments per function started ahead of traffic"),
    (
        "--lambda-concurrency-limit",
        "lambda_concurrency_limit",
        int,
        "invocations in flight past which Lambda throttles (AWS account default)",
    ),
    ("--lambda-overflow", "lambda_overflow", str, "past the limit: throttle (as AWS) or queue"),
    (
        "--throttled-connect-status",
        "throttled_connect_status",
        int,
        "handshake status for a throttled $connect: 500 or 429 (AWS does not document it)",
    ),
    ("--function-timeout", "function_timeout_s", float, "seconds; overrides the template"),
    ("--integration-timeout", "integration_timeout_s", float, "seconds (AWS: 29)"),
    ("--idle-timeout", "idle_timeout_s", float, "seconds (AWS: 600)"),
    ("--max-connection", "max_connection_s", float, "seconds (AWS: 7200)"),
    ("--dynamodb-endpoint", "dynamodb_endpoint", str, "external DynamoDB endpoint URL"),
    (
        "--dynamodb-emulator",
        "dynamodb_emulator",
        str,
        "auto (dynalite if installed, else moto), dynalite, moto",
    ),
    ("--table-name", "table_name", str, "connections table name"),
    (
        "--throttle-rps",
        "throttle_rps",
        float,
        "@connections requests/s past which they get 429, as AWS's account quota; 0 lifts it",
    ),
    ("--throttle-burst", "throttle_burst", float, "@connections throttle burst"),
    (
        "--connect-rate",
        "connect_rate",
        float,
        "new connections/s past which a handshake gets 429, as AWS's account quota; 0 lifts it",
    ),
    ("--connect-burst", "connect_burst", float, "handshakes at once before --connect-rate"),
    (
        "--callbacks",
        "callbacks",
        str,
        "how functions reach @connections: https (TLS, as on AWS) or http (no TLS)",
    ),
    (
        "--no-freeze",
        "freeze",
        bool,
        "keep environments running after their response (Lambda freezes them)",
    ),
    ("--auth-token", "auth_token", str, f"require ?token= at $connect (or ${AUTH_TOKEN_ENV})"),
    ("--log-dir", "log_dir", Path, "where handler and emulator logs go"),
    ("--event-log", "event_log", Path, "append every Lambda event to this JSON-lines file"),
    (
        "--async-retry-delay",
        "async_retry_delay_s",
        float,
        "seconds before an async invocation's first retry (AWS: 60, then 120)",
    ),
    ("--post-latency-ms", "faults.post_latency_ms", float, "fault: fixed @connections delay"),
    (
        "--post-latency-jitter-ms",
        "faults.post_latency_jitter_ms",
        float,
        "fault: random extra delay",
    ),
    ("--post-failure-rate", "faults.post_failure_rate", float, "fault: share of posts → 500"),
    ("--throttle-rate", "faults.throttle_rate", float, "fault: share of posts → 429"),
    ("--drop-rate", "faults.drop_rate", float, "fault: share of 200 posts never delivered"),
    ("--duplicate-rate", "faults.duplicate_rate", float, "fault: share of posts delivered twice"),
    ("--lost-disconnect-rate", "faults.lost_disconnect_rate", float, "fault: $disconnect lost"),
    ("--lambda-error-rate", "faults.lambda_error_rate", float, "fault: invocations that fail"),
    ("--cold-start-ms", "faults.cold_start_ms", float, "fault: extra cold-start delay"),
    ("--fault-seed", "faults.seed", int, "seed for fault decisions"),
]


def add_stage_arguments(
    parser: argparse.ArgumentParser, exclude: frozenset[str] = frozenset()
) -> None:
    """The stage's flags; ``exclude`` names fields a command sets itself (``run`` sets the
    token from ``--token`` and the log folder inside its run directory)."""
    defaults = StageConfig()
    for flag, name, kind, help_text in _FLAGS:
        if name in exclude:
            continue
        owner: Any = defaults.faults if name.startswith("faults.") else defaults
        default = getattr(owner, name.removeprefix("faults."))
        if kind is bool:  # a --no-X switch for a setting that is on by default
            parser.add_argument(
                flag, dest=name.replace(".", "__"), action="store_false", default=default,
                help=help_text,
            )  # fmt: skip
            continue
        parser.add_argument(
            flag, dest=name.replace(".", "__"), type=kind, default=default,
            help=f"{help_text} (default: {default})",
        )  # fmt: skip
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="template parameter override, e.g. PostConcurrency=64",
    )  # fmt: skip
    parser.add_argument(
        "--lambda-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment variable for every function, e.g. AWS_MAX_ATTEMPTS=1",
    )  # fmt: skip
    parser.add_argument(
        "--disable-route", action="append", default=[], metavar="ROUTE",
        help="leave a route out (e.g. $default) to see API Gateway without it",
    )  # fmt: skip


def config_from_args(args: argparse.Namespace) -> StageConfig:
    values = vars(args)
    top = {name: values[name] for name in (f.name for f in fields(StageConfig)) if name in values}
    fault_values = {
        spec.name: values[f"faults__{spec.name}"]
        for spec in fields(Faults)
        if f"faults__{spec.name}" in values
    }
    if not top.get("auth_token"):
        top["auth_token"] = os.environ.get(AUTH_TOKEN_ENV, "")
    return StageConfig(
        **top,
        parameters=_pairs("--param", values.get("param", [])),
        lambda_environment=_pairs("--lambda-env", values.get("lambda_env", [])),
        disabled_routes=tuple(values.get("disable_route", [])),
        faults=Faults(**fault_values),
    )


def _pairs(flag: str, pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"{flag} wants NAME=VALUE, got {pair!r}")
        parsed[name] = value
    return parsed


def config_to_argv(config: StageConfig) -> list[str]:
    """Flags that rebuild ``config`` in another process (only non-defaults; no token)."""
    defaults = StageConfig()
    argv: list[str] = []
    flat = asdict(config)
    flat_defaults = asdict(defaults)
    for flag, name, _kind, _help in _FLAGS:
        if name.startswith("faults."):
            key = name.removeprefix("faults.")
            value, default = flat["faults"][key], flat_defaults["faults"][key]
        else:
            value, default = flat[name], flat_defaults[name]
        if value == default or value is None or name == "auth_token":
            continue
        argv += [flag] if isinstance(value, bool) else [flag, str(value)]
    for name, value in config.parameters.items():
        argv += ["--param", f"{name}={value}"]
    for name, value in config.lambda_environment.items():
        argv += ["--lambda-env", f"{name}={value}"]
    for route in config.disabled_routes:
        argv += ["--disable-route", route]
    return argv
