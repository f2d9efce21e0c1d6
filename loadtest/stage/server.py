"""The stage process: DynamoDB emulator, Lambda runtime, gateway and @connections, together.

``run_stage`` serves until SIGINT/SIGTERM, then closes every connection (their
``$disconnect`` events run), stops the execution environments and the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import string
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError
from websockets.asyncio.server import serve

from fanbench_common.limits import MAX_FRAME_BYTES, MAX_MESSAGE_BYTES
from fanbench_common.resources import bundled_app
from loadtest.stage.config import StageConfig
from loadtest.stage.dynamodb import LOCAL_CREDENTIALS, EmbeddedDynamoDB, create_table
from loadtest.stage.events import ApiIdentity
from loadtest.stage.gateway import Gateway
from loadtest.stage.invoke_api import InvokeApi
from loadtest.stage.invoke_rules import AsyncRetryPolicy
from loadtest.stage.lambda_runtime import LambdaRuntime
from loadtest.stage.management import ManagementApi
from loadtest.stage.template import load_template, stage_template

DRAIN_ON_EXIT_S = 5.0


def _api_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(10))


async def _serve(
    config: StageConfig,
    dynamodb_endpoint: str,
    log_dir: Path,
    ready: Callable[[dict[str, Any]], None],
) -> None:
    # The @connections socket is bound first: its URL is the CallbackUrl template parameter.
    management_socket = socket.socket()
    management_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    management_socket.bind((config.host, config.management_port))
    management_port = management_socket.getsockname()[1]
    callback_url = f"http://{config.host}:{management_port}/{config.stage}"
    # Lambda's Invoke API, bound early too: its URL goes into every function's environment.
    lambda_socket = socket.socket()
    lambda_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lambda_socket.bind((config.host, 0))
    lambda_url = f"http://{config.host}:{lambda_socket.getsockname()[1]}"
    app = bundled_app()
    template = stage_template(
        load_template(app.template), config.template_parameters(callback_url), config.table_name
    )
    runtime_environment = {
        "PATH": os.environ.get("PATH", ""),
        **LOCAL_CREDENTIALS,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONUNBUFFERED": "1",
        "AWS_ENDPOINT_URL_LAMBDA": lambda_url,
    }
    runtime = LambdaRuntime(
        app.handlers, log_dir, runtime_environment, config.concurrency, config.faults,
        config.function_timeout_s, config.lambda_environment,
    )  # fmt: skip
    api = ApiIdentity(api_id=_api_id(), stage=config.stage, domain_name="")
    gateway = Gateway(config, template, runtime, api)
    management = ManagementApi(gateway, config.throttle_rps, config.throttle_burst)
    management_runner = web.AppRunner(management.app, access_log=None, handle_signals=False)
    await management_runner.setup()
    await web.SockSite(management_runner, management_socket).start()
    invoke_api = InvokeApi(
        template.functions, runtime, AsyncRetryPolicy.scaled(config.async_retry_delay_s),
        LOCAL_CREDENTIALS["AWS_REGION"],
    )  # fmt: skip
    invoke_runner = web.AppRunner(invoke_api.app, access_log=None, handle_signals=False)
    await invoke_runner.setup()
    await web.SockSite(invoke_runner, lambda_socket).start()
    if config.provisioned:
        routed = {spec.logical_id for spec in template.routes.values()}
        unrouted = [spec for name, spec in template.functions.items() if name not in routed]
        await runtime.provision([*gateway.routes.values(), *unrouted], config.provisioned)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    async with serve(
        gateway.serve,
        config.host,
        config.port,
        process_request=gateway.process_request,
        max_size=(MAX_MESSAGE_BYTES, MAX_FRAME_BYTES),
        compression=None,
        ping_interval=None,
        close_timeout=2,
        server_header="fanbench-local-stage",
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        gateway.api = ApiIdentity(api.api_id, api.stage, f"{config.host}:{port}")
        reaper = asyncio.create_task(gateway.reap_idle())
        ready(
            {
                "ws_url": f"ws://{config.host}:{port}/{config.stage}",
                "connections_url": f"{callback_url}/@connections",
                "callback_url": callback_url,
                "management_url": f"http://{config.host}:{management_port}",
                "lambda_url": lambda_url,
                "dynamodb_endpoint": dynamodb_endpoint,
                "table_name": config.table_name,
                "variant": config.variant,
                "log_dir": str(log_dir),
                "pid": os.getpid(),
            }
        )
        await stop.wait()
        reaper.cancel()
        await gateway.close_all()
        await gateway.drain(DRAIN_ON_EXIT_S)
    await invoke_api.close()
    await runtime.close()
    await management_runner.cleanup()
    await invoke_runner.cleanup()


def run_stage(config: StageConfig, ready: Callable[[dict[str, Any]], None]) -> None:
    """Serve the stage until SIGINT/SIGTERM; ``ready`` gets the URLs once it listens."""
    log_dir = config.log_dir or Path(tempfile.mkdtemp(prefix="fanbench-stage-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if config.dynamodb_endpoint:
            endpoint = config.dynamodb_endpoint
        else:
            endpoint = stack.enter_context(EmbeddedDynamoDB(log_dir / "dynamodb.log")).endpoint
        table = stage_template(
            load_template(bundled_app().template), config.template_parameters(""), config.table_name
        ).table
        try:
            create_table(endpoint, table, config.table_name)
        except (BotoCoreError, ClientError) as error:
            raise ConnectionError(f"cannot use DynamoDB at {endpoint}: {error}") from None
        asyncio.run(_serve(config, endpoint, log_dir, ready))


def print_ready_line(info: dict[str, Any]) -> None:
    """The launcher's handshake: one JSON line on stdout."""
    sys.stdout.write(json.dumps({"ready": info}) + "\n")
    sys.stdout.flush()
