"""Security: the ``$connect`` token, loopback binding, untrusted handler input.

Covered elsewhere, not repeated here:

* the template's IAM is least privilege, and ``AuthToken`` is ``NoEcho`` and never an
  output: tests/test_template.py (``test_sam_policies_are_least_privilege``,
  ``test_translated_roles_are_least_privilege``,
  ``test_every_lambda_permission_is_scoped_to_this_api_and_stage``,
  ``test_auth_token_is_no_echo_and_never_output``);
* a missing token refuses the handshake with 401, a wrong one with 403, at the
  gateway: tests/stage/test_gateway.py (``test_connect_handler_status_refuses_the_handshake``)
  and in the handler: tests/handlers/test_connect.py (``test_auth_token_gates_admission``);
* room names and connection ids validated in the handlers: tests/handlers/test_pure.py
  (``test_invalid_rooms``, ``test_connection_id_of_rejects_events_without_one``) and
  tests/handlers/test_connect.py (``test_bad_room_is_refused_and_nothing_is_stored``);
  malformed ids at the @connections API: tests/stage/test_connections_api.py.
"""

from __future__ import annotations

import ast
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import psutil
import pytest
from websockets.exceptions import InvalidStatus

from loadtest.stage.config import LOOPBACK, StageConfig
from loadtest.stage.launcher import LocalStage
from tests.reliability.conftest import SwarmQueue
from tests.reliability.support import (
    SECRET_TOKEN,
    fanbench,
    open_ws,
    own_id,
    subprocess_env,
)
from tests.repo import HANDLERS_DIR
from tests.repo import REPO_ROOT as PROJECT_ROOT
from tests.stage.support import table_ids

EXIT_FAILED = 1


# -- the token never leaks ------------------------------------------------------------


def _files_holding(root: Path, secret: str) -> tuple[int, list[Path]]:
    """(files read, files whose bytes contain ``secret``) under ``root``."""
    needle = secret.encode()
    files = [path for path in root.rglob("*") if path.is_file()]
    return len(files), [path for path in files if needle in path.read_bytes()]


@pytest.mark.swarms("token")
@pytest.mark.timeout(600)
def test_the_token_admits_and_never_reaches_a_file_a_report_or_a_command_line(
    swarms: SwarmQueue,
) -> None:
    result = swarms.result("token")
    run = result.run
    # The stage demanded the token and the swarm presented it: everyone was admitted.
    assert result.run.meta["stage"]["config"]["auth_token"] == "<redacted>"
    assert run.meta["scenario"]["token"] == "<redacted>"
    assert len(run.membership["client"]) == 3
    assert "connect_failed" not in set(run.errors["kind"])
    assert result.counts.delivered > 0
    assert result.counts.lost == 0

    # Not in the run directory: run.json, records, Locust CSVs, stage logs, the report.
    scanned, leaks = _files_holding(result.run_dir, SECRET_TOKEN)
    assert leaks == []
    for part in ("run.json", "records", "locust", "stage", "report/index.html"):
        assert (result.run_dir / part).exists(), part
    assert scanned >= 10
    # Not in what the run printed.
    assert SECRET_TOKEN not in result.stdout + result.stderr
    # Not on the command line of any process the run started (ps shows those to everyone).
    cmdlines = [" ".join(cmdline) for cmdline in result.descendant_cmdlines]
    assert any("locust" in line for line in cmdlines), cmdlines
    assert any("loadtest.stage" in line for line in cmdlines), cmdlines
    assert not [line for line in cmdlines if SECRET_TOKEN in line]


@pytest.fixture(scope="module")
def token_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    config = StageConfig(auth_token=SECRET_TOKEN)
    with LocalStage(config, log_dir=tmp_path_factory.mktemp("token-stage")) as stage:
        yield stage


def test_a_run_with_a_wrong_or_missing_token_is_refused_in_one_line(
    token_stage: LocalStage, tmp_path: Path
) -> None:
    wrong = "fbwrong-" + secrets.token_hex(8)
    commands = {
        "wrong": ("--token", wrong),
        "missing": (),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(
                subprocess.run,
                fanbench(
                    "run", "--target", token_stage.ws_url, "--run-dir", str(tmp_path / name), *extra
                ),
                cwd=PROJECT_ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                env=subprocess_env(),
                check=False,
            )
            for name, extra in commands.items()
        }
        results = {name: future.result() for name, future in futures.items()}
    for name, status in (("wrong", 403), ("missing", 401)):
        result = results[name]
        assert result.returncode == EXIT_FAILED, result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert result.stderr.strip().splitlines() == [
            f"fanbench: error: {token_stage.ws_url} refused the WebSocket handshake "
            f"with HTTP {status}"
        ]
        assert not (tmp_path / name).exists()
    assert wrong not in results["wrong"].stdout + results["wrong"].stderr
    _, leaks = _files_holding(token_stage.endpoints.log_dir, wrong)
    assert leaks == []


def test_stage_logs_never_hold_the_token_a_client_presented(token_stage: LocalStage) -> None:
    with pytest.raises(InvalidStatus):
        open_ws(token_stage.ws_url + "?token=" + SECRET_TOKEN[:-1])
    with open_ws(f"{token_stage.ws_url}?{urlencode({'token': SECRET_TOKEN})}") as ws:
        assert own_id(ws) in table_ids(token_stage)
    scanned, leaks = _files_holding(token_stage.endpoints.log_dir, SECRET_TOKEN)
    assert scanned >= 4  # handler logs and the emulator's
    assert leaks == []


