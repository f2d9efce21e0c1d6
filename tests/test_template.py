"""template.yaml, validated offline: no credentials, no network.

cfn-lint no longer expands SAM, so an error inside an ``AWS::Serverless::*``
resource (a bad Runtime in Globals, a wrong policy-template parameter) passes it.
The pipeline here catches them without credentials: cfn-lint on the source,
aws-sam-translator's Python API, then cfn-lint on the translated template. The
negative controls at the end feed it broken copies, so a clean result means
something. What no linter checks (the WebSocket wiring, least privilege, the
table schema the handlers assume, the handlers themselves) is asserted directly.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.decode.decode import decode_str
from samtranslator.model.exceptions import ExceptionWithMessage
from samtranslator.translator.transform import transform

import aws_limits
import ledger
import sharding
from callbacks import POST_CLIENTS
from fanbench_common.resources import FANOUT_FUNCTION, SEND_FUNCTION
from fanbench_common.variants import TEMPLATE_VARIANTS as STAGE_VARIANTS
from loadtest.stage.template import load_template, stage_template
from settings import DEFAULT_POST_CLIENT
from tests.repo import HANDLERS_DIR, TEMPLATE_PATH

Template = dict[str, Any]

VARIANTS = ("baseline", "sequential", "optimized", "sharded")
VARIANT_HANDLERS = {
    "baseline": "sendmessage_baseline.handler",
    "sequential": "sendmessage_sequential.handler",
    "optimized": "sendmessage.handler",
    "sharded": "sendmessage_sharded.handler",
}
SHARDED_CONDITION = "UseSharded"
"""Creates the fan-out function and sendmessage's right to invoke it, for ``sharded`` only."""
LINT_REGIONS = ["us-east-1"]
RUNTIME = "python3.12"
ROUTE_KEYS = {"$connect", "$disconnect", "$default", "sendmessage"}
PLACEHOLDER_CODE_URI = "s3://bucket/key.zip"
NO_VALUE = {"Ref": "AWS::NoValue"}
LAMBDA_BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
"""The one managed policy SAM attaches to every function role (CloudWatch Logs only)."""


# ---------------------------------------------------------------------------
# Loading, translating, linting


def _decoded_source() -> Template:
    """template.yaml through cfn-lint's decoder, as plain dicts and lists."""
    decoded, errors = decode_str(TEMPLATE_PATH.read_text(encoding="utf-8"))
    assert not errors, [repr(error) for error in errors]
    plain: Template = json.loads(json.dumps(decoded))
    return plain


_SOURCE = _decoded_source()


def source_template() -> Template:
    """A fresh copy of the template, free to mutate."""
    return copy.deepcopy(_SOURCE)


def lint_problems(text: str) -> list[str]:
    """cfn-lint errors and warnings for a template given as YAML or JSON text."""
    matches = lint(text, regions=LINT_REGIONS)
    return [repr(m) for m in matches if str(m.rule.severity).lower() in {"error", "warning"}]


class _NoManagedPolicies:
    """Policy loader stub: the template names no managed policy, so IAM is never asked."""

    def load(self) -> dict[str, str]:
        return {}


def translate(template: Template, variant: str) -> Template:
    """The SAM transform, run locally, with the code location replaced by a placeholder."""
    fragment = copy.deepcopy(template)
    fragment.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = PLACEHOLDER_CODE_URI
    for resource in fragment["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in resource.get(
            "Properties", {}
        ):
            resource["Properties"]["CodeUri"] = PLACEHOLDER_CODE_URI
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        translated: Template = transform(fragment, {"Variant": variant}, _NoManagedPolicies())
    return translated


def validation_problems(template: Template, variant: str) -> list[str]:
    """The whole offline pipeline: lint the source, translate it, lint the translation.

    Each problem starts with the stage that found it: ``source:``, ``sam-translator:``
    or ``translated:``.
    """
    problems = [f"source: {p}" for p in lint_problems(json.dumps(template))]
    try:
        translated = translate(template, variant)
    except ExceptionWithMessage as error:
        causes = [cause.message for cause in getattr(error, "causes", [])] or [error.message]
        return problems + [f"sam-translator: {cause}" for cause in causes]
    return problems + [f"translated: {p}" for p in lint_problems(json.dumps(translated))]


@pytest.fixture(scope="module", params=VARIANTS)
def translated(request: pytest.FixtureRequest) -> Template:
    variant: str = request.param
    return translate(source_template(), variant)


# ---------------------------------------------------------------------------
# Template navigation


CONNECTIONS_TABLE = "ConnectionsTable"
LEDGER_TABLE = "FanoutLedgerTable"
"""sharded only: the fan-out's ledger (handlers/ledger.py)."""
FAILURE_QUEUE = "FanoutFailureQueue"


def resources_of(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == resource_type
    }


