"""A user's own template and handlers on the real local stage (Python handlers).

The app under tests/stage/apps/python_api/ declares its own route selection
expression, a SAM function and a plain AWS::Lambda::Function, a SimpleTable and a
table with an index; its handlers write what Lambda gave them where the test reads it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage
from loadtest.stage.template import TemplateError
from tests.stage.support import (
    dynamodb,
    nothing_arrives,
    open_ws,
    recv_text,
    stage_in,
    table_ids,
    wait_for,
)

APP = Path(__file__).resolve().parent / "apps" / "python_api"


@pytest.fixture(scope="module")
def own_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(
        template=APP / "template.yaml",
        table_name="own-connections",
        parameters={"Greeting": "bonjour"},
        provisioned=0,
    )
    yield from stage_in(config, tmp_path_factory, "own-api")


def _notes(stage: LocalStage) -> list[dict[str, str]]:
    items = dynamodb(stage).scan(TableName="fanbench-local-notes")["Items"]
    return [{key: value["S"] for key, value in item.items()} for item in items]


def test_the_template_routes_run_its_handlers_with_their_settings(own_stage: LocalStage) -> None:
    assert own_stage.endpoints.table_name == "own-connections"
    with open_ws(own_stage.ws_url) as ws:
        wait_for(lambda: len(table_ids(own_stage)) == 1, 10, "$connect's put")
        (connection,) = dynamodb(own_stage).scan(TableName="own-connections")["Items"]
        assert connection["greeting"]["S"] == "bonjour"
        assert connection["functionName"]["S"] == "OnConnect"
        assert connection["memory"]["S"] == "256"
        assert Path(connection["cwd"]["S"]) == (APP / "src").resolve()
        # Routed by the template's own expression, $request.body.kind.
        ws.send(json.dumps({"kind": "note", "text": "first"}))
        wait_for(lambda: len(_notes(own_stage)) == 1, 10, "the note route's put")
    (note,) = _notes(own_stage)
    assert json.loads(note["body"]) == {"kind": "note", "text": "first"}
    assert note["connectionId"] == connection["connectionId"]["S"]
    assert note["functionName"] == "fanbench-local-take-note"
    assert note["memory"] == "512"
    assert note["timeoutEnv"] == "7"
    assert note["connectionsTable"] == "(none)"  # SAM's Globals are not a plain function's
    assert note["tableArn"].endswith(":table/fanbench-local-notes")
    assert note["apiUrl"].endswith(".execute-api.us-east-1.amazonaws.com/local")
    # The index the template declares is there to query.
    found = dynamodb(own_stage).query(
        TableName="fanbench-local-notes",
        IndexName="by-connection",
        KeyConditionExpression="connectionId = :c",
        ExpressionAttributeValues={":c": {"S": note["connectionId"]}},
    )
    assert found["Count"] == 1


def test_a_template_the_stage_cannot_run_is_refused_before_it_starts(tmp_path: Path) -> None:
    text = (APP / "template.yaml").read_text(encoding="utf-8")
    refused = text.replace("RouteKey: note\n", "RouteKey: note\n      AuthorizerId: abc\n")
    (tmp_path / "template.yaml").write_text(refused, encoding="utf-8")
    stage = LocalStage(StageConfig(template=tmp_path / "template.yaml"), log_dir=tmp_path)
    with pytest.raises(TemplateError, match=r"^template\.yaml: NoteRoute: AuthorizerId"):
        stage.start()


def test_a_broadcast_written_for_aws_posts_to_https_domain_name(own_stage: LocalStage) -> None:
    """boto3 builds https://{domainName}/{stage}; the stage's CA makes it work unmodified."""
    with open_ws(own_stage.ws_url) as sender, open_ws(own_stage.ws_url) as listener:
        wait_for(lambda: len(table_ids(own_stage)) >= 2, 10, "both connections' puts")
        sender.send(json.dumps({"kind": "shout", "text": "hear me"}))
        assert json.loads(recv_text(listener)) == {"kind": "shout", "text": "hear me"}
        assert nothing_arrives(sender, 0.3)
