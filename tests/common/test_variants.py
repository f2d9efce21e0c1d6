"""One list of variants: the stage, the CLI, the capacity model and the cost model agree."""

from __future__ import annotations

from fanbench_common.variants import (
    TEMPLATE_VARIANTS,
    UNPAGINATED_VARIANTS,
    VARIANT_NAMES,
    VARIANTS,
    Variant,
)
from reports.capacity import VARIANTS as MODELLED


def test_every_variant_is_modelled_by_the_capacity_model() -> None:
    assert set(MODELLED) == set(Variant) == {*TEMPLATE_VARIANTS, Variant.TUTORIAL}
    assert all(shape.name == name for name, shape in MODELLED.items())


def test_the_names_are_plain_strings_in_declaration_order() -> None:
    assert VARIANT_NAMES == ("baseline", "sequential", "optimized", "sharded", "tutorial")
    assert all(type(name) is str for name in VARIANT_NAMES)
    assert set(VARIANTS) == set(Variant)


def test_the_unpaginated_variants_are_the_tutorial_and_its_ports() -> None:
    assert {Variant.BASELINE, Variant.SEQUENTIAL, Variant.TUTORIAL} == UNPAGINATED_VARIANTS