def only_resource_id(template: Template, resource_type: str) -> str:
    ids = list(resources_of(template, resource_type))
    assert len(ids) == 1, f"expected one {resource_type}, found {ids}"
    return ids[0]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def sub_text(value: Any) -> str | None:
    """A reference as ``Fn::Sub`` text (``${Table.Arn}``, ``${Api}``), or None if opaque."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((key, arg),) = value.items()
    if key == "Ref" and isinstance(arg, str):
        return "${" + arg + "}"
    if key == "Fn::GetAtt":
        parts = arg.split(".", 1) if isinstance(arg, str) else arg
        if isinstance(parts, list) and len(parts) == 2 and all(isinstance(p, str) for p in parts):
            return "${" + ".".join(parts) + "}"
        return None
    if key == "Fn::Sub":
        if isinstance(arg, str):
            return arg
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[0], str) and not arg[1]:
            return arg[0]
    return None


class Scope:
    """The ARNs this stack's functions may touch, as ``Fn::Sub`` text."""

    def __init__(self, template: Template) -> None:
        self.api = only_resource_id(template, "AWS::ApiGatewayV2::Api")
        tables = resources_of(template, "AWS::DynamoDB::Table")
        self.table = CONNECTIONS_TABLE
        assert set(tables) <= {CONNECTIONS_TABLE, LEDGER_TABLE}, sorted(tables)
        stage = template["Resources"][only_resource_id(template, "AWS::ApiGatewayV2::Stage")]
        self.stage_param = stage["Properties"]["StageName"]["Ref"]
        self.table_arns = {
            "${" + self.table + ".Arn}",
            "${" + self.table + ".Arn}/index/" + aws_limits.ROOM_INDEX,
            "${" + LEDGER_TABLE + ".Arn}",
        }
        self.queues = {"${" + FAILURE_QUEUE + ".Arn}"}
        """Where failed fan-out events go (EventInvokeConfig's on-failure destination)."""
        self.execute_api_prefix = (
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
            "${" + self.api + "}/${" + self.stage_param + "}/"
        )
        self.manage_connections = re.compile(
            re.escape(self.execute_api_prefix) + r"(GET|POST|DELETE)/@connections/\*"
        )
        self.invocable = {"${" + FANOUT_FUNCTION + ".Arn}"}
        """The one function a function of this stack may invoke."""


def statement_violations(where: str, statement: Any, scope: Scope) -> list[str]:
    """Why one IAM statement is broader than this stack needs (empty when it is not)."""
    if not isinstance(statement, dict):
        return [f"{where}: statement is not a mapping: {statement!r}"]
    problems = [
        f"{where}: {key} is never least privilege"
        for key in ("NotAction", "NotResource")
        if key in statement
    ]
    actions = as_list(statement.get("Action", []))
    if not actions:
        problems.append(f"{where}: no Action")
    for action in actions:
        if not isinstance(action, str) or "*" in action:
            problems.append(f"{where}: wildcard or opaque action {action!r}")
    if "Principal" in statement:  # a trust policy: who may assume the role
        if actions != ["sts:AssumeRole"] or statement["Principal"] != {
            "Service": ["lambda.amazonaws.com"]
        }:
            problems.append(f"{where}: unexpected trust statement {statement!r}")
        return problems
    resources = [sub_text(r) for r in as_list(statement.get("Resource", []))]
    if not resources:
        problems.append(f"{where}: no Resource")
    for resource in resources:
        if resource is None:
            problems.append(f"{where}: resource is an intrinsic this test cannot read")
        elif resource.strip() == "*":
            problems.append(f"{where}: Resource '*'")
    readable = [r for r in resources if r is not None]
    for action in (a for a in actions if isinstance(a, str)):
        if action.startswith("dynamodb:"):
            allowed: Callable[[str], bool] = scope.table_arns.__contains__
        elif action == "execute-api:ManageConnections":

            def allowed(resource: str) -> bool:
                return scope.manage_connections.fullmatch(resource) is not None

        elif action == "lambda:InvokeFunction":
            allowed = scope.invocable.__contains__
        elif action == "sqs:SendMessage":
            allowed = scope.queues.__contains__
        else:
            problems.append(f"{where}: action {action} is outside this stack's needs")
            continue
        problems += [f"{where}: {action} on {r!r}" for r in readable if not allowed(r)]
    return problems


def sam_policy_violations(template: Template) -> list[str]:
    """Least-privilege problems in the source's ``Policies`` (inline statements only)."""
    scope = Scope(template)
    problems: list[str] = []
    globals_policies = template.get("Globals", {}).get("Function", {}).get("Policies")
    if globals_policies is not None:
        problems.append("Globals: Policies would grant every function the same rights")
    for logical_id, function in resources_of(template, "AWS::Serverless::Function").items():
        props = function.get("Properties", {})
        if "Role" in props:
            problems.append(f"{logical_id}: an external Role cannot be checked here")
        for index, conditional in enumerate(as_list(props.get("Policies", []))):
            where = f"{logical_id}.Policies[{index}]"
            for policy in if_branches(conditional):
                if policy == NO_VALUE:
                    continue
                if not (isinstance(policy, dict) and set(policy) <= {"Version", "Statement"}):
                    problems.append(f"{where}: only inline statements are accepted: {policy!r}")
                    continue
                for number, statement in enumerate(as_list(policy.get("Statement", []))):
                    where_statement = f"{where}.Statement[{number}]"
                    problems += statement_violations(where_statement, statement, scope)
    return problems


