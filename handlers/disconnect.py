"""``$disconnect``: forget the connection. Best effort on AWS; idempotent here."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

import connection_store
from settings import Settings
from validation import BadRequest, connection_id_of

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    settings = Settings.from_environ()
    try:
        connection_id = connection_id_of(event)
    except BadRequest as error:
        return {"statusCode": 400, "body": str(error)}
    try:
        connection_store.delete_connection(
            connection_store.dynamodb_client(), settings.table_name, connection_id
        )
    except (ClientError, BotoCoreError):
        # The TTL attribute reclaims the item later; the optimized sendmessage
        # removes it sooner when a post to it answers 410.
        logger.exception("could not delete connection %s", connection_id)
        return {"statusCode": 500, "body": "could not delete connection"}
    return {"statusCode": 200}
