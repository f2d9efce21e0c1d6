"""``sendmessage`` (baseline): a faithful Python port of the AWS tutorial's Node handler.

It exists to be measured against, so it keeps the tutorial's flaws on purpose:

1. **Client per invocation.** The management API client is built inside the
   handler, so every message pays client construction and a fresh TLS
   connection pool.
2. **One un-paginated scan.** ``Scan`` returns at most 1 MB; connections past the
   first page never receive anything.
3. **No concurrency limit, no concurrency.** Node's ``Promise.all`` becomes a
   plain loop, as in AWS's own Python example (aws-doc-sdk-examples
   ``apigateway_websocket_chat``): posts run one after another, so fan-out time
   grows with the audience times the post latency.
4. **Errors logged and ignored.** A 410 (stale id), 429 or 5xx is printed and
   forgotten once the SDK's default retries (botocore's standard mode: 3
   attempts for 429/5xx, none for 410) give up; nothing bounds them by the
   Lambda deadline, and gone ids stay in the table to be posted to forever.
5. **No validation.** A body that is not JSON, or has no ``message``, crashes the
   invocation (API Gateway answers ``Internal server error``); a non-string
   ``message`` is broadcast as whatever ``str`` makes of it.
6. **No rooms.** Everyone in the table receives every message.

The one change from the tutorial: ``CALLBACK_URL``, when set, replaces
``https://{domainName}/{stage}`` so the same file runs behind a custom domain
and on the local stage.
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
