"""``sendmessage`` (sequential): the tutorial's handler with its posts made one at a time.

AWS's own Python example (aws-doc-sdk-examples ``apigateway_websocket_chat``)
posts in a plain loop, one after another; this variant is that shape: the
tutorial's ``baseline`` (see ``sendmessage_baseline``) with ``Promise.all``
replaced by a loop, so fan-out time grows with the audience times the post
latency. Everything else is the baseline's, flaws included:

1. **Client per invocation**: the management API client is built inside the handler.
2. **One un-paginated scan**: connections past the first 1 MB page receive nothing.
3. **Posts one at a time**: at most one post is ever in flight.
4. **Errors logged and ignored**: a 410 (stale id), 429 or 5xx is printed and
   forgotten once botocore's default retries give up; gone ids stay in the table.
5. **No validation**: a body that is not JSON, or has no ``message``, crashes the
   invocation; a non-string ``message`` is broadcast as whatever ``str`` makes of it.
6. **No rooms**: everyone in the table receives every message.

As in the baseline, ``CALLBACK_URL``, when set, replaces
``https://{domainName}/{stage}``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3

_dynamodb = boto3.client("dynamodb")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        connections = _dynamodb.scan(TableName=os.environ["TABLE_NAME"])
    except Exception:
        return {"statusCode": 500}
    request_context = event["requestContext"]
    endpoint = os.environ.get("CALLBACK_URL") or (
        "https://" + request_context["domainName"] + "/" + request_context["stage"]
    )
    callback_api = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    message = json.loads(event["body"])["message"]
    for item in connections["Items"]:
        connection_id = item["connectionId"]["S"]
        if connection_id != request_context["connectionId"]:
            try:
                callback_api.post_to_connection(ConnectionId=connection_id, Data=str(message))
            except Exception as error:
                print(error)
    return {"statusCode": 200}
