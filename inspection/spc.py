"""Statistical process control for the defect rate: the p-chart (Shewhart chart for a fraction defective).

Each time bucket holds a different number of frames, so its 3-sigma limits differ: a bucket of 20 frames may
swing far more than one of 2,000 without anything having changed on the line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

SIGMAS = 3.0


@dataclass(frozen=True)
class ControlLimits:
    """One bucket's place on the p-chart."""

    center: float
    lcl: float
    ucl: float
    out_of_control: bool


def p_chart(counts: Sequence[tuple[int, int]], sigmas: float = SIGMAS) -> list[ControlLimits | None]:
    """Limits per (defects, frames) bucket around the pooled defect fraction; None for an empty bucket."""
    total_defects = sum(k for k, _ in counts)
    total_frames = sum(n for _, n in counts)
    if total_frames == 0:
        return [None] * len(counts)
    center = total_defects / total_frames
    limits: list[ControlLimits | None] = []
    for k, n in counts:
        if n == 0:
            limits.append(None)
            continue
        spread = sigmas * math.sqrt(center * (1 - center) / n)
        lcl, ucl = max(0.0, center - spread), min(1.0, center + spread)
        fraction = k / n
        # With center 0 or 1 the spread is 0: any bucket off the center is out of control, as it should be.
        limits.append(ControlLimits(center, lcl, ucl, fraction > ucl or fraction < lcl))
    return limits
