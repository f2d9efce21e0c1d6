"""A local stage for a benchmark: started, watched (CPU, invocations, EMF lines), stopped.

Everything here talks to 127.0.0.1 only; every wait is bounded in time and count.
"""

from __future__ import annotations

import contextlib
import json
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.procs import StageProcesses, find_stage_root
from fanbench_common.resources import SEND_FUNCTION
from loadtest.stage.config import StageConfig
from loadtest.stage.dynamodb import LOCAL_CREDENTIALS
from loadtest.stage.launcher import LocalStage

POLL_S = 0.02


def raise_open_files(needed: int) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``needed`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


@dataclass
class BenchStage:
    """A running stage plus what the benchmarks read from it."""

    stage: LocalStage
    processes: StageProcesses

    @property
    def ws_url(self) -> str:
        return self.stage.endpoints.ws_url

    @property
    def callback_url(self) -> str:
        return self.stage.endpoints.callback_url

    def stats(self) -> dict[str, Any]:
        return self.stage.stats()

    def invocations(self, function: str = SEND_FUNCTION) -> int:
        return int(self.stats()["lambda"]["invocations"].get(function, 0))

    def wait_invocations(
        self, at_least: int, timeout_s: float, function: str = SEND_FUNCTION
    ) -> bool:
        """Wait until ``function`` has completed ``at_least`` invocations in all."""
        deadline = time.monotonic() + timeout_s
        for _ in range(int(timeout_s / POLL_S) + 2):
            if self.invocations(function) >= at_least:
                return True
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        return self.invocations(function) >= at_least

    def durations_ms(self, function: str = SEND_FUNCTION) -> list[float]:
        return [float(x) for x in self.stats()["lambda"]["duration_ms"].get(function, [])]

    def emf_records(self, function: str = SEND_FUNCTION) -> list[dict[str, Any]]:
        """Every EMF line ``function`` has logged so far, oldest first."""
        records: list[dict[str, Any]] = []
        for path in sorted(self.stage.endpoints.log_dir.glob(f"{function}-*.log")):
            with path.open(errors="replace") as log:
                for line in log:
                    if line.startswith('{"_aws"'):
                        with contextlib.suppress(ValueError):
                            records.append(json.loads(line))
        records.sort(key=lambda r: int(r["_aws"]["Timestamp"]))
        return records

    def wait_emf(self, at_least: int, timeout_s: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        records = self.emf_records()
        for _ in range(int(timeout_s / POLL_S) + 2):
            if len(records) >= at_least or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
            records = self.emf_records()
        return records

    def dynamodb(self) -> Any:
        return boto3.client(
            "dynamodb",
            endpoint_url=self.stage.endpoints.dynamodb_endpoint,
            region_name=LOCAL_CREDENTIALS["AWS_REGION"],
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def table_items(self, max_pages: int = 1_000) -> list[dict[str, Any]]:
        """Every item of the connections table (paginated; stops only when there is no key)."""
        client = self.dynamodb()
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.stage.endpoints.table_name}
        for _ in range(max_pages):
            page = client.scan(**kwargs)
            items.extend(page.get("Items", []))
            last = page.get("LastEvaluatedKey")
            if not last:
                return items
            kwargs["ExclusiveStartKey"] = last
        raise RuntimeError(f"the table scan did not end within {max_pages} pages")

    def connection_ids(self) -> list[str]:
        return [item["connectionId"]["S"] for item in self.table_items()]


@contextlib.contextmanager
def bench_stage(config: StageConfig, log_dir: Path) -> Iterator[BenchStage]:
    """Start a stage whose logs go to ``log_dir``; stop it (process group and all) after."""
    log_dir = log_dir.resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    with LocalStage(config, log_dir=log_dir) as stage:
        root = find_stage_root(stage.endpoints.log_dir)
        processes = StageProcesses(root, stage.endpoints.log_dir)
        processes.sample()
        yield BenchStage(stage, processes)
