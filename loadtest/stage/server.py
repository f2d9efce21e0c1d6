"""The stage process: DynamoDB emulator, Lambda runtime, gateway and @connections, together.

``run_stage`` serves until SIGINT/SIGTERM, then closes every connection (their
``$disconnect`` events run), stops the execution environments and the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import string
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError
from websockets.asyncio.server import Server, serve

from fanbench_common.limits import MAX_FRAME_BYTES, MAX_MESSAGE_BYTES
from loadtest.stage.config import StageConfig, default_template, resolve_template
from loadtest.stage.dynamodb import LOCAL_CREDENTIALS, EmbeddedDynamoDB, create_table
from loadtest.stage.endpoints import StageEndpoints
from loadtest.stage.events import ApiIdentity
from loadtest.stage.gateway import Gateway
from loadtest.stage.invoke_api import InvokeApi
from loadtest.stage.invoke_rules import AsyncRetryPolicy
from loadtest.stage.lambda_runtime import LambdaRuntime
from loadtest.stage.management import ManagementApi
from loadtest.stage.node_runtime import node_path
from loadtest.stage.shared_port import SharedPortProtocol
from loadtest.stage.template import ApiSite, StageTemplate
from loadtest.stage.tls import TlsFiles, write_certificates

DRAIN_ON_EXIT_S = 5.0


def _api_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(10))


def _bound_socket(host: str, port: int) -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        # bind's own text names neither the address nor the port.
        reason = (error.strerror or str(error)).lower()
        raise OSError(error.errno, f"cannot listen on {host}:{port}: {reason}") from None
    return listener


@dataclass
class _Listeners:
    """The stage's sockets, bound before anything starts: their ports are in the template's
    values (CallbackUrl, the API's endpoint), every event's domainName and every function's
    environment."""

    management: socket.socket
    websocket: socket.socket
    tls: socket.socket
    lambda_api: socket.socket

    @classmethod
    def bind(cls, config: StageConfig) -> _Listeners:
        return cls(
            management=_bound_socket(config.host, config.management_port),
            websocket=_bound_socket(config.host, config.port),
            tls=_bound_socket(config.host, config.tls_port),
            lambda_api=_bound_socket(config.host, 0),
        )

    def url(self, listener: socket.socket) -> str:
        host, port = listener.getsockname()[:2]
        return f"http://{host}:{port}"


def _function_environment(dynamodb_endpoint: str, tls: TlsFiles, lambda_url: str) -> dict[str, str]:
    """What every execution environment gets besides its template's variables."""
    return {
        "PATH": os.environ.get("PATH", ""),
        **LOCAL_CREDENTIALS,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONUNBUFFERED": "1",
        "NODE_PATH": node_path(os.environ.get("NODE_PATH", "")),
        "AWS_CA_BUNDLE": str(tls.ca_file),
        "NODE_EXTRA_CA_CERTS": str(tls.ca_file),
        "AWS_ENDPOINT_URL_LAMBDA": lambda_url,
    }


def _create_tables(template: StageTemplate, dynamodb_endpoint: str) -> None:
    try:
        for table in template.tables:
            create_table(dynamodb_endpoint, table, table.name)
    except (BotoCoreError, ClientError) as error:
        raise ConnectionError(f"cannot use DynamoDB at {dynamodb_endpoint}: {error}") from None


async def _start_http(app: web.Application, listener: socket.socket) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    return runner


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _serve(
    config: StageConfig,
    dynamodb_endpoint: str,
    dynamodb_kind: str,
    log_dir: Path,
    tls: TlsFiles,
    ready: Callable[[StageEndpoints], None],
) -> None:
    listeners = _Listeners.bind(config)
    management_url = listeners.url(listeners.management)
    # The plain-HTTP @connections URL: for clients of the stage, and for its own functions
    # only with ``--callbacks http`` (by default they build https://{domainName}/{stage}).
    callback_url = f"{management_url}/{config.stage}"
    lambda_url = listeners.url(listeners.lambda_api)
    # As on AWS, the API's domain serves wss:// and https://{domainName}/{stage}/@connections
    # on one port: what handlers written for AWS build their callback URL from.
    domain_name = f"{config.host}:{listeners.tls.getsockname()[1]}"
    api = ApiIdentity(api_id=_api_id(), stage=config.stage, domain_name=domain_name)
    site = ApiSite(api.api_id, api.stage, api.domain_name)
    template = resolve_template(config, callback_url, site, log_dir / "inline-code")
    _create_tables(template, dynamodb_endpoint)
    runtime = LambdaRuntime(
        log_dir, _function_environment(dynamodb_endpoint, tls, lambda_url), config.concurrency,
        config.faults, config.function_timeout_s, config.lambda_environment,
        config.effective_concurrency_limit, freeze=config.freeze,
    )  # fmt: skip
    gateway = Gateway(config, template, runtime, api)
    management = ManagementApi(gateway, config.throttle_rps, config.throttle_burst)
    management_runner = await _start_http(management.app, listeners.management)
    invoke_api = InvokeApi(
        template.by_function_name, runtime, AsyncRetryPolicy.scaled(config.async_retry_delay_s),
        LOCAL_CREDENTIALS["AWS_REGION"], template.unemulated,
    )  # fmt: skip
    invoke_runner = await _start_http(invoke_api.app, listeners.lambda_api)
    if config.provisioned:
        await runtime.provision(list(template.functions.values()), config.provisioned)
    stop = _stop_on_signals()

    async with serve(
        gateway.serve,
        sock=listeners.websocket,
        process_request=gateway.process_request,
        max_size=(MAX_MESSAGE_BYTES, MAX_FRAME_BYTES),
        compression=None,
        ping_interval=None,
        close_timeout=2,
        server_header="fanbench-local-stage",
    ) as websocket_server:
        tls_server = await _serve_tls(websocket_server, management_runner, listeners.tls, tls)
        reaper = asyncio.create_task(gateway.reap_idle())
        ready(
            StageEndpoints(
                ws_url=f"ws://{config.host}:{listeners.websocket.getsockname()[1]}/{config.stage}",
                connections_url=f"{callback_url}/@connections",
                callback_url=callback_url,
                management_url=management_url,
                dynamodb_endpoint=dynamodb_endpoint,
                table_name=template.tables[0].name if template.tables else config.table_name,
                variant=config.variant,
                log_dir=log_dir,
                wss_url=f"wss://{domain_name}/{config.stage}",
                https_callback_url=f"https://{domain_name}/{config.stage}",
                ca_file=tls.ca_file,
                lambda_url=lambda_url,
                dynamodb_emulator=dynamodb_kind,
                tables=tuple(table.name for table in template.tables),
                template=str(config.template or default_template(config)),
                callbacks=config.callbacks,
                freeze=config.freeze,
                routes={key: spec.logical_id for key, spec in template.routes.items()},
                unemulated_functions=dict(template.unemulated),
                pid=os.getpid(),
            )
        )
        await stop.wait()
        tls_server.close()
        reaper.cancel()
        await gateway.close_all()
        await gateway.drain(DRAIN_ON_EXIT_S)
    await invoke_api.close()
    await runtime.close()
    await management_runner.cleanup()
    await invoke_runner.cleanup()


async def _serve_tls(
    websocket_server: Server, management_runner: web.AppRunner, listener: socket.socket,
    tls: TlsFiles,
) -> asyncio.Server:  # fmt: skip
    """wss:// and https:// @connections on one TLS port, as AWS serves an API's domain.

    Its WebSocket connections are the plain port's server's own (that server's protocol
    factory makes them), so they share its handler, limits and shutdown; websockets
    exposes no public way to hand it a second listener.
    """
    websocket_factory = websocket_server.server._protocol_factory  # type: ignore[attr-defined]
    http_factory = management_runner.server
    assert http_factory is not None
    return await asyncio.get_running_loop().create_server(
        lambda: SharedPortProtocol(websocket_factory, http_factory),
        sock=listener,
        ssl=tls.server_context(),
        ssl_handshake_timeout=10,
    )


def run_stage(config: StageConfig, ready: Callable[[StageEndpoints], None]) -> None:
    """Serve the stage until SIGINT/SIGTERM; ``ready`` gets the URLs once it listens."""
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="fanbench-stage-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    resolve_template(config)  # a template the stage cannot run fails before anything starts
    with contextlib.ExitStack() as stack:
        if config.dynamodb_endpoint:
            endpoint, kind = config.dynamodb_endpoint, "external"
        else:
            emulator = EmbeddedDynamoDB(log_dir / "dynamodb.log", config.dynamodb_emulator)
            endpoint, kind = stack.enter_context(emulator).endpoint, emulator.emulator
        tls_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fanbench-tls-")))
        tls = write_certificates(tls_dir, config.host)
        asyncio.run(_serve(config, endpoint, kind, log_dir, tls, ready))


def print_ready_line(endpoints: StageEndpoints) -> None:
    """The launcher's handshake: one JSON line on stdout."""
    sys.stdout.write(endpoints.ready_line() + "\n")
    sys.stdout.flush()