def _comparisons_of(tree: ast.AST, name_part: str) -> list[ast.Compare]:
    """``==``/``!=`` comparisons with an operand whose name holds ``name_part``."""

    def mentions(node: ast.expr) -> bool:
        return any(
            (isinstance(n, ast.Name) and name_part in n.id.lower())
            or (isinstance(n, ast.Attribute) and name_part in n.attr.lower())
            for n in ast.walk(node)
        )

    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops)
        and any(mentions(operand) for operand in [node.left, *node.comparators])
    ]


def test_the_token_is_compared_in_constant_time() -> None:
    tree = ast.parse((HANDLERS_DIR / "connect.py").read_text())
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "compare_digest"
    ]
    assert calls, "the token check should use hmac.compare_digest"
    assert _comparisons_of(tree, "token") == [], "a token compared with == leaks timing"
    # ... and the check that finds those comparisons does find one:
    assert _comparisons_of(ast.parse("ok = token == settings.auth_token"), "token")


# -- the stage binds loopback unless told otherwise ----------------------------------------


def test_the_stage_binds_loopback_only_and_says_so(tmp_path: Path) -> None:
    process = subprocess.Popen(
        fanbench("stage", "--log-dir", str(tmp_path / "logs")),
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=subprocess_env(), stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lines and lines[-1].startswith("Ctrl-C")):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
        assert lines, "the stage printed nothing"
        assert lines[-1].startswith("Ctrl-C"), lines
        assert f"bound to {LOOPBACK} only" in lines[0], lines[0]
        urls = [word for line in lines for word in line.split() if "://" in word]
        # WebSocket and @connections, plain and over TLS, and DynamoDB.
        assert {urlsplit(url).scheme for url in urls} == {"ws", "http", "wss", "https"}, lines
        assert len(urls) == 5, lines
        assert {urlsplit(url).hostname for url in urls} == {LOOPBACK}
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(True)]
        listening = [
            conn.laddr
            for proc in tree
            for conn in proc.net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        ]
        assert len(listening) >= 3, listening
        assert {address.ip for address in listening} == {LOOPBACK}, listening
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_binding_elsewhere_needs_allow_remote(host: str) -> None:
    result = subprocess.run(
        fanbench("stage", "--host", host), cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=60, env=subprocess_env(), stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_FAILED
    assert result.stderr.strip().splitlines() == [
        f"fanbench: error: refusing to bind {host}: pass --allow-remote to expose the stage"
    ]
    assert StageConfig().host == LOOPBACK


# -- handler input is untrusted -------------------------------------------------------------


def expressions_built_at_runtime(source: str) -> list[str]:
    """Every DynamoDB ``*Expression`` whose value is not a string literal, as ``line: code``.

    Looks at keyword arguments (``scan(FilterExpression=...)``) and at dictionary
    entries with a literal key (``{"KeyConditionExpression": ...}``), since the
    handlers build their request keyword arguments as dictionaries.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        pairs: list[tuple[str, ast.expr]] = []
        if isinstance(node, ast.Call):
            pairs += [(kw.arg, kw.value) for kw in node.keywords if kw.arg]
        if isinstance(node, ast.Dict):
            pairs += [
                (key.value, value)
                for key, value in zip(node.keys, node.values, strict=True)
                if isinstance(key, ast.Constant) and isinstance(key.value, str)
            ]
        for name, value in pairs:
            if name.endswith("Expression") and not (
                isinstance(value, ast.Constant) and isinstance(value.value, str)
            ):
                found.append(f"{value.lineno}: {ast.unparse(value)}")
    return found


def _expressions_in(source: str) -> int:
    return source.count("Expression=") + source.count('Expression":')


def test_no_dynamodb_expression_is_built_from_strings_at_runtime() -> None:
    handlers = sorted(HANDLERS_DIR.glob("*.py"))
    assert len(handlers) >= 5
    total = 0
    for path in handlers:
        source = path.read_text()
        assert expressions_built_at_runtime(source) == [], path.name
        total += _expressions_in(source)
    assert total >= 3, "the handlers' expressions were not found: is the check blind?"


@pytest.mark.parametrize(
    "source",
    [
        'client.scan(FilterExpression=f"room = {room}")',
        'client.query(KeyConditionExpression="#room = " + room)',
        'kwargs = {"KeyConditionExpression": "room = {}".format(room)}',
        'kwargs = {"ProjectionExpression": "%s" % attribute}',
        "client.update_item(UpdateExpression=expression)",
    ],
)
def test_the_expression_check_catches_strings_built_at_runtime(source: str) -> None:
    assert len(expressions_built_at_runtime(source)) == 1


@pytest.mark.parametrize(
    "room", ["a b", "x" * 65, "", "lobby'; DROP TABLE x", "#room", ":room", "../etc", "caf\u00e9"]
)
def test_a_room_name_outside_the_allowed_alphabet_refuses_the_handshake(
    token_stage: LocalStage, room: str
) -> None:
    before = table_ids(token_stage)
    query = urlencode({"token": SECRET_TOKEN, "room": room})
    with pytest.raises(InvalidStatus) as refused:
        open_ws(f"{token_stage.ws_url}?{query}")
    assert refused.value.response.status_code == 400
    body = refused.value.response.body or b""
    assert SECRET_TOKEN.encode() not in body
    assert table_ids(token_stage) == before


def test_a_valid_room_name_is_admitted(token_stage: LocalStage) -> None:
    query = urlencode({"token": SECRET_TOKEN, "room": "lobby-1.a_b"})
    with open_ws(f"{token_stage.ws_url}?{query}") as ws:
        assert own_id(ws) in table_ids(token_stage)