def role_violations(translated: Template) -> list[str]:
    """Least-privilege problems in every IAM role of the translated template."""
    scope = Scope(translated)
    problems: list[str] = []
    for logical_id, role in resources_of(translated, "AWS::IAM::Role").items():
        props = role["Properties"]
        trust = props.get("AssumeRolePolicyDocument", {})
        for number, statement in enumerate(as_list(trust.get("Statement", []))):
            where = f"{logical_id}.AssumeRolePolicyDocument[{number}]"
            problems += statement_violations(where, statement, scope)
        for arn in props.get("ManagedPolicyArns", []):
            if arn != LAMBDA_BASIC_EXECUTION:
                problems.append(f"{logical_id}: managed policy {arn!r}")
        for conditional in props.get("Policies", []):
            for policy in if_branches(conditional):
                if policy == NO_VALUE:
                    continue
                document = policy["PolicyDocument"]
                for number, statement in enumerate(as_list(document.get("Statement", []))):
                    where = f"{logical_id}.{policy['PolicyName']}[{number}]"
                    problems += statement_violations(where, statement, scope)
    return problems


def permission_violations(template: Template) -> list[str]:
    """Every Lambda permission must name this API and stage as its only caller."""
    scope = Scope(template)
    problems: list[str] = []
    for logical_id, permission in resources_of(template, "AWS::Lambda::Permission").items():
        props = permission["Properties"]
        if props.get("Principal") != "apigateway.amazonaws.com":
            problems.append(f"{logical_id}: principal {props.get('Principal')!r}")
        if props.get("Action") != "lambda:InvokeFunction":
            problems.append(f"{logical_id}: action {props.get('Action')!r}")
        if "SourceArn" not in props:
            problems.append(f"{logical_id}: no SourceArn, so any API in any account may invoke")
            continue
        source = sub_text(props["SourceArn"])
        if source is None or not source.startswith(scope.execute_api_prefix):
            problems.append(f"{logical_id}: SourceArn {props['SourceArn']!r} is not this stage")
        elif "*" in source:
            problems.append(f"{logical_id}: SourceArn {source!r} has a wildcard")
    return problems


def route_functions(template: Template) -> dict[str, str]:
    """Route key to the logical id of the function its integration invokes."""
    routes: dict[str, str] = {}
    for logical_id, route in resources_of(template, "AWS::ApiGatewayV2::Route").items():
        target = sub_text(route["Properties"]["Target"])
        match = re.fullmatch(r"integrations/\$\{(\w+)\}", target or "")
        assert match, f"{logical_id}: Target {route['Properties']['Target']!r}"
        integration = template["Resources"][match.group(1)]
        assert integration["Type"] == "AWS::ApiGatewayV2::Integration", match.group(1)
        uri = sub_text(integration["Properties"]["IntegrationUri"]) or ""
        function = re.fullmatch(
            r"arn:\$\{AWS::Partition\}:apigateway:\$\{AWS::Region\}:lambda:path/2015-03-31"
            r"/functions/\$\{(\w+)\.Arn\}/invocations",
            uri,
        )
        assert function, f"{match.group(1)}: IntegrationUri {uri!r}"
        routes[route["Properties"]["RouteKey"]] = function.group(1)
    return routes


