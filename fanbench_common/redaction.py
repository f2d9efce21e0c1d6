"""Secrets (the $connect token) never reach a file, a report or a command line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
SECRET_KEYS = frozenset({"token", "auth_token"})
"""Keys whose values are secrets wherever they appear in metadata."""


def redact_text(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced (an empty secret changes nothing)."""
    return text.replace(secret, REDACTED) if secret else text


def redact_mapping(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with each non-empty secret value replaced; nested mappings too."""
    redacted: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            redacted[key] = redact_mapping(value)
        elif key in SECRET_KEYS and value:
            redacted[key] = REDACTED
        else:
            redacted[key] = value
    return redacted
