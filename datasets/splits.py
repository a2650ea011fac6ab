"""Deterministic, stratified, group-aware train / validation / test splits, frozen once written, plus a `recent`
slice of QA-reviewed line frames.

Every image of a group (one physical part) lands on the same side. The assignment is saved in `splits.json`
beside the images; images added later keep the side of their part when the part is known (another view of a test
part must not leak into training) and otherwise go to train or validation only, so the test images on which
models are compared are never reshuffled.

QA-reviewed frames from the line (`source: "reviewed"` in metadata.jsonl) never enter test or validation, neither
when they arrive after the split was frozen nor when the split is created with them already present: test and
validation are dealt from the other images alone. Each reviewed frame goes either to `recent`, the "recent line
data" slice that is never trained on and is reported beside the test split, or to `train`; a hash of its group
below `recent_fraction` decides, so the draw is reproducible and a relabelled frame keeps its side.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from datasets.layout import ImageRecord
from inspection.atomic import write_atomic_text
from inspection.product_config import SplitConfig

Split = Literal["train", "val", "test", "recent"]
SPLITS: tuple[Split, ...] = ("train", "val", "test", "recent")
SPLITS_FILE = "splits.json"
REVIEWED_SOURCE = "reviewed"
DEFAULT_RECENT_FRACTION = 0.3
# The only sides a reviewed frame may take: it is line data the frozen benchmark must not absorb.
REVIEWED_SIDES: frozenset[Split] = frozenset({"recent", "train"})


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _draw(text: str) -> float:
    """A reproducible number in [0, 1) from `text`, with no RNG state."""
    return (_stable_int(text) % 10_000) / 10_000


def is_reviewed(record: ImageRecord) -> bool:
    """True for QA-reviewed line frames (imported by `inspection datasets import reviewed`)."""
    return record.meta.get("source") == REVIEWED_SOURCE


def _groups_by_label(records: Iterable[ImageRecord]) -> dict[str, list[tuple[str, list[str]]]]:
    """label -> [(group key, relpaths)], each group filed under its most common label (ties: name order)."""
    members: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        members[record.group_key].append(record)
    strata: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for key in sorted(members):
        labels = Counter(r.label for r in members[key])
        label = min(labels, key=lambda lab: (-labels[lab], lab))
        strata[label].append((key, sorted(r.relpath for r in members[key])))
    return strata


def _deal_base_splits(
    records: list[ImageRecord], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, Split]:
    """relpath -> split; per label, whole groups are dealt to test, then validation, the rest to train."""
    assignment: dict[str, Split] = {}
    for label, groups in sorted(_groups_by_label(records).items()):
        rng = np.random.default_rng([seed, _stable_int(label) % 2**32])
        order = rng.permutation(len(groups))
        total = sum(len(paths) for _, paths in groups)
        # Each side gets at least one group when there are enough, so every label is seen in validation and test.
        want_test = max(round(total * test_fraction), 1) if len(groups) >= 3 else 0
        want_val = max(round(total * val_fraction), 1) if len(groups) >= 3 else 0
        n_test = n_val = 0
        for index in order:
            _, paths = groups[index]
            if n_test < want_test:
                side: Split = "test"
                n_test += len(paths)
            elif n_val < want_val:
                side = "val"
                n_val += len(paths)
            else:
                side = "train"
            for path in paths:
                assignment[path] = side
    return assignment


def reviewed_side(group_key: str, group_side: Split | None, recent_fraction: float, seed: int) -> Split:
    """The side of a reviewed frame: its part's side when that is train or recent, else a hash-of-group draw.

    A part already in test or validation sends the frame to `recent`: training on it would leak that part, and
    test must stay frozen."""
    if group_side in REVIEWED_SIDES:
        return group_side
    if group_side is not None:
        return "recent"
    # Salted apart from the validation draw so the two fractions do not pick the same groups.
    return "recent" if _draw(f"{seed}:recent:{group_key}") < recent_fraction else "train"


def assign_splits(
    records: list[ImageRecord],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    recent_fraction: float = DEFAULT_RECENT_FRACTION,
) -> dict[str, Split]:
    """relpath -> split: test / val / train dealt from non-reviewed images only, reviewed ones to recent or train."""
    base = [r for r in records if not is_reviewed(r)]
    assignment = _deal_base_splits(base, val_fraction, test_fraction, seed)
    side_of_group = {r.group_key: assignment[r.relpath] for r in base}
    for record in records:
        if is_reviewed(record):
            group_side = side_of_group.get(record.group_key)
            assignment[record.relpath] = reviewed_side(record.group_key, group_side, recent_fraction, seed)
    return assignment


def _assign_late_arrival(record: ImageRecord, val_fraction: float, seed: int) -> Split:
    # Hash of the group, not the image, so a late group still stays on one side.
    return "val" if _draw(f"{seed}:{record.group_key}") < val_fraction else "train"


def _extend_saved(
    saved: dict[str, Split], records: list[ImageRecord], val_fraction: float, recent_fraction: float, seed: int
) -> dict[str, Split]:
    """The saved assignment restricted to present images, with sides for the images added since."""
    present = {r.relpath for r in records}
    reviewed = {r.relpath for r in records if is_reviewed(r)}
    # A reviewed frame only ever keeps recent or train; anything else predates that rule and is re-filed below.
    assignment = {
        relpath: side
        for relpath, side in saved.items()
        if relpath in present and (relpath not in reviewed or side in REVIEWED_SIDES)
    }
    # Reviewed file names are unique (one per inspection): a name that vanished from one label folder and
    # appears in another is the same frame relabelled by QA, and it keeps its side.
    moved = {Path(relpath).name: side for relpath, side in saved.items() if relpath not in present}
    known_groups = {r.group_key: assignment[r.relpath] for r in records if r.relpath in assignment}
    for record in records:
        if record.relpath in assignment:
            continue
        group_side = known_groups.get(record.group_key)
        if is_reviewed(record):
            side = reviewed_side(record.group_key, group_side or moved.get(record.path.name), recent_fraction, seed)
        else:
            side = group_side or _assign_late_arrival(record, val_fraction, seed)
        assignment[record.relpath] = side
    return assignment


def load_or_create_splits(
    root: Path,
    records: list[ImageRecord],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    *,
    recent_fraction: float = DEFAULT_RECENT_FRACTION,
) -> dict[str, Split]:
    """The frozen split of a dataset: read splits.json, extend it for new images, or create it."""
    path = root / SPLITS_FILE
    if not path.exists():
        assignment = assign_splits(records, val_fraction, test_fraction, seed, recent_fraction)
    else:
        saved: dict[str, Split] = json.loads(path.read_text())["assignment"]
        assignment = _extend_saved(saved, records, val_fraction, recent_fraction, seed)
    document = {
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "recent_fraction": recent_fraction,
        "assignment": assignment,
    }
    if not path.exists() or json.loads(path.read_text()) != document:
        write_atomic_text(path, json.dumps(document, indent=1, sort_keys=True))
    return assignment


def split_records(records: list[ImageRecord], assignment: dict[str, Split]) -> dict[Split, list[ImageRecord]]:
    """Partition records by their assigned split; every split is a key, `recent` is empty without reviewed frames."""
    parts: dict[Split, list[ImageRecord]] = {side: [] for side in SPLITS}
    for record in records:
        parts[assignment[record.relpath]].append(record)
    return parts


def product_splits(root: Path, records: list[ImageRecord], split: SplitConfig) -> dict[str, Split]:
    """load_or_create_splits with a product config's `split:` settings (every caller passes all of them)."""
    return load_or_create_splits(
        root, records, split.val_fraction, split.test_fraction, split.seed, recent_fraction=split.recent_fraction
    )
