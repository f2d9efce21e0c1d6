"""Route selection for ``$request.body.action`` (pure).

API Gateway evaluates the route selection expression against the JSON body:
the value must match a route key exactly (case-sensitive). A body that is not a
JSON object, has no such key, or names no route goes to ``$default``; without a
``$default`` route the client gets a ``Forbidden`` error frame.
"""

from __future__ import annotations

import json
from collections.abc import Collection

DEFAULT_ROUTE = "$default"


def selection_key(expression: str) -> str:
    """The body field a ``$request.body.X`` expression reads."""
    prefix = "$request.body."
    if not expression.startswith(prefix) or len(expression) == len(prefix):
        raise ValueError(f"unsupported route selection expression: {expression!r}")
    return expression[len(prefix) :]


def select_route(body: str, routes: Collection[str], field: str = "action") -> str | None:
    """The route key for a text message, or ``None`` when no route matches (→ Forbidden).

    ``$connect``/``$disconnect`` are never selectable by a message.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        action = parsed.get(field)
        if isinstance(action, str) and action in routes and not action.startswith("$"):
            return action
    return DEFAULT_ROUTE if DEFAULT_ROUTE in routes else None
