"""``$default``: as in the tutorial, tell the caller who it is and how to chat."""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from callbacks import Outcome, classify_error, management_client
from settings import Settings, callback_endpoint
from validation import BadRequest, connection_id_of

logger = logging.getLogger()
logger.setLevel(logging.INFO)

HINT = "Use the sendmessage route to send a message. Your info:"


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    settings = Settings.from_environ()
    try:
        connection_id = connection_id_of(event)
        client = management_client(callback_endpoint(event, settings), pool_size=1)
    except (BadRequest, ValueError, KeyError) as error:
        return {"statusCode": 400, "body": str(error)}
    info: dict[str, Any] = {}
    try:
        response = client.get_connection(ConnectionId=connection_id)
        info = {
            key: (value.isoformat() if hasattr(value, "isoformat") else value)
            for key, value in response.items()
            if key != "ResponseMetadata"
        }
    except ClientError as error:
        if classify_error(error) is not Outcome.GONE:
            logger.warning("getConnection failed for %s: %s", connection_id, error)
    except BotoCoreError as error:
        logger.warning("getConnection failed for %s: %s", connection_id, error)
    info["connectionID"] = connection_id
    try:
        client.post_to_connection(
            ConnectionId=connection_id, Data=(HINT + json.dumps(info, default=str)).encode()
        )
    except ClientError as error:
        if classify_error(error) is Outcome.GONE:
            return {"statusCode": 200, "body": "caller already gone"}
        logger.warning("reply to %s failed: %s", connection_id, error)
        return {"statusCode": 500}
    except BotoCoreError as error:
        logger.warning("reply to %s failed: %s", connection_id, error)
        return {"statusCode": 500}
    return {"statusCode": 200}
