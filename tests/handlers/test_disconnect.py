"""``$disconnect``: forget the connection, idempotently."""

from __future__ import annotations

import pytest

import disconnect
from tests.handlers.support import LambdaContext, Table, disconnect_event, new_connection_id


def test_deletes_only_the_caller_and_is_idempotent(table: Table) -> None:
    leaving, staying = new_connection_id(), new_connection_id()
    table.add([leaving, staying])

    first = disconnect.handler(disconnect_event(leaving), LambdaContext())
    assert first["statusCode"] == 200
    assert table.ids() == {staying}

    second = disconnect.handler(disconnect_event(leaving), LambdaContext())
    assert second["statusCode"] == 200
    assert table.ids() == {staying}


def test_unknown_connection_is_still_200(table: Table) -> None:
    response = disconnect.handler(disconnect_event(new_connection_id()), LambdaContext())
    assert response["statusCode"] == 200


def test_missing_connection_id_is_a_bad_request(table: Table) -> None:
    event = disconnect_event(new_connection_id())
    event["requestContext"]["connectionId"] = ""
    assert disconnect.handler(event, LambdaContext())["statusCode"] == 400


def test_dynamodb_failure_is_500(table: Table, monkeypatch: pytest.MonkeyPatch) -> None:
    connection_id = new_connection_id()
    table.add([connection_id])
    monkeypatch.setenv("TABLE_NAME", f"{table.name}-does-not-exist")

    response = disconnect.handler(disconnect_event(connection_id), LambdaContext())

    assert response["statusCode"] == 500
    assert table.ids() == {connection_id}
