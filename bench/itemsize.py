"""DynamoDB item sizes (pure), to say where a scan's 1 MB page boundary falls.

Two rules: DynamoDB's own (attribute name bytes + value bytes, numbers about one
byte per two significant digits plus one — DynamoDB developer guide, "Item
sizes and formats") and moto's (numbers count one byte per character of their
decimal string; a page ends before the item that would take it past
1,000,000 bytes — moto ``dynamodb/models/table.py`` ``RESULT_SIZE_LIMIT``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

DYNAMODB_PAGE_BYTES = 1024 * 1024
MOTO_PAGE_BYTES = 1_000_000


def _number_bytes(text: str) -> int:
    digits = text.lstrip("+-").replace(".", "").lstrip("0").rstrip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def _value_size(value: Mapping[str, Any], moto: bool) -> int:
    (kind, raw), *_ = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        return len(str(raw)) if moto else _number_bytes(str(raw))
    if kind == "B":
        return len(raw) if isinstance(raw, bytes) else len(str(raw))
    if kind in ("BOOL", "NULL"):
        return 1
    return len(json.dumps(raw))  # sets, lists, maps: an approximation, unused here


def item_size(item: Mapping[str, Mapping[str, Any]], moto: bool = False) -> int:
    """Bytes one item counts towards a scan page (low-level attribute-value format)."""
    return sum(len(name.encode()) + _value_size(value, moto) for name, value in item.items())


def items_per_page(item_bytes: float, moto: bool = False) -> int:
    """How many items of ``item_bytes`` one scan page holds."""
    if item_bytes <= 0:
        raise ValueError("item size must be positive")
    return int((MOTO_PAGE_BYTES if moto else DYNAMODB_PAGE_BYTES) // item_bytes)
