"""A swarm across machines: ``fanbench run --expect-workers N`` and ``fanbench worker``.

Locust's master/worker mode is the distributed engine. ``fanbench run
--expect-workers N`` runs the Locust master (and the stage, unless
``--target``), waits for N workers, and does everything ``--workers`` does on
one machine: the seats of rooms, clock pings, the end-of-test handshake, the
run directory. ``fanbench worker --master-host H`` is a Locust worker with
fanbench's locustfile (the same one the wheel installs); it takes every
scenario knob, the target and the token from the master when the test starts,
so a worker's command line names only where the master is. What each worker
reports as its host goes into run.json (``FANBENCH_HOSTNAME`` overrides the
machine's name: containers otherwise report their random ids).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

DEFAULT_MASTER_PORT = 5557
"""Locust's own default."""
WORKERS_WAIT_S = 300
"""How long the master waits for ``--expect-workers`` to connect before giving up."""
HOSTNAME_ENV = "FANBENCH_HOSTNAME"
"""Overrides the host name a process reports in run.json (containers, or tests that need
several distinct hosts on one machine)."""


def add_master_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expect-workers", type=int, default=0, metavar="N",
        help="run only the Locust master here and wait for N workers started elsewhere "
        "(fanbench worker --master-host THIS_HOST); default: workers on this machine",
    )  # fmt: skip
    parser.add_argument(
        "--master-bind-host", default="127.0.0.1",
        help="where the master listens for workers (default: loopback; another address "
        "needs --allow-remote)",
    )  # fmt: skip
    parser.add_argument("--master-bind-port", type=int, default=DEFAULT_MASTER_PORT,
                        help=f"the master's port (default: {DEFAULT_MASTER_PORT})")  # fmt: skip


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_master(args: argparse.Namespace) -> None:
    if args.expect_workers < 0:
        raise ValueError(f"--expect-workers cannot be negative, not {args.expect_workers}")
    if args.expect_workers and args.workers:
        raise ValueError(
            "--workers starts workers on this machine, --expect-workers waits for workers "
            "started elsewhere: choose one"
        )
    if not 0 < args.master_bind_port < 65536:
        raise ValueError(f"--master-bind-port must be a port number, not {args.master_bind_port}")
    if args.expect_workers and not is_loopback(args.master_bind_host) and not args.allow_remote:
        raise ValueError(
            f"refusing to listen for workers on {args.master_bind_host}: pass --allow-remote"
        )


def master_options(args: argparse.Namespace) -> list[str]:
    """Locust's options for a master that waits for workers started elsewhere."""
    return [
        "--master", "--expect-workers", str(args.expect_workers),
        "--expect-workers-max-wait", str(WORKERS_WAIT_S),
        "--master-bind-host", args.master_bind_host,
        "--master-bind-port", str(args.master_bind_port),
    ]  # fmt: skip


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master-host", required=True,
                        help="the host running fanbench run --expect-workers")  # fmt: skip
    parser.add_argument("--master-port", type=int, default=DEFAULT_MASTER_PORT,
                        help=f"the master's port (default: {DEFAULT_MASTER_PORT})")  # fmt: skip
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes on this machine (default: 1)")  # fmt: skip


def worker_command(args: argparse.Namespace, locustfile: Path) -> list[str]:
    """The Locust worker ``fanbench worker`` runs. ``locustfile`` is the master's: the
    application's (``fanbench.LOCUSTFILE``), which composes these users with its ledger."""
    if not 0 < args.master_port < 65536:
        raise ValueError(f"--master-port must be a port number, not {args.master_port}")
    if args.processes < 1:
        raise ValueError(f"--processes must be at least 1, not {args.processes}")
    command = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--worker",
        "--master-host", args.master_host, "--master-port", str(args.master_port),
        "--loglevel", "WARNING",
    ]  # fmt: skip
    if args.processes > 1:
        command += ["--processes", str(args.processes)]
    return command


def hostname(environ: dict[str, str]) -> str:
    return environ.get(HOSTNAME_ENV) or socket.gethostname()