def if_branches(value: Any) -> list[Any]:
    """Every value an ``Fn::If`` (nested or not) can take; a plain value is its own branch."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _condition, if_true, if_false = value["Fn::If"]
        return if_branches(if_true) + if_branches(if_false)
    return [value]


def handler_names(template: Template) -> list[tuple[str, str]]:
    """(function logical id, ``module.function``), with every branch of any (nested) ``Fn::If``."""
    default = template.get("Globals", {}).get("Function", {}).get("Handler")
    names: list[tuple[str, str]] = []

    for logical_id, function in resources_of(template, "AWS::Serverless::Function").items():
        handler = function.get("Properties", {}).get("Handler", default)
        for branch in if_branches(handler):
            assert isinstance(branch, str), f"{logical_id}: Handler {branch!r}"
            names.append((logical_id, branch))
    return names


# ---------------------------------------------------------------------------
# 1-2. cfn-lint, the SAM translator, cfn-lint again


def test_cfn_lint_passes_on_the_source() -> None:
    assert lint_problems(TEMPLATE_PATH.read_text(encoding="utf-8")) == []


def test_stage_loader_reads_what_cfn_lint_reads() -> None:
    """The local stage's YAML loader and cfn-lint's agree on every intrinsic in the file."""
    assert load_template(TEMPLATE_PATH) == _SOURCE


def test_translates_and_the_translation_lints_clean(translated: Template) -> None:
    assert "Transform" not in translated
    assert not resources_of(translated, "AWS::Serverless::Function")
    functions = resources_of(translated, "AWS::Lambda::Function")
    assert set(functions) == set(route_functions(translated).values()) | {FANOUT_FUNCTION}
    # the translator keeps conditions: CloudFormation creates these for sharded only
    assert functions[FANOUT_FUNCTION]["Condition"] == SHARDED_CONDITION
    assert translated["Resources"][FANOUT_FUNCTION + "Role"]["Condition"] == SHARDED_CONDITION
    assert lint_problems(json.dumps(translated)) == []


def test_translator_accepts_the_stage_loaders_output() -> None:
    translated = translate(load_template(TEMPLATE_PATH), "baseline")
    assert len(resources_of(translated, "AWS::Lambda::Function")) == 5


# ---------------------------------------------------------------------------
# 3. The WebSocket API and its four routes


def test_api_is_a_websocket_api_selecting_on_body_action() -> None:
    api = _SOURCE["Resources"][only_resource_id(_SOURCE, "AWS::ApiGatewayV2::Api")]
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert api["Properties"]["RouteSelectionExpression"] == "$request.body.action"


def test_each_route_is_an_aws_proxy_integration_to_a_function() -> None:
    api_ref = {"Ref": only_resource_id(_SOURCE, "AWS::ApiGatewayV2::Api")}
    routes = route_functions(_SOURCE)
    assert set(routes) == ROUTE_KEYS
    functions = resources_of(_SOURCE, "AWS::Serverless::Function")
    assert set(routes.values()) <= set(functions)
    for integration in resources_of(_SOURCE, "AWS::ApiGatewayV2::Integration").values():
        assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
        assert integration["Properties"]["ApiId"] == api_ref
    for route in resources_of(_SOURCE, "AWS::ApiGatewayV2::Route").values():
        assert route["Properties"]["ApiId"] == api_ref


def test_deployment_waits_for_every_route_and_the_stage_uses_it() -> None:
    routes = set(resources_of(_SOURCE, "AWS::ApiGatewayV2::Route"))
    deployment_id = only_resource_id(_SOURCE, "AWS::ApiGatewayV2::Deployment")
    assert set(as_list(_SOURCE["Resources"][deployment_id].get("DependsOn", []))) >= routes
    stage = _SOURCE["Resources"][only_resource_id(_SOURCE, "AWS::ApiGatewayV2::Stage")]
    assert stage["Properties"]["DeploymentId"] == {"Ref": deployment_id}


def test_each_route_may_invoke_only_its_own_function() -> None:
    scope = Scope(_SOURCE)
    permissions = resources_of(_SOURCE, "AWS::Lambda::Permission").values()
    for route_key, function in route_functions(_SOURCE).items():
        sources = [
            sub_text(p["Properties"].get("SourceArn"))
            for p in permissions
            if p["Properties"]["FunctionName"] == {"Ref": function}
        ]
        assert sources == [scope.execute_api_prefix + route_key], (route_key, function)


# ---------------------------------------------------------------------------
# 4. Every Handler is a callable in handlers/


@pytest.mark.parametrize(("logical_id", "handler"), handler_names(_SOURCE), ids=str)
def test_handler_resolves_to_a_callable_in_handlers(
    logical_id: str, handler: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    module_name, _, function_name = handler.rpartition(".")
    assert module_name, f"{logical_id}: {handler!r} is not module.function"
    module = importlib.import_module(module_name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == HANDLERS_DIR.resolve(), module.__file__
    function = getattr(module, function_name, None)
    assert callable(function), f"{logical_id}: {handler} is not callable"
    inspect.signature(function).bind({}, None)  # Lambda calls handler(event, context)


def test_every_sendmessage_variant_is_a_handler() -> None:
    assert {
        h for f, h in handler_names(_SOURCE) if f == route_functions(_SOURCE)["sendmessage"]
    } == set(VARIANT_HANDLERS.values())


def test_variant_parameter_allows_exactly_the_variants_the_stage_accepts() -> None:
    assert _SOURCE["Parameters"]["Variant"]["AllowedValues"] == list(VARIANTS)
    assert STAGE_VARIANTS == VARIANTS


# ---------------------------------------------------------------------------
# 5. The local stage resolves the same template


@pytest.mark.parametrize(("variant", "handler"), VARIANT_HANDLERS.items())
def test_stage_template_picks_the_variants_handler(variant: str, handler: str) -> None:
    stage = stage_template(load_template(TEMPLATE_PATH), {"Variant": variant}, "t")
    assert stage.routes["sendmessage"].handler == handler
    assert set(stage.routes) == ROUTE_KEYS
    assert stage.route_selection_expression == "$request.body.action"
    tables = {table.logical_id: table for table in stage.tables}
    assert tables[CONNECTIONS_TABLE].ttl_attribute == aws_limits.TTL_ATTRIBUTE
    assert tables[CONNECTIONS_TABLE].name == "t"
    assert stage.routes["sendmessage"].environment["TABLE_NAME"] == "t"
    if variant == "sharded":  # the ledger has its own name, so the stage's table keeps "t"
        ledger_name = tables[LEDGER_TABLE].name
        assert ledger_name.endswith("-fanout-ledger")
        assert stage.routes["sendmessage"].environment["LEDGER_TABLE"] == ledger_name
        assert stage.functions[FANOUT_FUNCTION].environment["LEDGER_TABLE"] == ledger_name
    else:
        assert set(tables) == {CONNECTIONS_TABLE}


@pytest.mark.parametrize("kind", POST_CLIENTS)
def test_post_client_parameter_reaches_sendmessage_and_the_fanout(kind: str) -> None:
    parameters = {"PostClient": kind, "Variant": "sharded"}
    stage = stage_template(load_template(TEMPLATE_PATH), parameters, "t")
    assert stage.routes["sendmessage"].environment["POST_CLIENT"] == kind
    assert stage.functions[FANOUT_FUNCTION].environment["POST_CLIENT"] == kind


def test_post_client_parameter_allows_what_the_handlers_accept() -> None:
    parameter = _SOURCE["Parameters"]["PostClient"]
    assert parameter["AllowedValues"] == list(POST_CLIENTS)
    assert parameter["Default"] == DEFAULT_POST_CLIENT
    default = stage_template(load_template(TEMPLATE_PATH), {}, "t")
    assert default.routes["sendmessage"].environment["POST_CLIENT"] == DEFAULT_POST_CLIENT


@pytest.mark.parametrize("variant", VARIANTS)
def test_stage_template_has_the_fanout_function_for_sharded_only(variant: str) -> None:
    stage = stage_template(load_template(TEMPLATE_PATH), {"Variant": variant}, "t")
    send = stage.routes["sendmessage"]
    routed = {spec.logical_id: spec for spec in stage.routes.values()}
    assert {k: v for k, v in stage.functions.items() if k in routed} == routed
    unrouted = set(stage.functions) - set(routed)
    assert unrouted == ({FANOUT_FUNCTION} if variant == "sharded" else set())
    assert stage.unemulated == {}
    assert set(stage.by_function_name) == set(stage.functions)  # no FunctionName given
    if variant == "sharded":
        fanout = stage.functions[FANOUT_FUNCTION]
        assert fanout.handler == "fanout.handler"
        assert fanout.environment["TABLE_NAME"] == "t"
        # on the stage a function's name is its logical id: what Ref gives sendmessage
        assert send.environment["FANOUT_FUNCTION"] == FANOUT_FUNCTION
        assert int(send.environment["SHARD_SIZE"]) >= 1
    else:
        assert FANOUT_FUNCTION not in stage.functions
        assert send.environment["FANOUT_FUNCTION"] == ""


def test_the_fanout_function_may_do_only_what_it_calls() -> None:
    """Posts (ManageConnections), the stale-id cleanup (``delete_many``: BatchWriteItem,
    unconditional) on this table and this API's stage, the ledger's claim and mark
    (``ledger``: PutItem, UpdateItem) on the ledger only, and its failed events to its
    on-failure queue; nothing else."""
    policies = _SOURCE["Resources"][FANOUT_FUNCTION]["Properties"]["Policies"]
    grants = {
        (action, json.dumps(statement["Resource"], sort_keys=True))
        for policy in policies
        for statement in as_list(policy["Statement"])
        for action in as_list(statement["Action"])
    }
    table_arn = json.dumps({"Fn::GetAtt": ["ConnectionsTable", "Arn"]})
    ledger_arn = json.dumps({"Fn::GetAtt": [LEDGER_TABLE, "Arn"]})
    queue_arn = json.dumps({"Fn::GetAtt": [FAILURE_QUEUE, "Arn"]})
    assert {action for action, _ in grants} == {
        "dynamodb:BatchWriteItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "execute-api:ManageConnections",
        "sqs:SendMessage",
    }
    assert ("dynamodb:BatchWriteItem", table_arn) in grants
    assert {r for a, r in grants if a in ("dynamodb:PutItem", "dynamodb:UpdateItem")} == {
        ledger_arn
    }
    assert {r for a, r in grants if a == "sqs:SendMessage"} == {queue_arn}


def test_shard_size_parameter_matches_the_handlers_default_and_bounds() -> None:
    shard_size = _SOURCE["Parameters"]["ShardSize"]
    assert shard_size["Default"] == sharding.DEFAULT_SHARD_SIZE
    assert (shard_size["MinValue"], shard_size["MaxValue"]) == (1, sharding.MAX_SHARD_SIZE)


def _invoke_statement(template: Template) -> dict[str, Any]:
    """sendmessage's ``lambda:InvokeFunction`` statement (inside its ``Fn::If``)."""
    policies = template["Resources"][SEND_FUNCTION]["Properties"]["Policies"]
    (conditional,) = [p for p in policies if isinstance(p, dict) and "Fn::If" in p]
    statement: dict[str, Any] = conditional["Fn::If"][1]["Statement"][0]
    return statement


