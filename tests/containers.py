"""The container example's commands (deploy/containers), as the tests run them."""

from __future__ import annotations

from typing import Any

import yaml

from tests.repo import REPO_ROOT

CONTAINERS = REPO_ROOT / "deploy" / "containers"
COMPOSE = CONTAINERS / "compose.yaml"
DOCKERFILE = CONTAINERS / "Dockerfile"
COMPOSE_MASTER_SERVICE = "master"
"""The service name the workers' command uses as the master's host."""


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def worker_argv(master_host: str, master_port: int) -> list[str]:
    """``fanbench`` arguments of the compose file's worker, pointed at another master."""
    command = list(compose()["services"]["worker"]["command"])
    command[command.index("--master-host") + 1] = master_host
    command[command.index("--master-port") + 1] = str(master_port)
    return command
