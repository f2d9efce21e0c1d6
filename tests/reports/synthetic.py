"""Synthetic run directories with known answers, for the reports' tests.

``build_run`` lays out ``senders`` clients in one audience, each sending
``messages_per_sender`` messages one second apart, and delivers every message to
every other client after ``latency_ms`` (plus ``jitter``), except the pairs
listed in ``drop`` and with the pairs in ``duplicate`` received twice. Every
figure a report computes from it is therefore known in advance.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np

from fanbench_common.rundir import STILL_CONNECTED, write_run

START_NS = 1_700_000_000_000_000_000
SECOND = 1_000_000_000

Pair = tuple[int, int, int]
"""(sender, seq, receiver)."""


def build_run(
    path: Path,
    *,
    clients: int = 5,
    messages_per_sender: int = 10,
    latency_ms: float | Callable[[int, int, int], float] = 10.0,
    send_lag_ms: float = 0.0,
    drop: Collection[Pair] = (),
    duplicate: Collection[Pair] = (),
    warmup_s: float = 0.0,
    settle_s: float = 1.0,
    variant: str = "optimized",
    scenario: dict[str, Any] | None = None,
    errors: int = 0,
    health_cpu: float = 10.0,
) -> Path:
    sends: dict[str, list[int]] = {
        k: [] for k in ("client", "seq", "intended_ns", "sent_ns", "bytes")
    }
    deliveries: dict[str, list[int]] = {k: [] for k in ("client", "sender", "seq", "received_ns")}
    drop_set, duplicate_set = set(drop), set(duplicate)
    for seq in range(messages_per_sender):
        for sender in range(clients):
            intended = START_NS + (seq + 1) * SECOND + sender * 10_000_000
            sent = intended + int(send_lag_ms * 1e6)
            for column, value in zip(
                ("client", "seq", "intended_ns", "sent_ns", "bytes"),
                (sender, seq, intended, sent, 64),
                strict=True,
            ):
                sends[column].append(value)
            for receiver in range(clients):
                if receiver == sender or (sender, seq, receiver) in drop_set:
                    continue
                delay = latency_ms(sender, seq, receiver) if callable(latency_ms) else latency_ms
                copies = 2 if (sender, seq, receiver) in duplicate_set else 1
                for copy in range(copies):
                    deliveries["client"].append(receiver)
                    deliveries["sender"].append(sender)
                    deliveries["seq"].append(seq)
                    deliveries["received_ns"].append(sent + int(delay * 1e6) + copy * 1000)
    end = START_NS + (messages_per_sender + 2) * SECOND
    membership = {
        "client": list(range(clients)),
        "audience": ["*"] * clients,
        "connected_ns": [START_NS] * clients,
        "disconnected_ns": [STILL_CONNECTED] * clients,
    }
    error_rows = {
        "client": [0] * errors,
        "t_ns": [START_NS + SECOND] * errors,
        "kind": ["error_frame"] * errors,
        "detail": ['{"message": "Internal server error"}'] * errors,
    }
    samples = messages_per_sender + 2
    health = {
        "process": [0] * samples,
        "t_ns": [START_NS + i * SECOND for i in range(samples)],
        "cpu_percent": [health_cpu] * samples,
        "send_lag_ms": [send_lag_ms] * samples,
        "loop_lag_ms": [1.0] * samples,
    }
    meta = {
        "scenario": {
            "users": clients,
            "room_size": 0,
            "message_bytes": 64,
            "send_interval_s": 1.0,
            "warmup_s": warmup_s,
            "drain_s": 1.0,
            "settle_s": settle_s,
            "processes": 1,
            **(scenario or {}),
        },
        "target": "ws://127.0.0.1:1/local",
        "variant": variant,
        "versions": {"fanbench": "test"},
        "host": {"hostname": "test", "cpus": 2},
        "times": {
            "start_ns": START_NS,
            "stop_sending_ns": START_NS + (messages_per_sender + 1) * SECOND,
            "drain_deadline_ns": end,
            "end_ns": end,
        },
        "clock_offsets": {},
        "collection": {"complete": True},
    }
    tables: dict[str, dict[str, Any]] = {
        "sends": sends,
        "deliveries": deliveries,
        "membership": membership,
        "errors": error_rows,
        "health": health,
    }
    return write_run(
        path, meta, {k: {c: np.asarray(v) for c, v in t.items()} for k, t in tables.items()}
    )
