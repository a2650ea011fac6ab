"""Deterministic, stratified, group-aware train / validation / test splits, frozen once written.

Every image of a group (one physical part) lands on the same side. The assignment is saved in `splits.json`
beside the images; images added later (for example QA-reviewed frames) keep the side of their part when the
part is known (another view of a test part must not leak into training) and otherwise go to train or
validation only, so the test images on which models are compared are never reshuffled.
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

Split = Literal["train", "val", "test"]
SPLITS_FILE = "splits.json"


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


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


def assign_splits(records: list[ImageRecord], val_fraction: float, test_fraction: float, seed: int) -> dict[str, Split]:
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


def _assign_late_arrival(record: ImageRecord, val_fraction: float, seed: int) -> Split:
    # Hash of the group, not the image, so a late group still stays on one side.
    draw = (_stable_int(f"{seed}:{record.group_key}") % 10_000) / 10_000
    return "val" if draw < val_fraction else "train"


def load_or_create_splits(
    root: Path, records: list[ImageRecord], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, Split]:
    """The frozen split of a dataset: read splits.json, extend it for new images, or create it."""
    path = root / SPLITS_FILE
    if not path.exists():
        assignment = assign_splits(records, val_fraction, test_fraction, seed)
    else:
        saved: dict[str, Split] = json.loads(path.read_text())["assignment"]
        present = {r.relpath for r in records}
        assignment = {relpath: side for relpath, side in saved.items() if relpath in present}
        known_groups = {r.group_key: assignment[r.relpath] for r in records if r.relpath in assignment}
        for record in records:
            if record.relpath not in assignment:
                side = known_groups.get(record.group_key) or _assign_late_arrival(record, val_fraction, seed)
                assignment[record.relpath] = side
    document = {
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "assignment": assignment,
    }
    if not path.exists() or json.loads(path.read_text()) != document:
        write_atomic_text(path, json.dumps(document, indent=1, sort_keys=True))
    return assignment


def split_records(records: list[ImageRecord], assignment: dict[str, Split]) -> dict[Split, list[ImageRecord]]:
    """Partition records by their assigned split."""
    parts: dict[Split, list[ImageRecord]] = {"train": [], "val": [], "test": []}
    for record in records:
        parts[assignment[record.relpath]].append(record)
    return parts
