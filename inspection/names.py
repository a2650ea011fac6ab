"""Validation of product and label names; both become folder names, so they must be safe and predictable."""

from __future__ import annotations

import re

from inspection.errors import InspectionError

_PRODUCT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
GOOD_LABEL = "good"
RESERVED_FOLDERS = frozenset({"masks"})


def validate_product_name(name: str) -> str:
    """Return `name` if it is a valid product name (lower-case [a-z0-9_-], at most 64 chars), else raise."""
    if not _PRODUCT.match(name):
        raise InspectionError(
            f"invalid product name {name!r}: use 1-64 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def validate_label(name: str) -> str:
    """Return `name` if it is a valid label folder ("good" or a defect type in [a-z0-9_-]), else raise."""
    if not _LABEL.match(name) or name in RESERVED_FOLDERS:
        raise InspectionError(
            f"invalid label {name!r}: label folders are 'good' or a defect type in lower-case [a-z0-9_-]"
        )
    return name