def test_only_sendmessage_may_invoke_and_only_the_fanout_function() -> None:
    grants: list[tuple[str, Any]] = []
    for logical_id, function in resources_of(_SOURCE, "AWS::Serverless::Function").items():
        for conditional in as_list(function["Properties"].get("Policies", [])):
            for branch in if_branches(conditional):
                if branch == NO_VALUE:
                    continue
                for statement in as_list(branch.get("Statement", [])):
                    if any(a.startswith("lambda:") for a in as_list(statement["Action"])):
                        grants.append((logical_id, conditional))
    assert len(grants) == 1, grants
    holder, conditional = grants[0]
    assert holder == SEND_FUNCTION
    condition, _if_true, if_false = conditional["Fn::If"]
    assert (condition, if_false) == (SHARDED_CONDITION, NO_VALUE)
    statement = _invoke_statement(_SOURCE)
    assert statement["Action"] == ["lambda:InvokeFunction"]
    assert statement["Resource"] == {"Fn::GetAtt": [FANOUT_FUNCTION, "Arn"]}


def test_the_fanout_function_is_sharded_only_unrouted_and_named_to_sendmessage() -> None:
    fanout = _SOURCE["Resources"][FANOUT_FUNCTION]
    assert fanout["Condition"] == SHARDED_CONDITION
    assert FANOUT_FUNCTION not in route_functions(_SOURCE).values()
    assert _SOURCE["Conditions"][SHARDED_CONDITION] == {
        "Fn::Equals": [{"Ref": "Variant"}, "sharded"]
    }
    variables = _SOURCE["Resources"][SEND_FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["FANOUT_FUNCTION"] == {
        "Fn::If": [SHARDED_CONDITION, {"Ref": FANOUT_FUNCTION}, ""]
    }
    assert "sharded" in _SOURCE["Parameters"]["Variant"]["AllowedValues"]


def _invoke_set(key: str, value: Any) -> Callable[[Template], None]:
    def mutate(template: Template) -> None:
        _invoke_statement(template)[key] = value

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_invoke_set("Resource", "*"), id="invoke-any-function"),
        pytest.param(
            _invoke_set("Resource", {"Fn::GetAtt": [SEND_FUNCTION, "Arn"]}), id="invoke-itself"
        ),
        pytest.param(
            _invoke_set(
                "Resource",
                {"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:*"},
            ),
            id="invoke-any-function-in-the-account",
        ),
        pytest.param(_invoke_set("Action", ["lambda:*"]), id="lambda-star"),
        pytest.param(_invoke_set("Action", ["lambda:UpdateFunctionCode"]), id="foreign-lambda"),
    ],
)
def test_least_privilege_check_catches_a_broad_invoke_grant(
    mutate: Callable[[Template], None],
) -> None:
    template = source_template()
    mutate(template)
    assert sam_policy_violations(template)
    assert role_violations(translate(template, "sharded"))


