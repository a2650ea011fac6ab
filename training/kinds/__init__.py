"""The model kinds' training side, registered in models.kinds: importing this package registers all of them.

A fourth kind is one new module here (a class decorated with `@register_kind`) and its line below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.checkpoint import read_state
from models.kinds import ModelKind, get_kind
from training.kinds import anomaly, classifier, hybrid  # noqa: F401  (each module registers its kind)


def load_bundle(path: Path) -> Any:
    """Rebuild a saved bundle of any kind, through the kind its state names."""
    state = read_state(path)
    return get_kind(state["kind"]).bundle_type.from_state(state)  # type: ignore[attr-defined]


def kind_named(name: str) -> ModelKind:
    """The registered kind called `name` (importing this package has registered them all)."""
    return get_kind(name)


def kind_of(bundle: Any) -> ModelKind:
    """The registered kind of a loaded bundle; one trained on tiles (its spec carries them) scores on tiles."""
    kind = get_kind(bundle.kind)
    if bundle.spec.tiling is None:
        return kind
    from training.tiles import TiledKind  # imported here: training.tiles builds on this package

    return TiledKind(kind, bundle.spec.tiling)
