"""Read template.yaml, the one source of truth for routes, functions and the table.

Only the intrinsics this template uses are resolved (Ref, Fn::If, Fn::Equals,
Fn::Sub on parameters); anything else raises, so the stage never guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that maps ``!Ref x`` to ``{"Ref": "x"}``, ``!If`` to ``Fn::If``, and so on."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=_CfnLoader)
    if not isinstance(document, dict) or "Resources" not in document:
        raise ValueError(f"{path} is not a CloudFormation template")
    return document


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    handler: str
    """``module.function``, relative to ``handlers/`` (the CodeUri)."""
    timeout_s: float
    memory_mb: int
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TableSpec:
    key_schema: list[dict[str, str]]
    attribute_definitions: list[dict[str, str]]
    global_secondary_indexes: list[dict[str, Any]]
    ttl_attribute: str | None

    def create_table_kwargs(self, table_name: str) -> dict[str, Any]:
        """Arguments for DynamoDB ``CreateTable``, exactly as the template declares them."""
        return {
            "TableName": table_name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": self.key_schema,
            "AttributeDefinitions": self.attribute_definitions,
            "GlobalSecondaryIndexes": self.global_secondary_indexes,
        }


@dataclass(frozen=True)
class StageTemplate:
    routes: dict[str, FunctionSpec]
    """Route key (``$connect``, ``sendmessage``, ...) to the function behind it."""
    route_selection_expression: str
    table: TableSpec
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    """Every function the template creates for these parameters, by logical id (its name
    on the stage), routed or not: what Lambda's Invoke API can reach."""


class _Resolver:
    def __init__(self, template: dict[str, Any], parameters: dict[str, str], table_name: str):
        self.template = template
        self.table_name = table_name
        declared = template.get("Parameters", {})
        self.parameters = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
        unknown = set(parameters) - set(declared)
        if unknown:
            raise ValueError(f"unknown template parameters: {sorted(unknown)}")
        self.parameters.update(parameters)

    def condition(self, name: str) -> bool:
        return bool(self.value(self.template["Conditions"][name]))

    def value(self, node: Any) -> Any:
        if not isinstance(node, dict) or len(node) != 1:
            return node
        ((key, arg),) = node.items()
        if key == "Ref":
            if arg in self.parameters:
                return self.parameters[arg]
            resource_type = self.template["Resources"].get(arg, {}).get("Type")
            if resource_type == "AWS::DynamoDB::Table":
                return self.table_name
            if resource_type == "AWS::Serverless::Function":
                return arg  # a function's name on the stage is its logical id
            raise ValueError(f"the local stage cannot resolve Ref {arg}")
        if key == "Fn::If":
            name, if_true, if_false = arg
            return self.value(if_true if self.condition(name) else if_false)
        if key == "Fn::Equals":
            return self.value(arg[0]) == self.value(arg[1])
        if key.startswith("Fn::"):
            raise ValueError(f"the local stage cannot resolve {key}")
        return node


def _route_function(template: dict[str, Any], route: dict[str, Any]) -> str:
    """The function logical id behind a route, via its integration's URI."""
    target = route["Properties"]["Target"]["Fn::Sub"]
    integration_id = target.removeprefix("integrations/${").removesuffix("}")
    uri = template["Resources"][integration_id]["Properties"]["IntegrationUri"]["Fn::Sub"]
    return str(uri.split("/functions/${", 1)[1].split(".Arn}", 1)[0])


def stage_template(
    template: dict[str, Any], parameters: dict[str, str], table_name: str
) -> StageTemplate:
    """Resolve the routes, functions and table a local stage needs."""
    resolver = _Resolver(template, parameters, table_name)
    resources: dict[str, Any] = template["Resources"]
    globals_ = template.get("Globals", {}).get("Function", {})
    global_env = globals_.get("Environment", {}).get("Variables", {})

    def function(logical_id: str) -> FunctionSpec:
        props = resources[logical_id]["Properties"]
        env = {**global_env, **props.get("Environment", {}).get("Variables", {})}
        return FunctionSpec(
            logical_id=logical_id,
            handler=str(resolver.value(props["Handler"])),
            timeout_s=float(props.get("Timeout", globals_.get("Timeout", 3))),
            memory_mb=int(props.get("MemorySize", globals_.get("MemorySize", 128))),
            environment={name: str(resolver.value(v)) for name, v in env.items()},
        )

    routes = {
        str(res["Properties"]["RouteKey"]): function(_route_function(template, res))
        for res in resources.values()
        if res.get("Type") == "AWS::ApiGatewayV2::Route"
    }
    functions = {
        logical_id: function(logical_id)
        for logical_id, res in resources.items()
        if res.get("Type") == "AWS::Serverless::Function"
        and ("Condition" not in res or resolver.condition(res["Condition"]))
    }
    api = next(r for r in resources.values() if r.get("Type") == "AWS::ApiGatewayV2::Api")
    table = next(r for r in resources.values() if r.get("Type") == "AWS::DynamoDB::Table")
    table_props = table["Properties"]
    ttl = table_props.get("TimeToLiveSpecification", {})
    return StageTemplate(
        routes=routes,
        route_selection_expression=str(api["Properties"]["RouteSelectionExpression"]),
        table=TableSpec(
            key_schema=table_props["KeySchema"],
            attribute_definitions=table_props["AttributeDefinitions"],
            global_secondary_indexes=table_props.get("GlobalSecondaryIndexes", []),
            ttl_attribute=ttl.get("AttributeName") if ttl.get("Enabled") else None,
        ),
        functions=functions,
    )
