"""Handlers of a user's own API: they record what Lambda gave them, for the test to read."""

import os
import uuid
from typing import Any

import boto3

dynamodb: Any = boto3.resource("dynamodb")


def on_connect(event: dict[str, Any], context: Any) -> dict[str, int]:
    table = dynamodb.Table(os.environ["CONNECTIONS_TABLE"])
    table.put_item(
        Item={
            "connectionId": event["requestContext"]["connectionId"],
            "greeting": os.environ["GREETING"],
            "functionName": context.function_name,
            "memory": str(context.memory_limit_in_mb),
            "cwd": os.getcwd(),
        }
    )
    return {"statusCode": 200}


def take_note(event: dict[str, Any], context: Any) -> dict[str, int]:
    notes = dynamodb.Table(os.environ["NOTES_TABLE"])
    notes.put_item(
        Item={
            "noteId": str(uuid.uuid4()),
            "connectionId": event["requestContext"]["connectionId"],
            "body": event["body"],
            "functionName": context.function_name,
            "memory": str(context.memory_limit_in_mb),
            "tableArn": os.environ["NOTES_TABLE_ARN"],
            "apiUrl": os.environ["API_URL"],
            "connectionsTable": os.environ.get("CONNECTIONS_TABLE", "(none)"),
            "timeoutEnv": os.environ["AWS_LAMBDA_FUNCTION_TIMEOUT"],
        }
    )
    return {"statusCode": 200}


def shout(event: dict[str, Any], context: Any) -> dict[str, int]:
    """The tutorial's broadcast, as written for AWS: the endpoint from the request context."""
    request = event["requestContext"]
    callbacks = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"https://{request['domainName']}/{request['stage']}",
    )
    table = dynamodb.Table(os.environ["CONNECTIONS_TABLE"])
    for item in table.scan()["Items"]:
        if item["connectionId"] == request["connectionId"]:
            continue
        try:
            callbacks.post_to_connection(ConnectionId=item["connectionId"], Data=event["body"])
        except callbacks.exceptions.GoneException:
            print(f"gone: {item['connectionId']}")  # no $disconnect route: stale ids stay
    return {"statusCode": 200}
