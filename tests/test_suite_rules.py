"""The test suite's own rules: which tests share an xdist worker."""

from __future__ import annotations

from tests.reliability.conftest import swarm_groups


def test_swarms_read_together_share_a_group_transitively() -> None:
    groups = swarm_groups([["a", "b"], ["c"], ["b", "d"], [], ["c"]])
    assert groups["a"] == groups["b"] == groups["d"] == ["a", "b", "d"]
    assert groups["c"] == ["c"]


def test_a_swarm_alone_is_its_own_group() -> None:
    assert swarm_groups([["token"]]) == {"token": ["token"]}
    assert swarm_groups([]) == {}