def test_stage_template_rejects_an_unknown_parameter() -> None:
    with pytest.raises(ValueError, match="unknown template parameters"):
        stage_template(load_template(TEMPLATE_PATH), {"Varient": "baseline"}, "t")


# ---------------------------------------------------------------------------
# 6. Least privilege


def test_sam_policies_are_least_privilege() -> None:
    assert sam_policy_violations(_SOURCE) == []


def test_translated_roles_are_least_privilege(translated: Template) -> None:
    assert resources_of(translated, "AWS::IAM::Role")
    assert role_violations(translated) == []


def test_every_lambda_permission_is_scoped_to_this_api_and_stage(translated: Template) -> None:
    assert len(resources_of(_SOURCE, "AWS::Lambda::Permission")) == len(ROUTE_KEYS)
    assert permission_violations(_SOURCE) == []
    assert permission_violations(translated) == []


def _statement(function: str, number: int) -> Callable[[Template], dict[str, Any]]:
    def locate(template: Template) -> dict[str, Any]:
        policies = template["Resources"][function]["Properties"]["Policies"]
        statement: dict[str, Any] = policies[0]["Statement"][number]
        return statement

    return locate


_CONNECT_PUT = _statement("ConnectFunction", 0)
_SEND_QUERY = _statement("SendMessageFunction", 1)
_SEND_POST = _statement("SendMessageFunction", 2)


