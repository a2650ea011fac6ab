"""Tests for splits: deterministic, stratified by label, group-aware, and frozen once written."""

import json
import random
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from datasets.layout import ImageRecord, scan_dataset, write_metadata
from datasets.splits import SPLITS_FILE, assign_splits, load_or_create_splits, split_records

VAL, TEST, SEED = 0.15, 0.2, 0


def _records(counts: dict[str, int], per_group: int = 1) -> list[ImageRecord]:
    """`counts[label]` images per label; with per_group > 1, consecutive images share a group key."""
    records = []
    for label, count in counts.items():
        for index in range(count):
            relpath = f"{label}/{label}-{index:04d}.png"
            group = f"{label}-part{index // per_group}" if per_group > 1 else None
            records.append(ImageRecord(relpath=relpath, label=label, path=Path("/unused") / relpath, group=group))
    return records


def _by_split(assignment: dict[str, str], records: list[ImageRecord]) -> dict[str, dict[str, int]]:
    """label -> split -> image count."""
    table: dict[str, dict[str, int]] = defaultdict(lambda: {"train": 0, "val": 0, "test": 0})
    for record in records:
        table[record.label][assignment[record.relpath]] += 1
    return table


def test_every_record_gets_a_split() -> None:
    records = _records({"good": 50, "scratch": 20})
    assignment = assign_splits(records, VAL, TEST, SEED)
    assert set(assignment) == {r.relpath for r in records}
    assert set(assignment.values()) == {"train", "val", "test"}


def test_same_seed_same_assignment_other_seed_differs() -> None:
    records = _records({"good": 80, "scratch": 30, "spot": 12})
    first = assign_splits(records, VAL, TEST, seed=7)
    assert assign_splits(records, VAL, TEST, seed=7) == first
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    assert assign_splits(shuffled, VAL, TEST, seed=7) == first  # input order does not matter
    other = assign_splits(records, VAL, TEST, seed=8)
    assert other != first
    assert sum(first[k] != other[k] for k in first) > 10


def test_stratified_per_label_fractions() -> None:
    counts = {"good": 200, "scratch": 41, "spot": 13, "rare": 3}
    records = _records(counts)
    table = _by_split(assign_splits(records, VAL, TEST, SEED), records)
    for label, total in counts.items():
        sides = table[label]
        assert sum(sides.values()) == total
        # Ungrouped images are groups of one, so each side is within one image of its target.
        assert abs(sides["test"] - total * TEST) <= 1, (label, sides)
        assert abs(sides["val"] - total * VAL) <= 1, (label, sides)
        assert sides["test"] >= 1
        assert sides["val"] >= 1
        assert sides["train"] >= 1


def test_stratified_fractions_with_groups_within_one_group() -> None:
    per_group = 4
    counts = {"good": 120, "crack": 40, "dent": 12}
    records = _records(counts, per_group=per_group)
    table = _by_split(assign_splits(records, VAL, TEST, SEED), records)
    for label, total in counts.items():
        sides = table[label]
        assert abs(sides["test"] - total * TEST) <= per_group, (label, sides)
        assert abs(sides["val"] - total * VAL) <= per_group, (label, sides)
        assert sides["test"] >= 1 and sides["val"] >= 1 and sides["train"] >= 1


def test_label_with_fewer_than_three_groups_stays_in_train() -> None:
    records = _records({"good": 30, "tiny": 2})
    table = _by_split(assign_splits(records, VAL, TEST, SEED), records)
    assert table["tiny"] == {"train": 2, "val": 0, "test": 0}


def test_no_group_spans_two_splits() -> None:
    records = []
    for part in range(60):
        # A third of the parts are defective; on those one of the three views is labeled good.
        labels = ["scratch", "scratch", "good"] if part % 3 == 0 else ["good", "good", "good"]
        for view, label in enumerate(labels):
            relpath = f"{label}/p{part:02d}_v{view}.png"
            records.append(ImageRecord(relpath=relpath, label=label, path=Path(relpath), group=f"p{part:02d}"))
    for seed in range(5):
        assignment = assign_splits(records, VAL, TEST, seed)
        sides_of_group: dict[str, set[str]] = defaultdict(set)
        for record in records:
            sides_of_group[record.group_key].add(assignment[record.relpath])
        assert len(sides_of_group) == 60
        assert all(len(sides) == 1 for sides in sides_of_group.values()), seed
        # Both strata (good parts and defective parts) reach every split.
        for label_parts in (range(0, 60, 3), [p for p in range(60) if p % 3]):
            assert {next(iter(sides_of_group[f"p{p:02d}"])) for p in label_parts} == {"train", "val", "test"}


def test_split_records_partitions_by_assignment() -> None:
    records = _records({"good": 20, "scratch": 10})
    assignment = assign_splits(records, VAL, TEST, SEED)
    parts = split_records(records, assignment)
    assert sum(len(v) for v in parts.values()) == len(records)
    for side, members in parts.items():
        assert all(assignment[r.relpath] == side for r in members)


# --- frozen splits on a real dataset folder ---------------------------------------------------------------------


