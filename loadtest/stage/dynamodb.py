"""The embedded DynamoDB: an emulator in its own process, the table from template.yaml.

Two emulators, both enforcing DynamoDB's 1 MB scan page (what exposes the
tutorial's unpaginated scan): dynalite (Node.js, installed by package.json)
spends about a quarter of moto's CPU per write, which is what lets the stage
take connect storms near AWS's 500 connections/s (see BENCHMARKS.md); moto's
server is a Python dependency and so always there. ``auto`` (the default) takes
dynalite where it is installed (a checkout after ``npm install``, or ``npm
install -g dynalite``) and moto elsewhere, such as a fresh ``pipx install``. Any
other endpoint (DynamoDB Local) can be named instead.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from fanbench_common.resources import checkout_root
from loadtest.stage.template import TableSpec

STARTUP_TIMEOUT_S = 30.0
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "fanbench-local",
    "AWS_SECRET_ACCESS_KEY": "fanbench-local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


DYNALITE = "dynalite"
MOTO = "moto"
AUTO = "auto"
EMULATORS = (AUTO, DYNALITE, MOTO)
MOTO_SERVER = "moto.server"
_RUN_MODULE_UNTRACKED = (
    "import runpy, sys\n"
    "from moto.core.common_models import BaseModel\n"
    "BaseModel.__new__ = staticmethod(lambda cls, *args, **kwargs: object.__new__(cls))\n"
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)\n"
)
"""Runs the module named next on the command line with moto's instance tracking off.

moto keeps every model object it ever creates (``BaseModel.instances_tracked``, for its
dashboard), the copies each scan makes included: its memory grows with every request
(about 0.4 KB per item scanned), so a long run's emulator grows without bound."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def client(endpoint: str) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=LOCAL_CREDENTIALS["AWS_REGION"],
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"mode": "standard", "max_attempts": 2}),
    )


def dynalite_command() -> list[str] | None:
    """How to start dynalite here, if it is installed: the checkout's, else one on PATH."""
    root = checkout_root()
    script = root / "node_modules" / "dynalite" / "cli.js" if root else None
    node = shutil.which("node")
    if script is not None and script.is_file() and node:
        return [node, str(script)]
    installed = shutil.which("dynalite")
    return [installed] if installed else None


def resolve_emulator(emulator: str) -> str:
    """``auto`` becomes dynalite where it is installed and moto elsewhere."""
    if emulator == AUTO:
        return DYNALITE if dynalite_command() else MOTO
    return emulator


def emulator_command(emulator: str, port: int) -> list[str]:
    """The command line that serves ``emulator`` on ``127.0.0.1:port``."""
    if emulator == MOTO:
        return [sys.executable, "-c", _RUN_MODULE_UNTRACKED, MOTO_SERVER,
                "-H", "127.0.0.1", "-p", str(port)]  # fmt: skip
    if emulator == DYNALITE:
        dynalite = dynalite_command()
        if dynalite is None:
            raise RuntimeError(
                "dynalite is not installed: run `npm install` in the checkout (or "
                "`npm install -g dynalite`), or use --dynamodb-emulator moto"
            )
        # Tables become ACTIVE at once, as moto's do; the store is in memory.
        return [*dynalite, "--host", "127.0.0.1", "--port", str(port),
                "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"]  # fmt: skip
    raise ValueError(f"unknown DynamoDB emulator {emulator!r}: use one of {', '.join(EMULATORS)}")


class EmbeddedDynamoDB:
    """A DynamoDB emulator on a free loopback port, for as long as the ``with`` block runs."""

    def __init__(self, log_file: Path, emulator: str = AUTO) -> None:
        self.log_file = log_file
        self.emulator = resolve_emulator(emulator)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> EmbeddedDynamoDB:
        command = emulator_command(self.emulator, self.port)
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.emulator} exited early; see {self.log_file}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"{self.emulator} did not listen within {STARTUP_TIMEOUT_S:.0f} s")

    def __exit__(self, *_exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def create_table(endpoint: str, table: TableSpec, table_name: str) -> None:
    """Create the connections table exactly as template.yaml declares it (idempotent)."""
    dynamodb = client(endpoint)
    existing = dynamodb.list_tables().get("TableNames", [])
    if table_name not in existing:
        dynamodb.create_table(**table.create_table_kwargs(table_name))
        if table.ttl_attribute:
            try:
                dynamodb.update_time_to_live(
                    TableName=table_name,
                    TimeToLiveSpecification={
                        "AttributeName": table.ttl_attribute,
                        "Enabled": True,
                    },
                )
            except ClientError as error:
                # dynalite has no UpdateTimeToLive; no emulator here expires items anyway.
                if error.response.get("Error", {}).get("Code") != "UnknownOperationException":
                    raise
