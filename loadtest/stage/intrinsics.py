"""CloudFormation's intrinsic functions, evaluated with local names (pure).

A template file is read with its short-form tags (``!Ref``, ``!GetAtt``, ``!Sub``
...) turned into their long form, then :class:`Resolver` evaluates ``Ref`` and
``Fn::GetAtt`` of parameters, pseudo parameters, tables, functions and the API;
``Fn::Sub``, ``Fn::Join``, ``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap`` and the
condition functions, as CloudFormation would for a stack named
``LOCAL_STACK_NAME`` in ``LOCAL_REGION``. What it cannot evaluate raises
``TemplateError`` naming the resource; ``loadtest.stage.template`` decides what
the stage runs from the values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fanbench_common.errors import FanbenchError

LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "000000000000"
LOCAL_STACK_NAME = "fanbench-local"

API = "AWS::ApiGatewayV2::Api"
ROUTE = "AWS::ApiGatewayV2::Route"
INTEGRATION = "AWS::ApiGatewayV2::Integration"
STAGE = "AWS::ApiGatewayV2::Stage"
SAM_FUNCTION = "AWS::Serverless::Function"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
TABLE = "AWS::DynamoDB::Table"
SIMPLE_TABLE = "AWS::Serverless::SimpleTable"
FUNCTION_TYPES = (SAM_FUNCTION, LAMBDA_FUNCTION)
TABLE_TYPES = (TABLE, SIMPLE_TABLE)


class TemplateError(FanbenchError, ValueError):
    """The template uses something the local stage does not emulate (one line names it)."""


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
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    """A template file (YAML or JSON) as a dict; short-form tags become their long form."""
    try:
        with path.open(encoding="utf-8") as stream:
            document = yaml.load(stream, Loader=_CfnLoader)
    except OSError as error:
        raise TemplateError(f"cannot read the template {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise TemplateError(f"{path} is not valid YAML or JSON: {error}".splitlines()[0]) from None
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources)")
    return document


@dataclass(frozen=True)
class ApiSite:
    """Where the local API lives: what ``Ref`` of the API, its endpoint and stage resolve to."""

    api_id: str = "localapi00"
    stage: str = "local"
    domain_name: str = "127.0.0.1"


NO_VALUE = object()
"""``AWS::NoValue``: the property it fills is left out."""
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
LAMBDA_ARN_FUNCTION = re.compile(r"arn:[^:]+:lambda:[^:]*:[^:]*:function:([^:/]+)")


def stage_parameters(
    template: Mapping[str, Any], offered: Mapping[str, str], chosen: Mapping[str, str]
) -> dict[str, str]:
    """Parameter values for a template: ``offered`` (the stage's own settings, such as
    ``StageName``) where the template declares them, then ``chosen`` (``--param``), which
    must all be declared."""
    declared = template.get("Parameters") or {}
    values = {name: value for name, value in offered.items() if name in declared}
    values.update(chosen)
    return values


class Resolver:
    """Evaluates intrinsics against the template's parameters, resources and the local site."""

    def __init__(
        self,
        template: dict[str, Any],
        parameters: Mapping[str, str],
        table_name: str,
        site: ApiSite,
    ) -> None:
        self.template = template
        self.site = site
        self.websocket_api: str | None = None
        declared: dict[str, Any] = template.get("Parameters") or {}
        unknown = set(parameters) - set(declared)
        if unknown:
            raise TemplateError(f"unknown template parameters: {sorted(unknown)}")
        self.parameters: dict[str, str] = {
            name: _parameter_text(spec["Default"])
            for name, spec in declared.items()
            if isinstance(spec, dict) and "Default" in spec
        }
        self.parameters.update(parameters)
        for name, value in self.parameters.items():
            allowed = (declared[name] or {}).get("AllowedValues")
            if allowed and value not in [_parameter_text(a) for a in allowed]:
                raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
        self.missing_parameters = set(declared) - set(self.parameters)
        self.resources: dict[str, dict[str, Any]] = {
            logical_id: resource
            for logical_id, resource in template["Resources"].items()
            if isinstance(resource, dict) and self._exists(resource)
        }
        self.table_names = self._table_names(table_name)
        self.function_names = {
            logical_id: self._function_name(logical_id)
            for logical_id, resource in self.resources.items()
            if resource.get("Type") in FUNCTION_TYPES
        }

    # -- names ---------------------------------------------------------------

    def _exists(self, resource: dict[str, Any]) -> bool:
        condition = resource.get("Condition")
        return condition is None or self.condition(str(condition))

    def _table_names(self, default_name: str) -> dict[str, str]:
        """``TableName`` when given; else the stage's table name for the only unnamed table,
        or that name suffixed with the logical id when several are unnamed."""
        unnamed = [
            logical_id
            for logical_id, resource in self.resources.items()
            if resource.get("Type") in TABLE_TYPES
            and "TableName" not in (resource.get("Properties") or {})
        ]
        names = {}
        for logical_id, resource in self.resources.items():
            if resource.get("Type") not in TABLE_TYPES:
                continue
            properties = resource.get("Properties") or {}
            if "TableName" in properties:
                names[logical_id] = str(self.value(properties["TableName"], logical_id))
            elif len(unnamed) == 1:
                names[logical_id] = default_name
            else:
                names[logical_id] = f"{default_name}-{logical_id}"
        return names

    def _function_name(self, logical_id: str) -> str:
        properties = self.resources[logical_id].get("Properties") or {}
        if "FunctionName" in properties:
            return str(self.value(properties["FunctionName"], logical_id))
        return logical_id

    # -- intrinsics ----------------------------------------------------------

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"condition {name} is not defined in Conditions")
        return bool(self.value(conditions[name], f"condition {name}"))

    def value(self, node: Any, where: str) -> Any:
        """``node`` with every intrinsic resolved; ``where`` names it in errors."""
        if isinstance(node, list):
            resolved = [self.value(item, where) for item in node]
            return [item for item in resolved if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(str(arg), where)
            if key == "Condition":
                return self.condition(str(arg))
            if key.startswith("Fn::"):
                return self.function(key, arg, where)
        resolved_map = {key: self.value(item, where) for key, item in node.items()}
        return {key: item for key, item in resolved_map.items() if item is not NO_VALUE}

    def ref(self, name: str, where: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name in self.missing_parameters:
            raise TemplateError(f"parameter {name} has no Default: pass --param {name}=VALUE")
        pseudo = {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::StackName": LOCAL_STACK_NAME,
            "AWS::StackId": f"arn:aws:cloudformation:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:"
            f"stack/{LOCAL_STACK_NAME}/00000000-0000-0000-0000-000000000000",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        kind = self._type_of(name, where, f"Ref {name}")
        if kind in TABLE_TYPES:
            return self.table_names[name]
        if kind in FUNCTION_TYPES:
            return self.function_names[name]
        if kind == API:
            return self.site.api_id if name == self.websocket_api else name
        if kind == STAGE:
            return self.site.stage
        if kind in (INTEGRATION, ROUTE):
            return name  # the local integration or route id is its logical id
        raise TemplateError(f"{where}: Ref {name} ({kind}) is not emulated by the local stage")

    def get_att(self, name: str, attribute: str, where: str) -> str:
        kind = self._type_of(name, where, f"Fn::GetAtt {name}.{attribute}")
        if kind in TABLE_TYPES and attribute == "Arn":
            return (
                f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:table/{self.table_names[name]}"
            )
        if kind in FUNCTION_TYPES and attribute == "Arn":
            function_name = self.function_names[name]
            return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{function_name}"
        if kind == API and attribute == "ApiEndpoint":
            return f"wss://{self.site.domain_name}"
        if kind == API and attribute == "ApiId":
            return self.site.api_id
        raise TemplateError(
            f"{where}: Fn::GetAtt {name}.{attribute} ({kind}) is not emulated by the local stage"
        )

    def _type_of(self, name: str, where: str, what: str) -> str:
        resource = self.resources.get(name)
        if resource is None:
            raise TemplateError(f"{where}: {what} names no parameter or resource of the template")
        return str(resource.get("Type"))

    def function(self, key: str, arg: Any, where: str) -> Any:
        if key == "Fn::GetAtt":
            if not isinstance(arg, list) or len(arg) != 2:
                raise TemplateError(f"{where}: Fn::GetAtt wants [resource, attribute]")
            return self.get_att(str(arg[0]), str(self.value(arg[1], where)), where)
        if key == "Fn::Sub":
            return self.sub(arg, where)
        if key == "Fn::Join":
            delimiter, items = arg
            return str(delimiter).join(cfn_text(v) for v in self.value(items, where))
        if key == "Fn::Select":
            index, items = arg
            return self.value(items, where)[int(self.value(index, where))]
        if key == "Fn::Split":
            delimiter, text = arg
            return str(self.value(text, where)).split(str(delimiter))
        if key == "Fn::If":
            name, if_true, if_false = arg
            return self.value(if_true if self.condition(str(name)) else if_false, where)
        if key == "Fn::Equals":
            left, right = (self.value(side, where) for side in arg)
            return cfn_text(left) == cfn_text(right)
        if key == "Fn::Not":
            return not self.value(arg[0], where)
        if key == "Fn::And":
            return all(self.value(item, where) for item in arg)
        if key == "Fn::Or":
            return any(self.value(item, where) for item in arg)
        if key == "Fn::FindInMap":
            mapping, first, second = (self.value(item, where) for item in arg)
            try:
                return self.value(self.template["Mappings"][mapping][first][second], where)
            except (KeyError, TypeError):
                raise TemplateError(
                    f"{where}: Fn::FindInMap {mapping}.{first}.{second} is not in Mappings"
                ) from None
        raise TemplateError(f"{where}: {key} is not emulated by the local stage")

    def sub(self, arg: Any, where: str) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.value(v, where) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return cfn_text(variables[name])
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return self.get_att(resource, attribute, where)
            return cfn_text(self.ref(name, where))

        return _SUB_VARIABLE.sub(replace, str(text))


def _parameter_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def cfn_text(value: Any) -> str:
    """A resolved value as CloudFormation writes it into a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
