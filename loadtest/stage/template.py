"""Resolve a SAM/CloudFormation template into what a local stage runs (pure).

fanbench's own template.yaml is the default; a user's own template (``fanbench
stage --template``) goes through the same resolver. What the stage needs is
the WebSocket API's route selection expression and routes, the Lambda function
behind each route (handler, runtime, code directory, environment, memory,
timeout), every other function the template creates (a handler may invoke it
through Lambda's Invoke API) and the DynamoDB tables. Other resources no route
depends on (an HTTP API, an event source mapping) are left out.

Intrinsics are evaluated by ``loadtest.stage.intrinsics``. Anything a route
depends on that the stage cannot run raises ``TemplateError`` with one line
naming the resource and what it uses, so the stage never guesses; a function no
route reaches that uses it is listed in ``StageTemplate.unemulated`` instead,
with that line.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loadtest.stage.intrinsics import (
    API,
    INTEGRATION,
    LAMBDA_ARN_FUNCTION,
    LOCAL_ACCOUNT_ID,
    LOCAL_REGION,
    LOCAL_STACK_NAME,
    NO_VALUE,
    ROUTE,
    SAM_FUNCTION,
    SIMPLE_TABLE,
    TABLE_TYPES,
    ApiSite,
    Resolver,
    TemplateError,
    cfn_text,
    load_template,
    stage_parameters,
)
from loadtest.stage.routing import selection_key

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
SUPPORTED_RUNTIMES = ("python3", "nodejs")
"""Runtime prefixes the stage runs: the stage's own Python runs every python3.x, the
``node`` on PATH every nodejs*."""

__all__ = [
    "LOCAL_ACCOUNT_ID",
    "LOCAL_REGION",
    "LOCAL_STACK_NAME",
    "ApiSite",
    "FunctionSpec",
    "StageTemplate",
    "TableSpec",
    "TemplateError",
    "inline_code_file",
    "load_template",
    "missing_code",
    "read_stage_template",
    "stage_parameters",
    "stage_template",
    "write_inline_code",
]


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    handler: str
    """As the template says: ``module.function`` (Python) or ``file.export`` (Node.js)."""
    timeout_s: float
    memory_mb: int
    environment: dict[str, str] = field(default_factory=dict)
    runtime: str = "python3.12"
    code_dir: Path = Path("handlers")
    """The function's CodeUri, relative paths resolved against the template's directory:
    Lambda's task root, first on the handler's import path."""
    function_name: str = ""
    """The function's name (``FunctionName``, else its logical id): ``Ref`` of it, and
    ``AWS_LAMBDA_FUNCTION_NAME``."""
    inline_code: str = ""
    """``Code.ZipFile`` / ``InlineCode``: the source, which the stage writes to ``index.js``
    or ``index.py`` (as CloudFormation does) in a directory that becomes ``code_dir``."""

    @property
    def name(self) -> str:
        return self.function_name or self.logical_id


@dataclass(frozen=True)
class TableSpec:
    key_schema: list[dict[str, str]]
    attribute_definitions: list[dict[str, str]]
    global_secondary_indexes: list[dict[str, Any]]
    ttl_attribute: str | None
    logical_id: str = ""
    name: str = ""
    local_secondary_indexes: list[dict[str, Any]] = field(default_factory=list)

    def create_table_kwargs(self, table_name: str | None = None) -> dict[str, Any]:
        """Arguments for DynamoDB ``CreateTable``, as the template declares the table.

        Billing is on demand whatever the template says: capacity is not emulated.
        """
        kwargs: dict[str, Any] = {
            "TableName": table_name or self.name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": self.key_schema,
            "AttributeDefinitions": self.attribute_definitions,
        }
        if self.global_secondary_indexes:
            kwargs["GlobalSecondaryIndexes"] = self.global_secondary_indexes
        if self.local_secondary_indexes:
            kwargs["LocalSecondaryIndexes"] = self.local_secondary_indexes
        return kwargs


@dataclass(frozen=True)
class StageTemplate:
    routes: dict[str, FunctionSpec]
    """Route key (``$connect``, ``sendmessage``, ...) to the function behind it."""
    route_selection_expression: str
    tables: tuple[TableSpec, ...] = ()
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    """Every function the template creates for these parameters, by logical id, routed
    or not: what the gateway and Lambda's Invoke API run (the routes' specs among them)."""
    unemulated: dict[str, str] = field(default_factory=dict)
    """Functions no route reaches that the stage cannot run, by function name, with why:
    left out rather than refusing the template, and named if something invokes them."""

    @property
    def table(self) -> TableSpec:
        """The template's one table (fanbench's own template has exactly one)."""
        if len(self.tables) != 1:
            raise TemplateError(f"expected one DynamoDB table, found {len(self.tables)}")
        return self.tables[0]

    @property
    def by_function_name(self) -> dict[str, FunctionSpec]:
        """The functions by name (``FunctionName``, else the logical id): what Invoke takes,
        and what ``Ref`` of a function gives a handler."""
        return {spec.name: spec for spec in self.functions.values()}


def _refuse_transforms(template: Mapping[str, Any]) -> None:
    transform = template.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform] if transform else []
    for name in transforms:
        if name != SAM_TRANSFORM:
            raise TemplateError(f"Transform {name} is not emulated by the local stage")


def _websocket_api(resolver: Resolver) -> tuple[str, dict[str, Any]]:
    apis = [
        (logical_id, resource)
        for logical_id, resource in resolver.resources.items()
        if resource.get("Type") == API
        and resolver.value((resource.get("Properties") or {}).get("ProtocolType"), logical_id)
        == "WEBSOCKET"
    ]
    if not apis:
        raise TemplateError(f"the template defines no {API} with ProtocolType WEBSOCKET")
    if len(apis) > 1:
        names = ", ".join(logical_id for logical_id, _ in apis)
        raise TemplateError(f"the template defines several WebSocket APIs ({names}); keep one")
    return apis[0]


def _route_selection_expression(resolver: Resolver, api_id: str, api: dict[str, Any]) -> str:
    properties = api.get("Properties") or {}
    for unsupported in ("Body", "BodyS3Location"):
        if unsupported in properties:
            raise TemplateError(f"{api_id}: {unsupported} is not emulated by the local stage")
    expression = str(resolver.value(properties.get("RouteSelectionExpression", ""), api_id))
    try:
        selection_key(expression)
    except ValueError:
        raise TemplateError(
            f"{api_id}: RouteSelectionExpression {expression!r} is not emulated by the local "
            "stage (only $request.body.<field>)"
        ) from None
    return expression


def _route_integration(resolver: Resolver, route_id: str, properties: dict[str, Any]) -> str:
    """The logical id of the integration a route targets, refusing what is not emulated."""
    authorization = resolver.value(properties.get("AuthorizationType", "NONE"), route_id)
    if authorization != "NONE":
        raise TemplateError(
            f"{route_id}: AuthorizationType {authorization} is not emulated by the local stage"
        )
    unsupported = {
        "AuthorizerId": "an authorizer",
        "RequestModels": "request models (validation)",
        "ModelSelectionExpression": "request models (validation)",
        "RouteResponseSelectionExpression": "route responses",
    }
    for name, what in unsupported.items():
        if name in properties:
            raise TemplateError(f"{route_id}: {name} ({what}) is not emulated by the local stage")
    if resolver.value(properties.get("ApiKeyRequired", False), route_id) in (True, "true"):
        raise TemplateError(f"{route_id}: ApiKeyRequired is not emulated by the local stage")
    if "Target" not in properties:
        raise TemplateError(f"{route_id}: a route without a Target is not emulated")
    target = str(resolver.value(properties["Target"], route_id))
    integration_id = target.removeprefix("integrations/")
    integration = resolver.resources.get(integration_id)
    if not target.startswith("integrations/") or integration is None:
        raise TemplateError(f"{route_id}: Target {target!r} names no integration of the template")
    if integration.get("Type") != INTEGRATION:
        raise TemplateError(f"{route_id}: Target {integration_id} is not an {INTEGRATION}")
    return integration_id


def _integration_function(resolver: Resolver, integration_id: str) -> str:
    """The logical id of the function behind a Lambda proxy integration."""
    properties = resolver.resources[integration_id].get("Properties") or {}
    kind = resolver.value(properties.get("IntegrationType"), integration_id)
    if kind != "AWS_PROXY":
        raise TemplateError(
            f"{integration_id}: IntegrationType {kind} is not emulated by the local stage "
            "(only AWS_PROXY to a Lambda function)"
        )
    uri = str(resolver.value(properties.get("IntegrationUri", ""), integration_id))
    match = LAMBDA_ARN_FUNCTION.search(uri)
    by_name = {name: logical_id for logical_id, name in resolver.function_names.items()}
    if match is None or match.group(1) not in by_name:
        raise TemplateError(
            f"{integration_id}: IntegrationUri {uri!r} names no Lambda function of the template"
        )
    return by_name[match.group(1)]


def _function(resolver: Resolver, logical_id: str, base_dir: Path) -> FunctionSpec:
    resource = resolver.resources[logical_id]
    properties: dict[str, Any] = dict(resource.get("Properties") or {})
    sam = resource.get("Type") == SAM_FUNCTION
    globals_: dict[str, Any] = {}
    if sam:
        globals_ = (resolver.template.get("Globals") or {}).get("Function") or {}
        for name, value in globals_.items():
            properties.setdefault(name, value)

    def refuse(what: str) -> TemplateError:
        return TemplateError(f"{logical_id}: {what} is not emulated by the local stage")

    if resolver.value(properties.get("PackageType", "Zip"), logical_id) != "Zip":
        raise refuse("PackageType Image")
    if properties.get("Layers"):
        raise refuse("Layers")
    code = resolver.value(properties.get("CodeUri") if sam else properties.get("Code"), logical_id)
    inline = resolver.value(properties.get("InlineCode") if sam else None, logical_id)
    if isinstance(code, dict) and set(code) == {"ZipFile"}:
        inline, code = code["ZipFile"], None
    if inline is not None:
        if not isinstance(inline, str) or not inline:
            raise refuse("inline code that is not a string")
        code = "."
    if not isinstance(code, str) or not code:
        where = "CodeUri" if sam else "Code"
        raise refuse(f"{where} other than a local path ({code!r})")
    runtime = str(resolver.value(properties.get("Runtime", ""), logical_id))
    if not runtime.startswith(SUPPORTED_RUNTIMES):
        raise refuse(f"Runtime {runtime or '(none)'}")
    if "Handler" not in properties:
        raise TemplateError(f"{logical_id}: no Handler")
    variables = {
        **(((globals_.get("Environment") or {}).get("Variables")) or {}),
        **(((resource.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}),
    }
    environment = {
        name: cfn_text(value)
        for name, value in resolver.value(variables, logical_id).items()
        if value is not NO_VALUE
    }
    return FunctionSpec(
        logical_id=logical_id,
        handler=str(resolver.value(properties["Handler"], logical_id)),
        timeout_s=float(resolver.value(properties.get("Timeout", 3), logical_id)),
        memory_mb=int(resolver.value(properties.get("MemorySize", 128), logical_id)),
        environment=environment,
        runtime=runtime,
        code_dir=base_dir / code,
        function_name=resolver.function_names[logical_id],
        inline_code=inline or "",
    )


def _table(resolver: Resolver, logical_id: str) -> TableSpec:
    resource = resolver.resources[logical_id]
    properties = resolver.value(resource.get("Properties") or {}, logical_id)
    name = resolver.table_names[logical_id]
    if resource.get("Type") == SIMPLE_TABLE:
        key = properties.get("PrimaryKey") or {"Name": "id", "Type": "String"}
        kinds = {"String": "S", "Number": "N", "Binary": "B"}
        if key.get("Type") not in kinds:
            raise TemplateError(f"{logical_id}: PrimaryKey Type {key.get('Type')!r} is unknown")
        attribute = {"AttributeName": key["Name"], "AttributeType": kinds[key["Type"]]}
        return TableSpec(
            key_schema=[{"AttributeName": key["Name"], "KeyType": "HASH"}],
            attribute_definitions=[attribute],
            global_secondary_indexes=[],
            ttl_attribute=None,
            logical_id=logical_id,
            name=name,
        )  # fmt: skip
    ttl = properties.get("TimeToLiveSpecification") or {}
    return TableSpec(
        key_schema=properties["KeySchema"],
        attribute_definitions=properties["AttributeDefinitions"],
        global_secondary_indexes=[
            _on_demand_index(index) for index in properties.get("GlobalSecondaryIndexes", [])
        ],
        ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled") in (True, "true") else None,
        logical_id=logical_id,
        name=name,
        local_secondary_indexes=list(properties.get("LocalSecondaryIndexes", [])),
    )


def _on_demand_index(index: dict[str, Any]) -> dict[str, Any]:
    """An index as ``CreateTable`` takes it on an on-demand table (no capacity settings)."""
    keep = ("IndexName", "KeySchema", "Projection")
    return {key: index[key] for key in keep if key in index}


def stage_template(
    template: dict[str, Any],
    parameters: Mapping[str, str],
    table_name: str,
    *,
    base_dir: Path = Path(),
    site: ApiSite | None = None,
) -> StageTemplate:
    """Resolve the routes, functions and tables a local stage needs.

    ``parameters`` must all be declared by the template; ``table_name`` names the
    template's table when it gives none; ``base_dir`` is what relative CodeUri paths
    are relative to (the template's directory).
    """
    _refuse_transforms(template)
    resolver = Resolver(template, parameters, table_name, site or ApiSite())
    api_id, api = _websocket_api(resolver)
    resolver.websocket_api = api_id
    expression = _route_selection_expression(resolver, api_id, api)
    functions: dict[str, FunctionSpec] = {}
    routes: dict[str, FunctionSpec] = {}
    for route_id, resource in resolver.resources.items():
        if resource.get("Type") != ROUTE:
            continue
        properties = resource.get("Properties") or {}
        if resolver.value(properties.get("ApiId"), route_id) != resolver.site.api_id:
            continue  # a route of another (HTTP) API
        route_key = str(resolver.value(properties.get("RouteKey"), route_id))
        if route_key in routes:
            raise TemplateError(f"{route_id}: route {route_key} is defined twice")
        integration_id = _route_integration(resolver, route_id, properties)
        function_id = _integration_function(resolver, integration_id)
        if function_id not in functions:
            functions[function_id] = _function(resolver, function_id, base_dir)
        routes[route_key] = functions[function_id]
    if not routes:
        raise TemplateError(f"{api_id}: the WebSocket API has no routes")
    unemulated: dict[str, str] = {}
    for function_id in resolver.function_names:
        if function_id in functions:
            continue
        # No route reaches it; a handler may invoke it (Lambda's Invoke API), so resolve it
        # by the same rules, but one the stage cannot run need not refuse the whole API.
        try:
            functions[function_id] = _function(resolver, function_id, base_dir)
        except TemplateError as error:
            unemulated[resolver.function_names[function_id]] = str(error)
    tables = tuple(
        _table(resolver, logical_id)
        for logical_id, resource in resolver.resources.items()
        if resource.get("Type") in TABLE_TYPES
    )
    return StageTemplate(
        routes=routes,
        route_selection_expression=expression,
        tables=tables,
        functions=functions,
        unemulated=unemulated,
    )


def missing_code(stage: StageTemplate, node_installed: bool = True) -> str | None:
    """A line naming the first function that cannot run here (no code, no node), if any."""
    for spec in stage.functions.values():
        if not spec.inline_code and not spec.code_dir.is_dir():
            return f"{spec.logical_id}: code directory {spec.code_dir} does not exist"
        if spec.runtime.startswith("nodejs") and not node_installed:
            return f"{spec.logical_id}: Runtime {spec.runtime} needs node on PATH"
    return None


def read_stage_template(
    config_template: Path | None,
    default_template: Path,
    offered: Mapping[str, str],
    chosen: Mapping[str, str],
    table_name: str,
    site: ApiSite | None = None,
    inline_code_dir: Path | None = None,
) -> StageTemplate:
    """The shell around ``stage_template``: read the file, resolve it, check the code is there.

    ``config_template`` is the user's template (``None``: ``default_template``, fanbench's
    own); ``offered`` and ``chosen`` are as ``stage_parameters`` takes them. Inline code
    is written under ``inline_code_dir``, when given (a stage about to run it).
    """
    path = (config_template or default_template).resolve()
    document = load_template(path)
    parameters = stage_parameters(document, offered, chosen)
    try:
        stage = stage_template(document, parameters, table_name, base_dir=path.parent, site=site)
    except TemplateError as error:
        raise TemplateError(f"{path.name}: {error}") from None
    problem = missing_code(stage, shutil.which("node") is not None)
    if problem is not None:
        raise TemplateError(f"{path.name}: {problem}")
    return write_inline_code(stage, inline_code_dir) if inline_code_dir else stage


def inline_code_file(spec: FunctionSpec) -> str:
    """The file CloudFormation puts inline code in: ``index`` with the runtime's extension."""
    return "index.js" if spec.runtime.startswith("nodejs") else "index.py"


def write_inline_code(stage: StageTemplate, directory: Path) -> StageTemplate:
    """The stage with each function's inline code written to ``directory/<logical id>/``."""
    written: dict[str, FunctionSpec] = {}
    for spec in stage.functions.values():
        if spec.inline_code:
            code_dir = directory / spec.logical_id
            code_dir.mkdir(parents=True, exist_ok=True)
            (code_dir / inline_code_file(spec)).write_text(spec.inline_code, encoding="utf-8")
            written[spec.logical_id] = replace(spec, code_dir=code_dir)
    routes = {key: written.get(spec.logical_id, spec) for key, spec in stage.routes.items()}
    functions = {name: written.get(name, spec) for name, spec in stage.functions.items()}
    return replace(stage, routes=routes, functions=functions)
