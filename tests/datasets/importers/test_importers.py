"""Tests for the folder and ELPV importers: what is copied, what is skipped and why, and atomic replacement."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.importers.elpv import import_elpv
from datasets.importers.folder import import_folder
from datasets.layout import read_metadata, scan_dataset
from inspection.errors import DatasetError

SIZE = 32


def _image(seed: int, color: bool = False) -> np.ndarray:
    shape = (SIZE, SIZE, 3) if color else (SIZE, SIZE)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _write(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image), path
    return path


def _mask(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[4:10, 4:10] = 255
    return mask


def _source(root: Path, good: int = 4, scratch: int = 3, spot: int = 2) -> Path:
    """good/ + scratch/ + spot/ images named part<N>_view<M>.<ext>, masks for two scratches and one spot."""
    seed = 0
    for label, count in (("good", good), ("scratch", scratch), ("spot", spot)):
        for index in range(count):
            seed += 1
            suffix = ".jpg" if label == "spot" else ".png"
            _write(root / label / f"part{index // 2}_view{index % 2}{suffix}", _image(seed, color=label == "spot"))
    _write(root / "masks" / "scratch" / "part0_view0.png", _mask())
    _write(root / "masks" / "scratch" / "part0_view1.png", _mask())
    _write(root / "masks" / "spot" / "part0_view0.png", _mask())
    return root


def _skipped_names(report) -> dict[str, str]:
    return {Path(path).name: reason for path, reason in report.skipped}


def _visible_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_folder_import_happy_path(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    dest = tmp_path / "data" / "widget"
    report = import_folder(src, dest, "widget", group_pattern=r"^(part\d+)_")

    assert report.counts == {"good": 4, "scratch": 3, "spot": 2}
    assert list(report.counts) == ["good", "scratch", "spot"]
    assert report.skipped == []
    assert report.masks == 3
    assert report.root == dest
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == ["good", "masks", "scratch", "spot"]
    assert (dest / "good" / "part0_view0.png").read_bytes() == (src / "good" / "part0_view0.png").read_bytes()
    assert (dest / "spot" / "part0_view1.jpg").exists()
    assert (dest / "masks" / "scratch" / "part0_view1.png").read_bytes() == (
        src / "masks" / "scratch" / "part0_view1.png"
    ).read_bytes()
    # No staging or trash folders remain next to the dataset.
    assert _visible_entries(dest.parent) == ["widget"]

    records = {r.relpath: r for r in scan_dataset(dest)}
    assert len(records) == 9
    assert records["scratch/part0_view0.png"].mask == dest / "masks" / "scratch" / "part0_view0.png"
    assert records["scratch/part1_view0.png"].mask is None
    assert records["spot/part0_view0.jpg"].mask is not None
    assert records["good/part1_view1.png"].group == "part1"
    assert records["scratch/part1_view0.png"].group == "part1"
    assert read_metadata(dest)["good/part0_view1.png"] == {"group": "part0"}


def test_folder_import_without_group_pattern_has_no_groups(tmp_path: Path) -> None:
    dest = tmp_path / "data" / "widget"
    import_folder(_source(tmp_path / "src"), dest, "widget")
    assert all(r.group is None for r in scan_dataset(dest))


def test_group_pattern_without_capture_group_uses_whole_match(tmp_path: Path) -> None:
    dest = tmp_path / "data" / "widget"
    import_folder(_source(tmp_path / "src"), dest, "widget", group_pattern=r"part\d+")
    assert {r.relpath: r.group for r in scan_dataset(dest)}["good/part1_view0.png"] == "part1"


def test_corrupt_image_is_skipped_and_named_while_the_rest_imports(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    whole = (src / "good" / "part0_view0.png").read_bytes()
    (src / "good" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (src / "scratch" / "garbage.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    report = import_folder(src, tmp_path / "data" / "widget", "widget")

    skipped = _skipped_names(report)
    assert set(skipped) == {"truncated.png", "garbage.jpg"}
    assert "truncated.png" in skipped["truncated.png"]  # the reason names the file too
    assert report.counts == {"good": 4, "scratch": 3, "spot": 2}
    assert not (tmp_path / "data" / "widget" / "good" / "truncated.png").exists()


def test_unknown_extensions_are_skipped_with_reason(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    (src / "good" / "notes.txt").write_text("operator notes")
    (src / "scratch" / "anim.gif").write_bytes(b"GIF89a" + bytes(20))
    (src / "spot" / "README").write_text("no suffix")
    report = import_folder(src, tmp_path / "data" / "widget", "widget")

    skipped = _skipped_names(report)
    assert ".txt" in skipped["notes.txt"]
    assert ".gif" in skipped["anim.gif"]
    assert "README" in skipped
    assert report.counts == {"good": 4, "scratch": 3, "spot": 2}
    assert not any(p.suffix in {".txt", ".gif"} for p in (tmp_path / "data" / "widget").rglob("*"))


def test_empty_class_folder_is_reported_and_not_a_label(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    (src / "dent").mkdir()
    (src / "crack").mkdir()
    (src / "crack" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    dest = tmp_path / "data" / "widget"
    report = import_folder(src, dest, "widget")

    skipped = _skipped_names(report)
    assert "no readable images" in skipped["dent"]
    assert "no readable images" in skipped["crack"]
    assert "dent" not in report.counts
    assert "crack" not in report.counts
    assert not (dest / "dent").exists()
    assert not (dest / "crack").exists()
    assert {r.label for r in scan_dataset(dest)} == {"good", "scratch", "spot"}


@pytest.mark.parametrize(
    "labels",
    [("scratch",), ("scratch", "spot")],
    ids=["only-one-defect", "defects-without-good"],
)
def test_dataset_no_model_can_learn_from_is_refused_leaving_nothing(tmp_path: Path, labels) -> None:
    src = tmp_path / "src"
    for seed, label in enumerate(labels):
        for index in range(3):
            _write(src / label / f"img{index}.png", _image(seed * 10 + index))
    parent = tmp_path / "data"
    with pytest.raises(DatasetError):
        import_folder(src, parent / "widget", "widget")
    assert _visible_entries(parent) == []  # no dataset, no .staging-*, no .trash-*


def test_good_only_folder_is_accepted_for_the_anomaly_kind(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src / "good" / "a.png", _image(1))
    report = import_folder(src, tmp_path / "data" / "widget", "widget")
    assert report.counts == {"good": 1}


def test_defect_only_message_says_good_images_are_missing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _write(src / "scratch" / "a.png", _image(1))
    with pytest.raises(DatasetError, match="no 'good' images"):
        import_folder(src, tmp_path / "data" / "widget", "widget")


def test_invalid_label_folder_is_reported(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    _write(src / "Bad Label!" / "x.png", _image(50))
    dest = tmp_path / "data" / "widget"
    report = import_folder(src, dest, "widget")

    skipped = _skipped_names(report)
    assert "invalid label" in skipped["Bad Label!"]
    assert report.counts == {"good": 4, "scratch": 3, "spot": 2}
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == ["good", "masks", "scratch", "spot"]


def test_upper_case_label_folder_is_lowered(tmp_path: Path) -> None:
    src = _source(tmp_path / "src", spot=0)
    for index in range(2):
        _write(src / "Dent" / f"d{index}.png", _image(70 + index))
    report = import_folder(src, tmp_path / "data" / "widget", "widget")
    assert report.counts == {"good": 4, "dent": 2, "scratch": 3}


def test_mask_of_wrong_size_is_skipped_with_reason(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    _write(src / "masks" / "scratch" / "part1_view0.png", _mask(SIZE * 2))
    dest = tmp_path / "data" / "widget"
    report = import_folder(src, dest, "widget")

    skipped = _skipped_names(report)
    assert set(skipped) == {"part1_view0.png"}
    assert "mask is" in skipped["part1_view0.png"]
    assert str(SIZE * 2) in skipped["part1_view0.png"]
    assert report.masks == 3
    assert report.counts["scratch"] == 3  # the image itself is still imported
    assert (dest / "scratch" / "part1_view0.png").exists()
    assert not (dest / "masks" / "scratch" / "part1_view0.png").exists()


def test_existing_dataset_is_kept_without_replace_and_replaced_with_it(tmp_path: Path) -> None:
    dest = tmp_path / "data" / "widget"
    import_folder(_source(tmp_path / "old"), dest, "widget")
    before = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}

    new_src = tmp_path / "new"
    for index in range(2):
        _write(new_src / "good" / f"new{index}.png", _image(200 + index))
        _write(new_src / "crack" / f"new{index}.png", _image(300 + index))

    with pytest.raises(DatasetError, match="already exists"):
        import_folder(new_src, dest, "widget")
    after = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert after == before
    assert _visible_entries(dest.parent) == ["widget"]

    report = import_folder(new_src, dest, "widget", replace=True)
    assert report.counts == {"good": 2, "crack": 2}
    assert sorted(r.relpath for r in scan_dataset(dest)) == [
        "crack/new0.png",
        "crack/new1.png",
        "good/new0.png",
        "good/new1.png",
    ]
    assert not (dest / "masks").exists()
    assert _visible_entries(dest.parent) == ["widget"]


def test_refused_replacement_keeps_the_old_dataset(tmp_path: Path) -> None:
    dest = tmp_path / "data" / "widget"
    import_folder(_source(tmp_path / "old"), dest, "widget")
    only_defects = tmp_path / "only-defects"
    _write(only_defects / "scratch" / "a.png", _image(1))
    with pytest.raises(DatasetError):
        import_folder(only_defects, dest, "widget", replace=True)
    assert len(scan_dataset(dest)) == 9
    assert _visible_entries(dest.parent) == ["widget"]


def test_missing_source_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        import_folder(tmp_path / "nowhere", tmp_path / "data" / "widget", "widget")
    assert not (tmp_path / "data").exists()


def test_progress_callbacks_count_every_image(tmp_path: Path) -> None:
    src = _source(tmp_path / "src")
    (src / "good" / "bad.png").write_bytes(b"junk")
    totals: list[int] = []
    steps: list[int] = []
    import_folder(src, tmp_path / "data" / "widget", "widget", on_progress=steps.append, on_total=totals.append)
    assert totals == [10]
    assert sum(steps) == 10


def test_elpv_import(tmp_path: Path) -> None:
    dest = tmp_path / "data" / "solar-cells"
    report = import_elpv(dest, "solar-cells")
    assert report.counts == {"good": 1803, "defect": 821}
    assert report.skipped == []

    records = scan_dataset(dest)
    assert len(records) == 2624
    for record in records:
        assert set(record.meta) == {"defect_probability", "cell_type"}, record.relpath
        assert record.meta["cell_type"] in {"mono", "poly"}
        if record.label == "defect":
            assert record.meta["defect_probability"] >= 0.5, record.relpath
        else:
            assert record.label == "good"
            assert record.meta["defect_probability"] < 0.5, record.relpath
    probabilities = {r.meta["defect_probability"] for r in records}
    assert probabilities == {0.0, 0.3333, 0.6667, 1.0}
    assert _visible_entries(dest.parent) == ["solar-cells"]


def test_elpv_limit_and_existing_dataset(tmp_path: Path) -> None:
    dest = tmp_path / "data" / "solar-cells"
    report = import_elpv(dest, "solar-cells", limit=60)
    assert sum(report.counts.values()) == 60
    with pytest.raises(DatasetError, match="already exists"):
        import_elpv(dest, "solar-cells", limit=60)
    assert len(scan_dataset(dest)) == 60
