"""`inspection datasets import elpv`: the 2,624 real electroluminescence solar-cell images of `elpv-dataset`.

Deitsch et al. (2019) give each cell a defect probability in {0, 1/3, 2/3, 1} from expert votes; a cell is
"defect" when that probability is >= 0.5. The probability and the mono/poly cell type are kept as metadata.
The data are CC BY-NC-SA 4.0 and are never committed; they are copied from the installed package.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from datasets.importers.folder import ImportReport
from datasets.layout import label_counts, require_trainable, scan_dataset, write_metadata
from datasets.staging import staged_dataset
from inspection.errors import DatasetError

DEFECT_LABEL = "defect"
DEFECT_PROBABILITY_CUTOFF = 0.5


def elpv_labels_file() -> Path:
    """labels.csv inside the installed elpv-dataset package."""
    try:
        import elpv_dataset
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise DatasetError("the elpv-dataset package is not installed (pip install elpv-dataset)") from exc
    return Path(elpv_dataset.__file__).parent / "data" / "labels.csv"


def read_elpv_labels(labels_file: Path) -> list[tuple[str, float, str]]:
    """(relative image path, defect probability, cell type) per line of labels.csv."""
    rows = []
    for line in labels_file.read_text().splitlines():
        if line.strip():
            path, probability, cell_type = line.split()
            rows.append((path, float(probability), cell_type))
    return rows


def import_elpv(
    dest: Path,
    product: str,
    *,
    replace: bool = False,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ImportReport:
    """Copy the ELPV images into `dest` as good/ and defect/, with probability and cell type as metadata."""
    labels_file = elpv_labels_file()
    rows = read_elpv_labels(labels_file)[:limit]
    if on_total:
        on_total(len(rows))
    report = ImportReport(product=product, root=dest)
    with staged_dataset(dest, replace=replace) as staging:
        metadata: dict[str, dict[str, object]] = {}
        for relpath, probability, cell_type in rows:
            label = DEFECT_LABEL if probability >= DEFECT_PROBABILITY_CUTOFF else "good"
            source = labels_file.parent / relpath
            target = staging / label / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            metadata[f"{label}/{source.name}"] = {
                "defect_probability": round(probability, 4),
                "cell_type": cell_type,
            }
            if on_progress:
                on_progress(1)
        write_metadata(staging, metadata)
        records = scan_dataset(staging)
        require_trainable(records, product)
        report.counts = label_counts(records)
    return report