def _set(
    locate: Callable[[Template], dict[str, Any]], key: str, value: Any
) -> Callable[[Template], None]:
    def mutate(template: Template) -> None:
        locate(template)[key] = value

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_set(_CONNECT_PUT, "Resource", "*"), id="resource-star"),
        pytest.param(_set(_CONNECT_PUT, "Resource", ["*"]), id="resource-star-list"),
        pytest.param(_set(_CONNECT_PUT, "Action", ["dynamodb:*"]), id="action-star"),
        pytest.param(_set(_CONNECT_PUT, "Action", "dynamodb:Put*"), id="action-glob"),
        pytest.param(_set(_CONNECT_PUT, "Action", ["s3:GetObject"]), id="foreign-action"),
        pytest.param(
            _set(_CONNECT_PUT, "Resource", {"Fn::Sub": "arn:${AWS::Partition}:dynamodb:*"}),
            id="dynamodb-on-any-table",
        ),
        pytest.param(
            _set(_SEND_QUERY, "Resource", {"Fn::Sub": "${ConnectionsTable.Arn}/index/*"}),
            id="any-index",
        ),
        pytest.param(
            _set(
                _SEND_POST,
                "Resource",
                {
                    "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:"
                    "${AWS::AccountId}:*/@connections/*"
                },
            ),
            id="manage-connections-any-api",
        ),
        pytest.param(
            _set(
                _SEND_POST,
                "Resource",
                {
                    "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:"
                    "${AWS::AccountId}:${ChatApi}/*/POST/@connections/*"
                },
            ),
            id="manage-connections-any-stage",
        ),
    ],
)
def test_least_privilege_check_catches(mutate: Callable[[Template], None]) -> None:
    template = source_template()
    mutate(template)
    assert sam_policy_violations(template)
    assert role_violations(translate(template, "optimized"))


def test_permission_check_catches_a_missing_or_broad_source_arn() -> None:
    template = source_template()
    template["Resources"]["ConnectPermission"]["Properties"].pop("SourceArn", None)
    template["Resources"]["DefaultPermission"]["Properties"]["SourceArn"] = {
        "Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*"
    }
    problems = permission_violations(template)
    assert any(p.startswith("ConnectPermission: no SourceArn") for p in problems), problems
    assert any(p.startswith("DefaultPermission:") for p in problems), problems


# ---------------------------------------------------------------------------
# 7. The table the handlers assume


