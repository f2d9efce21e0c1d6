"""What a run's traffic would cost on AWS at list prices, from the run's own counts (pure).

Counted, per AWS service:

* **API Gateway messages**: every chat message in (the ``sendmessage`` frame:
  the envelope plus the ``{"action": ...}`` wrapper) and every frame out (each
  receipt, duplicates included, sized as the message that was sent; each error
  frame as one), each metered in ``ceil(bytes / 32 KB)`` increments.
* **Connection-minutes**: each connection from connect-complete to
  disconnect-start, or to the end of the test when still open.
* **Lambda requests and GB-seconds** per function. Invocation counts and
  durations come from the local stage's statistics (``run.json`` ``stage.stats.
  lambda``) when present; otherwise requests are counted from the records (one
  ``$connect`` and one ``$disconnect`` per connection, one ``sendmessage`` per
  send) and ``sendmessage``'s duration is taken as the mean fan-out completion
  time (the last receipt; an upper bound, as it includes the two network hops),
  other durations as ``ASSUMED_DURATION_MS``. Billed duration is rounded up to
  the millisecond. Memory is ``run.json`` ``stage.memory_mb`` when recorded,
  else template.yaml's ``MemorySize`` (``DEFAULT_MEMORY_MB``; a test checks they
  agree). Cold-start INIT time is not counted.
* **DynamoDB**: each send reads the audience — the optimized handler a
  strongly consistent ``GetItem`` of the sender (its room; 1 read unit) plus a
  paginated ``Scan`` of the whole table (or a ``Query`` of the room index), the
  baseline and sequential variants one un-paginated ``Scan``. A Scan or Query is
  billed on the total size of the items it evaluates, rounded up to 4 KB per
  request (1 MB page), at 0.5 read units per 4 KB (eventually consistent).
  Items are assumed ``ITEM_BYTES`` each. Writes: one put per connect and one
  delete per disconnect (1 write unit each, items under 1 KB), doubled for rooms
  (the room index is written too). Deletes of stale ids are not counted (the
  records cannot see them).

Figures: the run's total; ``usd_per_million_messages``, the message-driven cost
(messages, ``sendmessage``, reads) per million chat messages sent at this
audience size; and ``usd_per_hour``, an hour of steady traffic at the run's send
rate with the connections open while sending staying open (connect/disconnect
costs are per session and given apart as ``usd_per_connection_session``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt

from fanbench_common.limits import KIB, METERING_INCREMENT_BYTES, SCAN_PAGE_BYTES
from fanbench_common.loss import message_keys
from fanbench_common.resources import (
    CONNECT_FUNCTION,
    DEFAULT_FUNCTION,
    DISCONNECT_FUNCTION,
    SEND_FUNCTION,
)
from fanbench_common.rundir import STILL_CONNECTED, ErrorKind, Run, Table
from fanbench_common.scenario import GLOBAL_AUDIENCE
from fanbench_common.variants import UNPAGINATED_VARIANTS
from reports.prices import REGION, SOURCES, Prices, Usage, priced

CONNECT, DISCONNECT, DEFAULT, SENDMESSAGE = (
    CONNECT_FUNCTION, DISCONNECT_FUNCTION, DEFAULT_FUNCTION, SEND_FUNCTION,
)  # fmt: skip
DEFAULT_MEMORY_MB = {CONNECT: 256, DISCONNECT: 256, DEFAULT: 256, SENDMESSAGE: 1024}
"""template.yaml's MemorySize per function (tests/reports/test_cost.py checks they agree)."""
ASSUMED_DURATION_MS = {CONNECT: 20.0, DISCONNECT: 20.0, DEFAULT: 5.0, SENDMESSAGE: 50.0}
"""Used only when neither the stage nor the records give a duration."""
SENDMESSAGE_WRAPPER_BYTES = len('{"action":"sendmessage","message":""}')
"""What the client's frame adds around the envelope the sends table sizes."""
ITEM_BYTES = 100
"""A connection item: connectionId (12 + 16 B), connectedAt (11 + ~8 B), expiresAt
(9 + ~6 B) and room (4 + a short name) come to ~70 B by DynamoDB's item-size rules;
100 B leaves room for longer room names."""
READ_UNIT_BYTES = 4 * KIB
WRITE_UNIT_BYTES = 1 * KIB
EVENTUALLY_CONSISTENT_UNITS = 0.5
STRONGLY_CONSISTENT_UNITS = 1.0
"""The tutorial's ports: one Scan, first page only, and no lookup of the sender."""
MESSAGE_DRIVEN = (
    "api_gateway_messages",
    "sendmessage_requests",
    "sendmessage_compute",
    "dynamodb_reads",
)


