"""Validation of product and label names; both become folder names, so they must be safe and predictable."""

from __future__ import annotations

import re

from inspection.errors import InspectionError

PRODUCT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_PRODUCT = re.compile(PRODUCT_PATTERN)
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# What a client may send as a label before it is trimmed and lower-cased (letters, digits, '-', '_', spaces).
LABEL_INPUT_PATTERN = r"^\s*[A-Za-z0-9][A-Za-z0-9_-]{0,63}\s*$"
GOOD_LABEL = "good"
DEFECT_VERDICT = "defect"  # a stored verdict: "pass" or this
RESERVED_FOLDERS = frozenset({"masks"})


def validate_product_name(name: str) -> str:
    """Return `name` if it is a valid product name (lower-case [a-z0-9_-], at most 64 chars), else raise."""
    if not _PRODUCT.fullmatch(name):
        raise InspectionError(
            f"invalid product name {name!r}: use 1-64 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def validate_label(name: str) -> str:
    """Return `name` if it is a valid label folder ("good" or a defect type in [a-z0-9_-]), else raise."""
    if not _LABEL.fullmatch(name) or name in RESERVED_FOLDERS:
        raise InspectionError(
            f"invalid label {name!r}: label folders are 'good' or a defect type in lower-case [a-z0-9_-]"
        )
    return name


def check_known_label(label: str, defect_types: list[str] | None, *, new_type: bool = False) -> str:
    """Return `label` if it is "good" or one of the product's `defect_types` (None: not known here, nothing to
    check against); a new defect type only with `new_type`, so a typo never becomes a class."""
    if label == GOOD_LABEL or defect_types is None or new_type or label in defect_types:
        return label
    known = ", ".join(sorted(defect_types)) or "none"
    raise InspectionError(
        f"label {label!r} is not 'good' nor a defect type of this product ({known}); "
        "send new_type=true to record a new defect type"
    )
