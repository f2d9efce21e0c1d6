"""The fan-out ledger: one conditional write per shard, so a shard is posted once.

Lambda delivers an asynchronous event at least once: the same event can arrive
twice, and an invocation that fails (or times out) after it has posted is run
again, up to twice. Posting a shard again sends every recipient the message
twice. So before posting, whoever posts a shard (the fan-out, or sendmessage
itself when a hand-off's outcome is unknown) claims the shard's key
(``{message id}#{shard index}``, ``sharding.split``) with a conditional ``PutItem`` in the ledger
table (template.yaml's ``FanoutLedgerTable``):

* no item: claimed, post it; when posting is over the item is marked ``done``;
* ``done``: someone posted it already; skip;
* ``posting`` and its claim still running: another run is posting it now; skip;
* ``posting`` and the claim lapsed (``until``, the claiming invocation's own
  deadline, has passed): that run died part-way; claim it again and post. Its
  recipients already posted then get the message twice: the one duplicate this
  design allows, against losing the rest of the shard.

Items expire by TTL (``expiresAt``) once no retry can still arrive (the event
age bound in ``EventInvokeConfig`` plus a margin). Powertools' idempotency
utility does the same with a dependency the handlers do not otherwise need.
"""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LEDGER_KEY = "shardKey"
STATE = "state"
UNTIL = "until"
EXPIRES_AT = "expiresAt"
POSTING = "posting"
DONE = "done"
TTL_S = 60 * 60
"""An hour: past the event age bound (template.yaml: 15 minutes) and both retries."""
CLOCK_SKEW_S = 1
"""Allowance between the clocks of two invocations judging whether a claim lapsed."""


class Claim(enum.Enum):
    CLAIMED = "claimed"
    """This invocation posts the shard."""
    TAKEN = "taken"
    """Posted, or being posted, by another run: skip it."""


def claim(client: DynamoDBClient, table: str, key: str, now_s: float, hold_s: float) -> Claim:
    """Claim ``key`` for ``hold_s`` seconds (the claiming invocation's time left).

    Raises ``ClientError``/``BotoCoreError`` when the ledger cannot be written:
    the caller decides whether to post anyway.
    """
    try:
        client.put_item(
            TableName=table,
            Item={
                LEDGER_KEY: {"S": key},
                STATE: {"S": POSTING},
                UNTIL: {"N": str(int(now_s + hold_s + CLOCK_SKEW_S))},
                EXPIRES_AT: {"N": str(int(now_s + TTL_S))},
            },
            ConditionExpression=(
                "attribute_not_exists(#key) OR (#state = :posting AND #until < :now)"
            ),
            ExpressionAttributeNames={"#key": LEDGER_KEY, "#state": STATE, "#until": UNTIL},
            ExpressionAttributeValues={":posting": {"S": POSTING}, ":now": {"N": str(int(now_s))}},
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return Claim.TAKEN
        raise
    return Claim.CLAIMED


def mark_done(client: DynamoDBClient, table: str, key: str) -> None:
    """The shard has been posted: no later run may claim it again."""
    client.update_item(
        TableName=table,
        Key={LEDGER_KEY: {"S": key}},
        UpdateExpression="SET #state = :done",
        ExpressionAttributeNames={"#state": STATE},
        ExpressionAttributeValues={":done": {"S": DONE}},
    )


def now_s() -> float:
    return time.time()
