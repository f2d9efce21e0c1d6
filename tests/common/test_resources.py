"""Where fanbench finds its deployable app, and the names it knows the app's functions by."""

from __future__ import annotations

import pytest

from fanbench_common import resources
from loadtest.stage.template import load_template
from tests.repo import HANDLERS_DIR, TEMPLATE_PATH


def test_in_a_checkout_the_app_is_the_repository_root() -> None:
    app = resources.bundled_app()
    assert app.template == TEMPLATE_PATH
    assert app.handlers == HANDLERS_DIR


@pytest.mark.parametrize(
    "name",
    [
        resources.CONNECT_FUNCTION,
        resources.DISCONNECT_FUNCTION,
        resources.DEFAULT_FUNCTION,
        resources.SEND_FUNCTION,
        resources.FANOUT_FUNCTION,
    ],
)
def test_each_function_name_is_a_function_of_the_template(name: str) -> None:
    template = load_template(TEMPLATE_PATH)
    assert template["Resources"][name]["Type"] == "AWS::Serverless::Function"


def test_a_missing_app_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setattr(resources, "_candidates", lambda: (tmp_path,))
    with pytest.raises(FileNotFoundError, match=r"template\.yaml and handlers/ are missing"):
        resources.bundled_app()
