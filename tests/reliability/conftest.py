"""The reliability suite's swarms run in the background while its direct tests run.

A swarm (a real ``fanbench run``) takes about 20 s, mostly waiting on the clock, so
the suite starts every swarm its selected tests ask for (``@pytest.mark.swarms``)
one after another in a background thread as soon as the first reliability test
runs, and puts the tests that read swarm results after the ones that do not. The
direct tests (stale ids, timeouts, the fuzzer, the CLI) overlap the swarms instead
of waiting behind them.

Under pytest-xdist (``make test``: ``--dist loadfile``, a module's tests on one
worker), a worker starts a module's swarms when the first of its tests that reads
them runs; the other workers run the direct tests meanwhile. Two modules cannot share
a swarm there (``--dist loadgroup`` would allow it, but pytest 9 ignores the group
xdist 3.8 writes into a test's id), so the tests that read one swarm live in one module.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.reliability.support import SWARM_TIMEOUT_S, SWARMS, SwarmResult, run_swarm

HERE = Path(__file__).resolve().parent
SWARM_NAMES = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "swarms(*names): the test reads these swarms' results (tests/reliability)"
    )


def _ours(item: pytest.Item) -> bool:
    return HERE in Path(str(item.path)).resolve().parents


def _swarm_names(item: pytest.Item) -> list[str]:
    return [name for marker in item.iter_markers("swarms") for name in marker.args]


def _under_xdist() -> bool:
    return "PYTEST_XDIST_WORKER" in os.environ


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Within this package, tests that wait for swarms go after those that do not."""
    slots = [index for index, item in enumerate(items) if _ours(item)]
    ours = [items[index] for index in slots]
    ordered = [i for i in ours if not _swarm_names(i)] + [i for i in ours if _swarm_names(i)]
    for index, item in zip(slots, ordered, strict=True):
        items[index] = item


def pytest_collection_finish(session: pytest.Session) -> None:
    names: list[str] = []
    for item in session.items:
        if _ours(item):
            names += [name for name in _swarm_names(item) if name not in names]
    session.config.stash[SWARM_NAMES] = names


class SwarmQueue:
    """Runs swarms one at a time, in the order the tests will want them."""

    def __init__(self, root: Path, names: list[str]) -> None:
        self.root = root
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swarm")
        self._futures: dict[str, Future[SwarmResult]] = {}
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.start(names)

    def start(self, names: list[str]) -> None:
        """Queue these swarms (those already queued keep their place)."""
        for name in names:
            self._submit(name)

    def _submit(self, name: str) -> Future[SwarmResult]:
        with self._lock:
            if name not in self._futures:
                self._futures[name] = self._pool.submit(
                    run_swarm, name, self.root / name, SWARMS[name]
                )
            return self._futures[name]

    def result(self, name: str) -> SwarmResult:
        """The finished swarm ``name`` (started now if no selected test announced it)."""
        waits = len(self._futures) + 1
        return self._submit(name).result(timeout=SWARM_TIMEOUT_S * waits)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def swarms(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SwarmQueue]:
    # Under xdist this worker's tests are not known at collection: each group starts its own.
    names = [] if _under_xdist() else request.config.stash.get(SWARM_NAMES, [])
    queue = SwarmQueue(tmp_path_factory.mktemp("swarms"), names)
    yield queue
    queue.close()


@pytest.fixture(autouse=True)
def _start_swarms_early(request: pytest.FixtureRequest) -> None:
    """The first reliability test to run starts the background swarms (under xdist: the
    first test of a group of swarms starts that group's)."""
    if _under_xdist():
        wanted = _swarm_names(request.node)
        if wanted:
            queue: SwarmQueue = request.getfixturevalue("swarms")
            queue.start(wanted)
    elif request.config.stash.get(SWARM_NAMES, []):
        request.getfixturevalue("swarms")
