"""The handlers' copy of the AWS limits and the shared one agree, name for name."""

from __future__ import annotations

import aws_limits
import fanbench_common.limits as shared_limits


def _constants(module: object) -> dict[str, object]:
    return {
        name: value
        for name, value in vars(module).items()
        if name.isupper() and not name.startswith("_")
    }


def test_both_copies_hold_the_same_names_and_values() -> None:
    handlers, shared = _constants(aws_limits), _constants(shared_limits)
    assert len(handlers) >= 20
    assert handlers == shared
