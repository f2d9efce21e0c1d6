"""``$connect``: admit the client (optionally by token) and record its connection."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

import connection_store
from settings import Settings
from validation import BadRequest, connection_id_of, validate_room

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def token_matches(provided: str | None, expected: str) -> bool:
    """Constant-time comparison, so response timing does not leak the token."""
    return provided is not None and hmac.compare_digest(provided.encode(), expected.encode())


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    settings = Settings.from_environ()
    try:
        connection_id = connection_id_of(event)
        query = event.get("queryStringParameters") or {}
        if not isinstance(query, dict):
            raise BadRequest("malformed query string")
        if settings.auth_token:
            token = query.get("token")
            if token is None:
                return {"statusCode": 401, "body": "token required"}
            if not token_matches(token, settings.auth_token):
                return {"statusCode": 403, "body": "forbidden"}
        room = validate_room(query["room"]) if "room" in query else None
        connected_at = int(event["requestContext"].get("connectedAt") or 0)
    except (BadRequest, ValueError, TypeError) as error:
        return {"statusCode": 400, "body": str(error)}
    try:
        connection_store.put_connection(
            connection_store.dynamodb_client(),
            settings.table_name,
            connection_id,
            connected_at,
            room,
        )
    except (ClientError, BotoCoreError):
        # A non-2xx here makes API Gateway refuse the handshake.
        logger.exception("could not store connection %s", connection_id)
        return {"statusCode": 500, "body": "could not store connection"}
    return {"statusCode": 200}