def metering_increments(nbytes: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """API Gateway's billed messages for payloads of these sizes (32 KB increments, at least 1)."""
    sizes = np.asarray(nbytes, dtype=np.int64)
    return np.maximum(1, -(-sizes // METERING_INCREMENT_BYTES))


def scan_read_units(items: npt.NDArray[Any], paginated: bool = True) -> npt.NDArray[np.float64]:
    """Read units of reading ``items`` items with one Scan/Query (all pages, or the first only)."""
    total = np.asarray(items, dtype=np.int64) * ITEM_BYTES
    if not paginated:
        total = np.minimum(total, SCAN_PAGE_BYTES)
    full_pages, rest = np.divmod(total, SCAN_PAGE_BYTES)
    blocks = full_pages * (SCAN_PAGE_BYTES // READ_UNIT_BYTES) + -(-rest // READ_UNIT_BYTES)
    return np.asarray(np.maximum(blocks, 1) * EVENTUALLY_CONSISTENT_UNITS, dtype=np.float64)


def send_index_of(run: Run) -> npt.NDArray[np.int64]:
    """For each delivery row, its send row (-1 when the send is not in the records)."""
    sends, deliveries = run.sends, run.deliveries
    if not len(sends["client"]):
        return np.full(len(deliveries["client"]), -1, dtype=np.int64)
    keys = message_keys(sends["client"], sends["seq"])
    order = np.argsort(keys, kind="stable")
    wanted = message_keys(deliveries["sender"], deliveries["seq"])
    position = np.minimum(np.searchsorted(keys[order], wanted), len(keys) - 1)
    return np.where(keys[order][position] == wanted, order[position], -1).astype(np.int64)


def api_gateway_messages(run: Run, send_index: npt.NDArray[np.int64]) -> dict[str, int]:
    sends = run.sends
    default_bytes = int(run.scenario.get("message_bytes", 0))
    out_bytes = np.where(send_index >= 0, sends["bytes"][np.maximum(send_index, 0)], default_bytes)
    error_frames = int(np.sum(run.errors["kind"] == ErrorKind.ERROR_FRAME))
    inbound = int(metering_increments(sends["bytes"] + SENDMESSAGE_WRAPPER_BYTES).sum())
    outbound = int(metering_increments(out_bytes).sum()) + error_frames
    return {"in": inbound, "out": outbound, "total": inbound + outbound}


def _open_until(membership: Table, end_ns: int) -> npt.NDArray[np.int64]:
    disconnected = membership["disconnected_ns"]
    return np.where(disconnected == STILL_CONNECTED, end_ns, disconnected).astype(np.int64)


def connection_seconds(membership: Table, start_ns: int, end_ns: int) -> float:
    """Seconds of connection within [start_ns, end_ns] (open connections close at end_ns)."""
    opened = np.maximum(membership["connected_ns"], start_ns)
    closed = np.minimum(_open_until(membership, end_ns), end_ns)
    return float(np.clip(closed - opened, 0, None).sum() / 1e9)


def items_at_sends(run: Run) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per send: items in the whole table, and items in the sender's room (0 when global)."""
    membership, sent = run.membership, run.sends["sent_ns"]
    end = int(run.meta["times"].get("end_ns") or np.iinfo(np.int64).max)
    until = _open_until(membership, end)

    def present(rows: npt.NDArray[np.bool_], at: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        joined = np.sort(membership["connected_ns"][rows])
        left = np.sort(until[rows])
        counts = np.searchsorted(joined, at, "right") - np.searchsorted(left, at, "right")
        return counts.astype(np.int64)

    everyone = np.ones(len(membership["client"]), dtype=bool)
    table_items = present(everyone, sent)
    room_items = np.zeros(len(sent), dtype=np.int64)
    audience_of = dict(
        zip(membership["client"].tolist(), membership["audience"].tolist(), strict=True)
    )
    sender_audience = np.array(
        [audience_of.get(c, GLOBAL_AUDIENCE) for c in run.sends["client"].tolist()]
    )
    for room in set(sender_audience.tolist()) - {GLOBAL_AUDIENCE}:
        mine = sender_audience == room
        room_items[mine] = present(membership["audience"] == room, sent[mine])
    return table_items, room_items


def dynamodb_units(run: Run) -> dict[str, float]:
    table_items, room_items = items_at_sends(run)
    if run.meta.get("variant") in UNPAGINATED_VARIANTS:
        reads = scan_read_units(table_items, paginated=False)  # one Scan, first page only
    else:
        sender_lookup = STRONGLY_CONSISTENT_UNITS  # consistent GetItem of the sender's room
        audience = np.where(room_items > 0, room_items, table_items)
        reads = scan_read_units(audience) + sender_lookup
    in_rooms = int(np.sum(run.membership["audience"] != GLOBAL_AUDIENCE))
    writes_each = math.ceil(ITEM_BYTES / WRITE_UNIT_BYTES)
    connections = len(run.membership["client"])
    # put on connect + delete on disconnect; a room item also writes the room index.
    writes = 2 * writes_each * (connections + in_rooms)
    return {"read_units": float(reads.sum()), "write_units": float(writes)}


def _stage(run: Run) -> dict[str, Any]:
    stage = run.meta.get("stage")
    return stage if isinstance(stage, dict) else {}


def lambda_usage(run: Run, send_index: npt.NDArray[np.int64]) -> dict[str, dict[str, Any]]:
    stats = _stage(run).get("stats", {}).get("lambda", {})
    invocations, durations = stats.get("invocations", {}), stats.get("duration_ms", {})
    memory = {**DEFAULT_MEMORY_MB, **_stage(run).get("memory_mb", {})}
    connections = len(run.membership["client"])
    counted = {
        CONNECT: connections,
        DISCONNECT: connections,
        DEFAULT: 0,
        SENDMESSAGE: len(run.sends["client"]),
    }
    completion = _mean_completion_ms(run, send_index)
    usage: dict[str, dict[str, Any]] = {}
    for function, memory_mb in memory.items():
        requests, requests_from = counted.get(function, 0), "records"
        if function in invocations:
            requests, requests_from = int(invocations[function]), "local stage"
        if durations.get(function):
            billed_ms = float(np.mean(np.ceil(np.asarray(durations[function], dtype=np.float64))))
            duration_from = "local stage timing"
        elif function == SENDMESSAGE and completion is not None:
            billed_ms, duration_from = (
                float(math.ceil(completion)),
                "fan-out completion (upper bound)",
            )
        else:
            billed_ms = ASSUMED_DURATION_MS.get(function, 0.0)
            duration_from = "assumed"
        usage[function] = {
            "requests": requests,
            "requests_from": requests_from,
            "billed_ms_mean": billed_ms,
            "duration_from": duration_from,
            "memory_mb": int(memory_mb),
            "gb_seconds": requests * billed_ms / 1000 * int(memory_mb) / 1024,
        }
    return usage


def _mean_completion_ms(run: Run, send_index: npt.NDArray[np.int64]) -> float | None:
    found = send_index >= 0
    if not np.any(found):
        return None
    last = np.full(len(run.sends["client"]), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, send_index[found], run.deliveries["received_ns"][found])
    reached = last > np.iinfo(np.int64).min
    return float(np.mean((last[reached] - run.sends["sent_ns"][reached]) / 1e6))


def estimate(run: Run, prices: Prices) -> dict[str, Any]:
    """The run's cost at ``prices``, its breakdown, and the rates derived from it."""
    times = run.meta["times"]
    start, stop = int(times["start_ns"]), int(times["stop_sending_ns"])
    end = int(times.get("end_ns") or stop)
    sending_s = max(1e-9, (stop - start) / 1e9)
    send_index = send_index_of(run)
    messages = api_gateway_messages(run, send_index)
    minutes = connection_seconds(run.membership, np.iinfo(np.int64).min, end) / 60
    functions = lambda_usage(run, send_index)
    dynamodb = dynamodb_units(run)
    p, send = prices, functions[SENDMESSAGE]
    other = [use for name, use in functions.items() if name != SENDMESSAGE]
    lines = priced(
        Usage(
            api_gateway_messages=messages["total"],
            connection_minutes=minutes,
            sendmessage_requests=send["requests"],
            sendmessage_gb_seconds=send["gb_seconds"],
            connection_lambda_requests=sum(use["requests"] for use in other),
            connection_lambda_gb_seconds=sum(use["gb_seconds"] for use in other),
            dynamodb_read_units=dynamodb["read_units"],
            dynamodb_write_units=dynamodb["write_units"],
        ),
        p,
    )
    sends = len(run.sends["client"])
    connections = len(run.membership["client"])
    per_message = sum(lines[k] for k in MESSAGE_DRIVEN) / sends if sends else None
    session_lines = ("connection_lambda_requests", "connection_lambda_compute", "dynamodb_writes")
    mean_connections = connection_seconds(run.membership, start, stop) / sending_s
    send_rate = sends / sending_s
    hour_of_minutes = priced(Usage(connection_minutes=mean_connections * 60), p)[
        "api_gateway_connection_minutes"
    ]
    return {
        "region": REGION,
        "prices": asdict(prices),
        "price_sources": SOURCES,
        "usage": {
            "api_gateway_messages": messages,
            "connection_minutes": minutes,
            "lambda": functions,
            "lambda_requests": sum(f["requests"] for f in functions.values()),
            "lambda_gb_seconds": sum(f["gb_seconds"] for f in functions.values()),
            "dynamodb_read_units": dynamodb["read_units"],
            "dynamodb_write_units": dynamodb["write_units"],
        },
        "breakdown_usd": lines,
        "run_total_usd": sum(lines.values()),
        "messages_sent": sends,
        "send_rate_per_s": send_rate,
        "mean_connections": mean_connections,
        "usd_per_million_messages": None if per_message is None else per_message * 1e6,
        "usd_per_hour": (per_message or 0.0) * send_rate * 3600 + hour_of_minutes,
        "usd_per_connection_session": sum(lines[k] for k in session_lines) / connections
        if connections
        else None,
        "assumptions": assumptions(functions),
    }


def assumptions(functions: dict[str, dict[str, Any]]) -> list[str]:
    """The estimate's assumptions, in words, for the report."""
    notes = [
        f"DynamoDB items of {ITEM_BYTES} B; scans and queries read eventually consistent "
        "(0.5 unit per 4 KB per request); the sender lookup reads consistently (1 unit).",
        "Lambda memory from template.yaml unless run.json records it; arm64 duration price.",
        "Cold-start INIT time, stale-id deletes, data transfer and CloudWatch are not counted.",
        "usd_per_hour: the run's send rate and the connections open while sending, for one hour.",
    ]
    for function, use in functions.items():
        if use["duration_from"] != "local stage timing" and use["requests"]:
            notes.append(
                f"{function} duration {use['billed_ms_mean']:.0f} ms: {use['duration_from']}."
            )
    return notes


def cost_from_counts(
    prices: Prices,
    *,
    api_gateway_messages: float | None,
    connection_minutes: float,
    functions: Mapping[str, Mapping[str, float | None]],
    dynamodb_read_units: float | None,
    dynamodb_write_units: float | None,
) -> dict[str, Any]:
    """What a run cost at ``prices`` from counts AWS measured (CloudWatch), not modelled ones.

    ``functions`` maps a function's logical ID to its ``requests`` (Invocations),
    ``duration_ms_sum`` (the sum of Duration) and ``memory_mb``. Lines whose counts are
    unknown (``None``) cost nothing and are listed in ``unknown``. Each line has the
    same name as in ``estimate``'s breakdown, so the two can stand side by side.
    """
    unknown: list[str] = []

    def known(value: float | None, line: str) -> float:
        if value is None:
            unknown.append(line)
            return 0.0
        return float(value)

    requests = {SENDMESSAGE: 0.0, "other": 0.0}
    gb_seconds = {SENDMESSAGE: 0.0, "other": 0.0}
    for function, use in functions.items():
        side = SENDMESSAGE if function == SENDMESSAGE else "other"
        line = "sendmessage" if side == SENDMESSAGE else "connection_lambda"
        requests[side] += known(use.get("requests"), f"{line}_requests")
        memory_mb = use.get("memory_mb") or DEFAULT_MEMORY_MB.get(function)
        duration_ms = use.get("duration_ms_sum")
        if memory_mb is None or duration_ms is None:
            unknown.append(f"{line}_compute")
        else:
            gb_seconds[side] += duration_ms / 1000 * memory_mb / 1024
    lines = priced(
        Usage(
            api_gateway_messages=known(api_gateway_messages, "api_gateway_messages"),
            connection_minutes=connection_minutes,
            sendmessage_requests=requests[SENDMESSAGE],
            sendmessage_gb_seconds=gb_seconds[SENDMESSAGE],
            connection_lambda_requests=requests["other"],
            connection_lambda_gb_seconds=gb_seconds["other"],
            dynamodb_read_units=known(dynamodb_read_units, "dynamodb_reads"),
            dynamodb_write_units=known(dynamodb_write_units, "dynamodb_writes"),
        ),
        prices,
    )
    return {
        "breakdown_usd": lines,
        "run_total_usd": sum(lines.values()),
        "usage": {
            "lambda_requests": requests[SENDMESSAGE] + requests["other"],
            "lambda_gb_seconds": gb_seconds[SENDMESSAGE] + gb_seconds["other"],
            "sendmessage_requests": requests[SENDMESSAGE],
            "sendmessage_gb_seconds": gb_seconds[SENDMESSAGE],
        },
        "unknown": sorted(set(unknown)),
    }
