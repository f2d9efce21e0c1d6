"""The sendmessage variants fanbench knows, by the names every command and report uses."""

from __future__ import annotations

from enum import StrEnum


class Variant(StrEnum):
    BASELINE = "baseline"
    """The AWS tutorial's handler ported faithfully: one scan, every post at once."""
    SEQUENTIAL = "sequential"
    """The same, posting one at a time (as AWS's Python example does)."""
    OPTIMIZED = "optimized"
    """Paginated scan, bounded-concurrency posts, retries within the deadline."""
    SHARDED = "sharded"
    """The audience handed in shards to asynchronous fan-out functions."""
    TUTORIAL = "tutorial"
    """The AWS tutorial's own Node.js app with its own template, unmodified."""


TEMPLATE_VARIANTS: tuple[Variant, ...] = (
    Variant.BASELINE,
    Variant.SEQUENTIAL,
    Variant.OPTIMIZED,
    Variant.SHARDED,
)
"""The handlers template.yaml's ``Variant`` parameter deploys."""
VARIANTS: tuple[Variant, ...] = (*TEMPLATE_VARIANTS, Variant.TUTORIAL)
"""What ``--variant`` accepts on the local stage."""
DEFAULT_VARIANT = Variant.OPTIMIZED
UNPAGINATED_VARIANTS = frozenset({Variant.BASELINE, Variant.SEQUENTIAL, Variant.TUTORIAL})
"""Variants that read the table with one unpaginated scan, as the tutorial does."""
VARIANT_NAMES: tuple[str, ...] = tuple(variant.value for variant in VARIANTS)
"""``VARIANTS`` as plain strings, for argparse's choices (which it lists by repr)."""
