"""A user's own template: what the stage resolves from it, and what it refuses (pure)."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from loadtest.stage.template import (
    ApiSite,
    TemplateError,
    inline_code_file,
    load_template,
    read_stage_template,
    stage_parameters,
    stage_template,
    write_inline_code,
)
from tests.repo import TEMPLATE_PATH

APPS = Path(__file__).resolve().parent / "apps"
PYTHON_API = APPS / "python_api" / "template.yaml"
SITE = ApiSite(api_id="abc123defg", stage="prod", domain_name="127.0.0.1:4443")


def _python_api() -> dict[str, Any]:
    return load_template(PYTHON_API)


def _resolve(template: dict[str, Any], **parameters: str) -> Any:
    return stage_template(template, parameters, "conns", base_dir=APPS / "python_api", site=SITE)


def test_routes_by_join_and_by_sub_reach_sam_and_plain_lambda_functions() -> None:
    stage = _resolve(_python_api())
    assert stage.route_selection_expression == "$request.body.kind"
    assert set(stage.routes) == {"$connect", "note", "shout"}
    connect, note = stage.routes["$connect"], stage.routes["note"]
    assert (connect.logical_id, connect.handler, connect.runtime) == (
        "OnConnect",
        "notes.on_connect",
        "python3.12",
    )
    assert (connect.memory_mb, connect.timeout_s) == (256, 5.0)  # Timeout from Globals
    assert (note.logical_id, note.memory_mb, note.timeout_s) == ("TakeNote", 512, 7.0)
    assert connect.code_dir == APPS / "python_api" / "src/"
    assert note.code_dir == APPS / "python_api" / "src"


def test_environment_resolves_parameters_tables_attributes_and_pseudo_parameters() -> None:
    stage = _resolve(_python_api(), Greeting="hi there")
    connect, note = stage.routes["$connect"], stage.routes["note"]
    # The only table without a TableName takes the stage's table name.
    assert connect.environment == {"CONNECTIONS_TABLE": "conns", "GREETING": "hi there"}
    # Globals apply to SAM functions only, as SAM does.
    assert note.environment == {
        "NOTES_TABLE": "fanbench-local-notes",
        "NOTES_TABLE_ARN": "arn:aws:dynamodb:us-east-1:000000000000:table/fanbench-local-notes",
        "API_URL": "https://abc123defg.execute-api.us-east-1.amazonaws.com/prod",
    }
    assert (connect.name, note.name) == ("OnConnect", "fanbench-local-take-note")


def test_tables_and_indexes_as_create_table_takes_them_on_demand() -> None:
    stage = _resolve(_python_api())
    by_id = {table.logical_id: table for table in stage.tables}
    assert by_id["Connections"].create_table_kwargs() == {
        "TableName": "conns",
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "connectionId", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "connectionId", "AttributeType": "S"}],
    }
    notes = by_id["Notes"].create_table_kwargs()
    assert notes["TableName"] == "fanbench-local-notes"
    # Capacity is not emulated: the index loses its ProvisionedThroughput, keeps the rest.
    assert notes["GlobalSecondaryIndexes"] == [
        {
            "IndexName": "by-connection",
            "KeySchema": [{"AttributeName": "connectionId", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]


def test_functions_no_route_reaches_are_resolved_for_invoke_or_named_as_unemulated() -> None:
    """A handler may invoke them (Lambda's Invoke API), by the name ``Ref`` gives it; one the
    stage cannot run is named with why, without refusing the API its routes make."""
    template = _python_api()
    resources = template["Resources"]
    resources["Worker"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {"CodeUri": "src/", "Handler": "notes.shout", "FunctionName": "my-worker"},
    }
    resources["Report"] = {
        "Type": "AWS::Serverless::Function",
        "Properties": {"CodeUri": "src/", "Handler": "Report::handle", "Runtime": "java21"},
    }
    resources["OnConnect"]["Properties"]["Environment"]["Variables"]["WORKER"] = {"Ref": "Worker"}

    stage = _resolve(template)

    assert set(stage.routes) == {"$connect", "note", "shout"}
    assert set(stage.functions) == {"OnConnect", "TakeNote", "Shout", "Worker"}
    assert stage.by_function_name["my-worker"] is stage.functions["Worker"]
    assert stage.functions["Worker"].code_dir == APPS / "python_api" / "src/"
    assert stage.routes["$connect"].environment["WORKER"] == "my-worker"
    assert stage.unemulated == {
        "Report": "Report: Runtime java21 is not emulated by the local stage"
    }


def test_fanbench_template_is_resolved_by_the_same_resolver() -> None:
    stage = stage_template(load_template(TEMPLATE_PATH), {}, "t", base_dir=TEMPLATE_PATH.parent)
    code_dirs = {spec.code_dir for spec in stage.functions.values()}
    assert code_dirs == {TEMPLATE_PATH.parent / "handlers/"}
    assert [table.name for table in stage.tables] == ["t"]


def test_offered_parameters_reach_only_templates_that_declare_them() -> None:
    offered = {"StageName": "local", "Variant": "optimized", "CallbackUrl": "http://x"}
    assert stage_parameters(_python_api(), offered, {"Greeting": "yo"}) == {
        "StageName": "local",
        "Greeting": "yo",
    }


def test_an_unknown_chosen_parameter_is_refused() -> None:
    parameters = stage_parameters(_python_api(), {}, {"Greting": "yo"})
    with pytest.raises(TemplateError, match=r"unknown template parameters: \['Greting'\]"):
        _resolve(_python_api(), **parameters)


def test_routes_of_an_http_api_and_resources_no_route_uses_are_left_out() -> None:
    template = _python_api()
    resources = template["Resources"]
    resources["HttpApi"] = {
        "Type": "AWS::ApiGatewayV2::Api",
        "Properties": {"ProtocolType": "HTTP", "Name": "web"},
    }
    resources["HttpRoute"] = {
        "Type": "AWS::ApiGatewayV2::Route",
        "Properties": {"ApiId": {"Ref": "HttpApi"}, "RouteKey": "GET /", "AuthorizerId": "x"},
    }
    resources["Queue"] = {"Type": "AWS::SQS::Queue"}
    assert set(_resolve(template).routes) == {"$connect", "note", "shout"}


def test_a_resource_whose_condition_is_false_does_not_exist() -> None:
    template = _python_api()
    template["Conditions"] = {"WithNotes": {"Fn::Equals": [{"Ref": "Greeting"}, "notes"]}}
    template["Resources"]["NoteRoute"]["Condition"] = "WithNotes"
    assert set(_resolve(template).routes) == {"$connect", "shout"}
    assert set(_resolve(template, Greeting="notes").routes) == {"$connect", "note", "shout"}


def _edit(path: str, value: Any) -> dict[str, Any]:
    """The python_api template with one property set (``Resource.Prop.Sub``)."""
    template = copy.deepcopy(_python_api())
    node = template["Resources"]
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return template


REFUSED = [
    ("ConnectRoute.Properties.AuthorizerId", "abc", "ConnectRoute: AuthorizerId (an authorizer)"),
    (
        "ConnectRoute.Properties.AuthorizationType",
        "AWS_IAM",
        "ConnectRoute: AuthorizationType AWS_IAM",
    ),
    (
        "NoteRoute.Properties.RouteResponseSelectionExpression",
        "$default",
        "NoteRoute: RouteResponseSelectionExpression",
    ),
    ("NoteInteg.Properties.IntegrationType", "HTTP_PROXY", "NoteInteg: IntegrationType HTTP_PROXY"),
    (
        "NoteInteg.Properties.IntegrationUri",
        "https://example.com",
        "NoteInteg: IntegrationUri 'https://example.com' names no Lambda",
    ),
    (
        "NotesApi.Properties.RouteSelectionExpression",
        "$request.header.x",
        "NotesApi: RouteSelectionExpression '$request.header.x'",
    ),
    (
        "NotesApi.Properties.RouteSelectionExpression",
        "${request.body.kind}",
        "NotesApi: RouteSelectionExpression",
    ),
    ("OnConnect.Properties.Layers", ["arn:aws:lambda:us-east-1:1:layer:x:1"], "OnConnect: Layers"),
    (
        "OnConnect.Properties.CodeUri",
        {"Bucket": "b", "Key": "k"},
        "OnConnect: CodeUri other than a local path",
    ),
    (
        "TakeNote.Properties.Code",
        {"S3Bucket": "b", "S3Key": "k"},
        "TakeNote: Code other than a local path",
    ),
    ("TakeNote.Properties.Runtime", "java21", "TakeNote: Runtime java21"),
    ("OnConnect.Properties.PackageType", "Image", "OnConnect: PackageType Image"),
    (
        "OnConnect.Properties.Environment.Variables.QUEUE",
        {"Ref": "Queue"},
        "OnConnect: Ref Queue (AWS::SQS::Queue)",
    ),
    (
        "OnConnect.Properties.Environment.Variables.SHARED",
        {"Fn::ImportValue": "x"},
        "OnConnect: Fn::ImportValue",
    ),
    (
        "OnConnect.Properties.Environment.Variables.URL",
        {"Fn::GetAtt": ["Notes", "StreamArn"]},
        "OnConnect: Fn::GetAtt Notes.StreamArn",
    ),
    (
        "NoteRoute.Properties.Target",
        "integrations/Missing",
        "NoteRoute: Target 'integrations/Missing' names no integration",
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), REFUSED, ids=[r[2] for r in REFUSED])
def test_what_a_route_depends_on_and_the_stage_does_not_emulate_is_refused_in_one_line(
    path: str, value: Any, message: str
) -> None:
    template = _edit(path, value)
    template["Resources"]["Queue"] = {"Type": "AWS::SQS::Queue"}
    with pytest.raises(TemplateError) as raised:
        _resolve(template)
    text = str(raised.value)
    assert text.startswith(message), text
    assert "\n" not in text
    if "emulated" not in message and "names no" not in message:
        assert "is not emulated by the local stage" in text


def test_a_template_without_a_websocket_api_is_refused() -> None:
    template = _python_api()
    template["Resources"]["NotesApi"]["Properties"]["ProtocolType"] = "HTTP"
    with pytest.raises(TemplateError, match="defines no AWS::ApiGatewayV2::Api with ProtocolType"):
        _resolve(template)


def test_another_transform_is_refused() -> None:
    template = _python_api()
    template["Transform"] = ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]
    with pytest.raises(TemplateError, match=r"^Transform AWS::LanguageExtensions is not emulated"):
        _resolve(template)


def test_a_parameter_without_default_must_be_passed() -> None:
    template = _python_api()
    del template["Parameters"]["Greeting"]["Default"]
    with pytest.raises(TemplateError, match="parameter Greeting has no Default: pass --param"):
        _resolve(template)
    assert _resolve(template, Greeting="x").routes["$connect"].environment["GREETING"] == "x"


def test_the_file_shell_names_the_file_and_a_missing_code_directory(tmp_path: Path) -> None:
    text = PYTHON_API.read_text(encoding="utf-8").replace("CodeUri: src/", "CodeUri: gone/")
    (tmp_path / "template.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "src").mkdir()
    with pytest.raises(TemplateError, match=r"^template\.yaml: OnConnect: code directory .*gone"):
        read_stage_template(tmp_path / "template.yaml", TEMPLATE_PATH, {}, {}, "t")


def test_the_file_shell_refuses_what_is_not_a_template(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"is not a CloudFormation template"):
        read_stage_template(tmp_path / "list.yaml", TEMPLATE_PATH, {}, {}, "t")
    with pytest.raises(TemplateError, match=r"^cannot read the template"):
        read_stage_template(tmp_path / "absent.yaml", TEMPLATE_PATH, {}, {}, "t")


def test_inline_code_goes_where_cloudformation_puts_it(tmp_path: Path) -> None:
    template = _edit("TakeNote.Properties.Code", {"ZipFile": {"Fn::Sub": "# ${AWS::Region}"}})
    note = _resolve(template).routes["note"]
    assert note.inline_code == "# us-east-1"
    written = write_inline_code(_resolve(template), tmp_path).routes["note"]
    assert written.code_dir == tmp_path / "TakeNote"
    assert (tmp_path / "TakeNote" / "index.py").read_text(encoding="utf-8") == "# us-east-1"
    node = replace(note, runtime="nodejs20.x")
    assert inline_code_file(node) == "index.js"
