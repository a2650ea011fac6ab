"""Tests for the synthetic product generator: layout, determinism and that defects are really drawn."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.synth import DEFECT_TYPES, generate_synthetic_product

SIZE = 64  # small images keep the whole module well under a second


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path: Path) -> None:
    a = _files(generate_synthetic_product(tmp_path / "a", 12, seed=5, image_size=SIZE).root)
    b = _files(generate_synthetic_product(tmp_path / "b", 12, seed=5, image_size=SIZE).root)
    c = _files(generate_synthetic_product(tmp_path / "c", 12, seed=6, image_size=SIZE).root)
    assert a == b
    assert a.keys() == c.keys()  # labels are placed by index, not by seed
    assert all(a[k] != c[k] for k in a)


def test_image_i_does_not_depend_on_n(tmp_path: Path) -> None:
    short = _files(generate_synthetic_product(tmp_path / "short", 10, image_size=SIZE).root)
    long = _files(generate_synthetic_product(tmp_path / "long", 25, image_size=SIZE).root)
    assert all(long[k] == v for k, v in short.items())


def test_counts_layout_and_masks(tmp_path: Path) -> None:
    progress: list[int] = []
    summary = generate_synthetic_product(
        tmp_path / "p", 23, image_size=SIZE, defect_fraction=0.4, on_progress=progress.append
    )
    root = summary.root
    assert progress == [1] * 23
    n_defects = round(23 * 0.4)
    assert summary.counts["good"] == 23 - n_defects
    per_type = [summary.counts[t] for t in DEFECT_TYPES]
    assert sum(per_type) == n_defects and max(per_type) - min(per_type) <= 1  # round robin

    stems: list[str] = []
    for label, count in summary.counts.items():
        images = sorted((root / label).glob("*.png"))
        assert len(images) == count
        stems += [p.stem for p in images]
        if label == "good":
            continue
        masks = sorted((root / "masks" / label).glob("*.png"))
        assert [m.name for m in masks] == [p.name for p in images]  # a mask for every defect image
        for image_path, mask_path in zip(images, masks, strict=True):
            image, mask = _read(image_path), _read(mask_path)
            assert image.dtype == mask.dtype == np.uint8
            assert mask.shape == image.shape == (SIZE, SIZE)
            assert set(np.unique(mask)) == {0, 255}
    assert len(stems) == len(set(stems)) == 23
    assert {p.name for p in (root / "masks").iterdir()} == set(DEFECT_TYPES)  # no masks for "good"
    assert {p.name for p in root.iterdir()} == {"good", "masks", *DEFECT_TYPES}


@pytest.mark.parametrize(("color", "shape"), [(False, (SIZE, SIZE)), (True, (SIZE, SIZE, 3))])
def test_gray_and_color_channels(tmp_path: Path, color: bool, shape: tuple[int, ...]) -> None:
    root = generate_synthetic_product(tmp_path / "p", 6, color=color, image_size=SIZE).root
    for path in root.rglob("*.png"):
        expected = (SIZE, SIZE) if path.parent.parent.name == "masks" else shape
        assert _read(path).shape == expected


def test_subset_of_defect_types(tmp_path: Path) -> None:
    summary = generate_synthetic_product(tmp_path / "p", 10, image_size=SIZE, defect_types=["crack"])
    assert summary.counts == {"good": 6, "crack": 4}


def test_defects_stand_out_from_their_surroundings(tmp_path: Path) -> None:
    """Defect pixels differ from a ring around them far more than the same region does on good parts."""
    root = generate_synthetic_product(tmp_path / "p", 40, seed=3, image_size=SIZE, defect_fraction=0.5).root
    kernel = np.ones((3, 3), np.uint8)

    def contrast(image: np.ndarray, mask: np.ndarray) -> float:
        # The ring starts two pixels out so the soft edge of a stain does not count as its surroundings.
        inner = cv2.dilate(mask, kernel, iterations=2) > 0
        ring = (cv2.dilate(mask, kernel, iterations=5) > 0) & ~inner
        pixels = image.astype(np.float64)
        return abs(pixels[mask > 0].mean() - pixels[ring].mean())

    masks, defect_scores = [], []
    for label in DEFECT_TYPES:
        for path in sorted((root / label).glob("*.png")):
            mask = _read(root / "masks" / label / path.name)
            masks.append(mask)
            defect_scores.append(contrast(_read(path), mask))
    goods = sorted((root / "good").glob("*.png"))
    good_scores = [contrast(_read(g), m) for g, m in zip(goods, masks, strict=True)]

    assert min(defect_scores) > 10.0  # gray levels; texture noise is a few levels
    assert np.median(defect_scores) > 8 * np.median(good_scores)
    assert min(defect_scores) > np.percentile(good_scores, 90)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 1}, "at least 2"),
        ({"defect_types": ["scratch", "dent"]}, "dent"),
        ({"defect_types": []}, "non-empty"),
        ({"defect_fraction": 0.0}, "between 0 and 1"),
        ({"defect_fraction": 1.0}, "between 0 and 1"),
    ],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_synthetic_product(tmp_path / "p", **{"n": 10, "image_size": SIZE, **kwargs})  # type: ignore[arg-type]
    assert not (tmp_path / "p").exists()


def test_refuses_non_empty_root_but_accepts_empty_one(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        generate_synthetic_product(busy, 4, image_size=SIZE)
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert generate_synthetic_product(empty, 4, image_size=SIZE).counts["good"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind
