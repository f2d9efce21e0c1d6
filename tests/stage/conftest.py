"""Fixtures for the local-stage tests.

Each stage is a real subprocess (gateway, @connections API, Lambda worker
processes, moto's DynamoDB server) and takes about a second to start, so stages
are shared: one default stage for the whole session, and module-scoped stages
for each special configuration.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from loadtest.stage.config import StageConfig
from loadtest.stage.launcher import LocalStage
from tests.stage.support import running_stage


@pytest.fixture(scope="session")
def default_stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStage]:
    """A stage with AWS's defaults (optimized variant), shared by every test that can share it."""
    with running_stage(StageConfig(), tmp_path_factory.mktemp("default-stage")) as stage:
        yield stage