def _add_images(root: Path, names: dict[str, str | None]) -> None:
    """Write tiny images `<label>/<file>` and record their groups in metadata.jsonl (merged with existing)."""
    tiny = np.zeros((8, 8), np.uint8)
    for relpath in names:
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), tiny)
    metadata_path = root / "metadata.jsonl"
    metadata = {}
    if metadata_path.exists():
        for line in metadata_path.read_text().splitlines():
            row = json.loads(line)
            metadata[row.pop("path")] = row
    metadata.update({relpath: {"group": group} for relpath, group in names.items() if group is not None})
    write_metadata(root, metadata)


def _initial_dataset(root: Path) -> None:
    names: dict[str, str | None] = {}
    for part in range(30):
        label = "crack" if part % 3 == 0 else "good"
        for view in range(2):
            names[f"{label}/p{part:02d}_v{view}.png"] = f"p{part:02d}"
    for index in range(20):
        names[f"good/loose{index:02d}.png"] = None
    _add_images(root, names)


def _saved(root: Path) -> dict:
    return json.loads((root / SPLITS_FILE).read_text())


def test_first_call_writes_splits_json(tmp_path: Path) -> None:
    _initial_dataset(tmp_path)
    records = scan_dataset(tmp_path)
    assert not (tmp_path / SPLITS_FILE).exists()
    assignment = load_or_create_splits(tmp_path, records, VAL, TEST, SEED)
    assert assignment == assign_splits(records, VAL, TEST, SEED)
    saved = _saved(tmp_path)
    assert saved["assignment"] == assignment
    assert (saved["seed"], saved["val_fraction"], saved["test_fraction"]) == (SEED, VAL, TEST)
    # A second call with nothing changed returns the same and leaves the file as it was.
    mtime = (tmp_path / SPLITS_FILE).stat().st_mtime_ns
    assert load_or_create_splits(tmp_path, records, VAL, TEST, SEED) == assignment
    assert (tmp_path / SPLITS_FILE).stat().st_mtime_ns == mtime


def test_saved_split_is_reused_even_with_another_seed(tmp_path: Path) -> None:
    _initial_dataset(tmp_path)
    records = scan_dataset(tmp_path)
    first = load_or_create_splits(tmp_path, records, VAL, TEST, SEED)
    assert assign_splits(records, VAL, TEST, SEED + 1) != first  # a fresh split would differ...
    assert load_or_create_splits(tmp_path, records, VAL, TEST, SEED + 1) == first  # ...the frozen one does not


def test_new_images_keep_old_assignments_and_never_enter_test(tmp_path: Path) -> None:
    _initial_dataset(tmp_path)
    first = load_or_create_splits(tmp_path, scan_dataset(tmp_path), VAL, TEST, SEED)

    new: dict[str, str | None] = {}
    for part in range(100, 140):  # 40 new parts, two views each
        label = "crack" if part % 2 else "good"
        new[f"{label}/p{part}_a.png"] = f"p{part}"
        new[f"{label}/p{part}_b.png"] = f"p{part}"
    for index in range(30):
        new[f"crack/late{index:02d}.png"] = None
    _add_images(tmp_path, new)

    records = scan_dataset(tmp_path)
    second = load_or_create_splits(tmp_path, records, VAL, TEST, SEED)
    assert set(second) == {r.relpath for r in records}
    assert {k: second[k] for k in first} == first
    new_sides = [second[relpath] for relpath in new]
    assert "test" not in new_sides
    assert set(new_sides) == {"train", "val"}
    for part in range(100, 140):
        label = "crack" if part % 2 else "good"
        assert second[f"{label}/p{part}_a.png"] == second[f"{label}/p{part}_b.png"]
    assert _saved(tmp_path)["assignment"] == second


def test_new_views_of_known_parts_join_their_parts_split(tmp_path: Path) -> None:
    _initial_dataset(tmp_path)
    first = load_or_create_splits(tmp_path, scan_dataset(tmp_path), VAL, TEST, SEED)
    side_of_part = {f"p{p:02d}": first[f"{'crack' if p % 3 == 0 else 'good'}/p{p:02d}_v0.png"] for p in range(30)}
    assert set(side_of_part.values()) == {"train", "val", "test"}
    # Each new view is filed under the other label: the part, not the label, decides its side. A new view of a
    # test part goes to test too; putting it in train would leak that part into training.
    new = {f"{'good' if p % 3 == 0 else 'crack'}/p{p:02d}_v9.png": f"p{p:02d}" for p in range(30)}
    _add_images(tmp_path, new)
    second = load_or_create_splits(tmp_path, scan_dataset(tmp_path), VAL, TEST, SEED)
    for relpath, part in new.items():
        assert second[relpath] == side_of_part[part], relpath
    assert {k: second[k] for k in first} == first


def test_removed_images_disappear_from_the_saved_split(tmp_path: Path) -> None:
    _initial_dataset(tmp_path)
    first = load_or_create_splits(tmp_path, scan_dataset(tmp_path), VAL, TEST, SEED)
    removed = ["good/loose03.png", "crack/p00_v0.png", "good/p01_v1.png"]
    for relpath in removed:
        (tmp_path / relpath).unlink()
    records = scan_dataset(tmp_path)
    second = load_or_create_splits(tmp_path, records, VAL, TEST, SEED)
    assert set(second) == set(first) - set(removed)
    assert all(second[k] == first[k] for k in second)
    assert set(_saved(tmp_path)["assignment"]) == set(first) - set(removed)
