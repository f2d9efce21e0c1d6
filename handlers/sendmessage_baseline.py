"""``sendmessage`` (baseline): a faithful Python port of the AWS tutorial's Node handler.

Ported from the AWS WebSocket chat tutorial's ``sendmessage`` (Node.js, AWS SDK
for JavaScript v2), which reads in outline::

    let connections;
    try {
      connections = await ddb.scan({ TableName: process.env.TABLE_NAME }).promise();
    } catch (err) {
      return { statusCode: 500 };
    }
    const callbackAPI = new AWS.ApiGatewayManagementApi({
      apiVersion: '2018-11-29',
      endpoint: event.requestContext.domainName + '/' + event.requestContext.stage,
    });
    const message = JSON.parse(event.body).message;
    const sendMessages = connections.Items.map(async ({ connectionId }) => {
      if (connectionId !== event.requestContext.connectionId) {
        try {
          await callbackAPI
            .postToConnection({ ConnectionId: connectionId, Data: message })
            .promise();
        } catch (e) {
          console.log(e);
        }
      }
    });
    try {
      await Promise.all(sendMessages);
    } catch (e) {
      console.log(e);
      return { statusCode: 500 };
    }
    return { statusCode: 200 };

How each part is carried over:

* **One un-paginated scan**, its client at module scope (the tutorial's ``ddb``):
  connections past the first 1 MB page never receive anything.
* **Management client per invocation** (``new ApiGatewayManagementApi`` inside
  the handler), so no connection is reused from one invocation to the next.
* **Every post starts at once, at most 50 in flight.** ``map`` starts every
  ``postToConnection`` before ``Promise.all`` waits on any; the SDK v2's default
  HTTPS agent keeps at most 50 sockets, so at most 50 requests are on the wire
  and the rest queue for a socket. Here every post is submitted at once to a
  50-thread pool (the agent's sockets; like the agent, it outlives the
  invocation), and the client's connection pool holds 50, so neither side
  serialises below 50.
* **Errors logged and ignored**: a 410 (stale id), 429 or 5xx is printed and
  forgotten once the SDK's default retries give up; nothing deletes gone ids, so
  they stay in the table and are posted to on every broadcast. The SDK is
  boto3 here, so its defaults are botocore's (3 attempts in all for 429/5xx,
  none for 410) rather than the SDK v2's (3 retries, 4 attempts); nothing
  bounds them by the Lambda deadline. ``AWS_MAX_ATTEMPTS=1`` turns them off.
* **The sender is skipped**; everyone else in the table receives the message
  (no rooms).
* **No validation**: a body that is not JSON, or has no ``message``, crashes
  the invocation (API Gateway answers ``Internal server error``); a non-string
  ``message`` is broadcast as whatever ``str`` makes of it.

The one change from the tutorial: ``CALLBACK_URL``, when set, replaces
``https://{domainName}/{stage}`` so the same file runs behind a custom domain
and on the local stage.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import boto3
from botocore.config import Config

AGENT_MAX_SOCKETS = 50
"""The AWS SDK for JavaScript v2's default HTTPS agent: ``maxSockets: 50``."""

_dynamodb = boto3.client("dynamodb")
_agent = ThreadPoolExecutor(max_workers=AGENT_MAX_SOCKETS, thread_name_prefix="agent")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        connections = _dynamodb.scan(TableName=os.environ["TABLE_NAME"])
    except Exception:
        return {"statusCode": 500}
    request_context = event["requestContext"]
    endpoint = os.environ.get("CALLBACK_URL") or (
        "https://" + request_context["domainName"] + "/" + request_context["stage"]
    )
    callback_api = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=endpoint,
        config=Config(max_pool_connections=AGENT_MAX_SOCKETS),
    )
    message = json.loads(event["body"])["message"]

    def send(connection_id: str) -> None:
        if connection_id != request_context["connectionId"]:
            try:
                callback_api.post_to_connection(ConnectionId=connection_id, Data=str(message))
            except Exception as error:
                print(error)

    wait([_agent.submit(send, item["connectionId"]["S"]) for item in connections["Items"]])
    return {"statusCode": 200}