def test_table_matches_aws_limits() -> None:
    table = _SOURCE["Resources"][CONNECTIONS_TABLE]
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": aws_limits.CONNECTION_KEY, "KeyType": "HASH"}]
    assert sorted(props["AttributeDefinitions"], key=lambda d: d["AttributeName"]) == sorted(
        [
            {"AttributeName": aws_limits.CONNECTION_KEY, "AttributeType": "S"},
            {"AttributeName": aws_limits.ROOM_ATTRIBUTE, "AttributeType": "S"},
        ],
        key=lambda d: d["AttributeName"],
    )
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == aws_limits.ROOM_INDEX
    assert index["KeySchema"] == [{"AttributeName": aws_limits.ROOM_ATTRIBUTE, "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {
        "AttributeName": aws_limits.TTL_ATTRIBUTE,
        "Enabled": True,
    }


def test_auth_token_is_no_echo_and_never_output() -> None:
    assert _SOURCE["Parameters"]["AuthToken"]["NoEcho"] is True
    assert "AuthToken" not in json.dumps(_SOURCE.get("Outputs", {}))


# ---------------------------------------------------------------------------
# 8. Function sizing and runtime


def test_functions_declare_timeout_memory_and_runtime() -> None:
    globals_ = _SOURCE.get("Globals", {}).get("Function", {})
    for logical_id, function in resources_of(_SOURCE, "AWS::Serverless::Function").items():
        props = {**globals_, **function.get("Properties", {})}
        assert isinstance(props.get("Timeout"), int), f"{logical_id}: no explicit Timeout"
        assert isinstance(props.get("MemorySize"), int), f"{logical_id}: no explicit MemorySize"
        assert props.get("Runtime") == RUNTIME, logical_id


def test_translated_functions_fit_the_integration_timeout(translated: Template) -> None:
    routed = set(route_functions(translated).values())
    functions = resources_of(translated, "AWS::Lambda::Function")
    assert routed <= set(functions)
    for logical_id, function in functions.items():
        props = function["Properties"]
        assert props["Runtime"] == RUNTIME, logical_id
        assert 128 <= props["MemorySize"] <= 10_240, logical_id
        # API Gateway stops waiting at 29 s: a longer Lambda timeout only bills for nothing.
        assert 1 <= props["Timeout"] <= aws_limits.INTEGRATION_TIMEOUT_S, logical_id


# ---------------------------------------------------------------------------
# 9. Negative controls: the pipeline that passes the template rejects broken copies


def _globals_runtime(template: Template) -> None:
    template["Globals"]["Function"]["Runtime"] = "python2.1"


def _policy_effect_typo(template: Template) -> None:
    statement = template["Resources"]["ConnectFunction"]["Properties"]["Policies"][0]
    statement["Statement"][0]["Effect"] = "Alow"


def _bad_policy_template_parameter(template: Template) -> None:
    policies = template["Resources"]["ConnectFunction"]["Properties"]["Policies"]
    policies.append({"DynamoDBCrudPolicy": {"TableNam": {"Ref": "ConnectionsTable"}}})


def _billing_mode_typo(template: Template) -> None:
    template["Resources"]["ConnectionsTable"]["Properties"]["BillingMode"] = "PAY_PER_REQUESTS"


def test_validation_pipeline_passes_the_unbroken_template() -> None:
    """The control for the controls below: the same pipeline on an untouched copy."""
    assert validation_problems(source_template(), "optimized") == []


@pytest.mark.parametrize(
    ("mutate", "caught_by"),
    [
        # cfn-lint does not expand Globals: only the translated template shows the runtime.
        pytest.param(_globals_runtime, "translated", id="globals-runtime-python2.1"),
        # Nor does it read the IAM documents inside SAM Policies.
        pytest.param(_policy_effect_typo, "translated", id="policy-effect-typo"),
        pytest.param(_bad_policy_template_parameter, "sam-translator", id="policy-template-param"),
        pytest.param(_billing_mode_typo, "source", id="billing-mode-typo"),
    ],
)
def test_validation_pipeline_rejects_a_broken_copy(
    mutate: Callable[[Template], None], caught_by: str
) -> None:
    broken = source_template()
    mutate(broken)
    problems = validation_problems(broken, "optimized")
    assert any(p.startswith(f"{caught_by}: ") for p in problems), problems


# ---------------------------------------------------------------------------
# Two stacks side by side (README, "Two variants on AWS")

PHYSICAL_NAME_KEYS = frozenset(
    {"TableName", "FunctionName", "RoleName", "Name", "LogGroupName", "TopicName", "QueueName"}
)
"""Properties that fix a resource's name in the account (where the resource type has it)."""
NAME_REFERENCE_TYPES = frozenset(
    {"AWS::Lambda::Permission", "AWS::Lambda::EventSourceMapping", "AWS::Lambda::EventInvokeConfig"}
)
"""Types whose ``FunctionName`` names another resource rather than their own."""


def _names_the_stack(value: Any) -> bool:
    text = json.dumps(value)
    return "AWS::StackName" in text


def fixed_names(template: Template) -> list[str]:
    """Resources and exports whose names would collide between two stacks of one template
    in one account and region (a name that does not include the stack's)."""
    found = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") in NAME_REFERENCE_TYPES:
            continue
        for key, value in resource.get("Properties", {}).items():
            if key in PHYSICAL_NAME_KEYS and not _names_the_stack(value):
                found.append(f"{logical_id}.{key}")
    for name, output in template.get("Outputs", {}).items():
        export = output.get("Export")
        if export is not None and not _names_the_stack(export):
            found.append(f"Outputs.{name}.Export")
    return found


def test_two_stacks_of_the_template_coexist_in_one_account(translated: Template) -> None:
    """fanbench-baseline and fanbench-optimized deploy side by side: no fixed name."""
    assert fixed_names(source_template()) == []
    assert fixed_names(translated) == []


@pytest.mark.parametrize(
    ("resource", "key", "value"),
    [
        ("ConnectionsTable", "TableName", "fanbench-connections"),
        ("SendMessageFunction", "FunctionName", "fanbench-sendmessage"),
        ("ChatApi", "Name", "fanbench-chat"),
    ],
)
def test_a_fixed_name_is_caught(resource: str, key: str, value: str) -> None:
    template = source_template()
    template["Resources"][resource]["Properties"][key] = value
    assert fixed_names(template) == [f"{resource}.{key}"]
    assert fixed_names(translate(template, "optimized")) != []


def test_fanout_events_are_bounded_retried_and_never_dropped_silently() -> None:
    """A throttled shard must not arrive hours late (the 6 h default age) or vanish:
    a bounded age, retries the ledger makes safe, and an SQS on-failure destination."""
    fanout = source_template()["Resources"][FANOUT_FUNCTION]
    config = fanout["Properties"]["EventInvokeConfig"]
    assert 60 <= config["MaximumEventAgeInSeconds"] <= 3600
    assert config["MaximumRetryAttempts"] == 2
    on_failure = config["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS"
    assert sub_text(on_failure["Destination"]) == "${" + FAILURE_QUEUE + ".Arn}"
    queue = source_template()["Resources"][FAILURE_QUEUE]
    assert (queue["Type"], queue["Condition"]) == ("AWS::SQS::Queue", "UseSharded")
    # The ledger keeps a claim longer than any retry of the event can arrive.
    assert (
        config["MaximumEventAgeInSeconds"] + sum(aws_limits.LAMBDA_ASYNC_RETRY_DELAYS_S)
        < ledger.TTL_S
    )


def test_the_ledger_table_is_the_one_ledger_py_writes() -> None:
    table = source_template()["Resources"][LEDGER_TABLE]
    assert table["Condition"] == "UseSharded"
    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": ledger.LEDGER_KEY, "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {
        "AttributeName": ledger.EXPIRES_AT,
        "Enabled": True,
    }
    for function in (FANOUT_FUNCTION, "SendMessageFunction"):
        variables = source_template()["Resources"][function]["Properties"]["Environment"]
        assert "LEDGER_TABLE" in variables["Variables"]
