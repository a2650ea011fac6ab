"""The line's miss rate, false-detection rate and escapes per million, estimated from the audit sample.

Each answered frame was drawn into the audit with a known probability (inspection.audit). Within a design cell
(verdict, stratum, probability), the audited frames are a simple random sample of the cell's frames, so the share
of defective parts among them estimates the cell's share, and the cell's row count (known exactly: every answer is
a row) scales it up. Selected frames that QA has not labelled yet (the backlog) are left out on the assumption that
QA works through them in an order unrelated to what they show (oldest first). Summed over cells this is the
stratified inverse-probability (Hájek) estimate of the defective parts among passes (escapes) and among defect
verdicts; the rates are ratios of those totals, each corrected for the ratio's second-order bias (a ratio of
noisy totals is biased low by about B Var(A) / (A + B)^3: a point at a 25 % miss rate and 2 % of passes audited).

The 95 % interval is simulated (inspection.audit_simulation): each cell's defective share is drawn from its
Jeffreys posterior Beta(k + 1/2, m - k + 1/2) (k defective among m audited) and the unaudited frames of the cell
from a binomial at that share (a rounded normal with its mean and variance where the unaudited frames outnumber the
audited ones 20 to 1), so a fully audited cell has no sampling error and zero escapes in m audited passes still
bound the miss rate from above. Coverage is checked by simulation in tests/inspection/test_audit_estimates.py; the
reasons are in docs/decisions/0014-audit-sampling.md.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inspection.audit import DEFECT_STRATUM
from inspection.audit_simulation import (
    WARM_DRAWS,
    CellKey,
    DesignCell,
    clear_streams,
    defectives,
    interval,
    shares_of,
    warm_streams,
)

METHOD = "stratified inverse-probability (Hájek) estimate; 95% interval from each cell's Jeffreys posterior"
DRAWS = 4000
# A chart's buckets (168 for an hourly week) each get an interval, at 1,000 draws: their coverage is checked like
# the totals' (tests/inspection/test_audit_estimates.py), at an hour's counts too.
BUCKET_DRAWS = WARM_DRAWS
WIDE_INTERVAL = 0.2  # a rate interval wider than this cannot tell a good line from a bad one: say so
GOOD = "good"


@dataclass(frozen=True, slots=True)
class AuditCount:
    """Rows that share a verdict, audit stratum, audit probability, selection and QA label, and how many."""

    verdict: str
    stratum: str | None
    probability: float | None
    selected: bool
    label: str | None
    n: int


@dataclass
class AuditCells:
    """What the estimates need of a group of rows: each design cell's counts (verdict, stratum, probability) and
    the rows answered before audit sampling, which belong to no design. Statistics read them summed in SQL
    (inspection.storage.rollup_reads) rather than one AuditCount per label."""

    cells: defaultdict[CellKey, DesignCell] = field(default_factory=lambda: defaultdict(DesignCell))
    outside: int = 0

    def add(
        self,
        verdict: str,
        stratum: str | None,
        probability: float | None,
        *,
        n: int,
        selected: int,
        audited: int,
        defective: int,
    ) -> None:
        """Count `n` rows of one design cell, `selected` of them drawn, `audited` of those labelled by QA and
        `defective` of those labelled anything but good."""
        if probability is None or stratum is None:
            self.outside += n  # answered before audit sampling: not part of any design
            return
        cell = self.cells[verdict, stratum, probability]
        cell.n += n
        cell.selected += selected
        cell.audited += audited
        cell.defective += defective

    def add_count(self, count: AuditCount) -> None:
        labelled = count.selected and count.label is not None
        self.add(
            count.verdict,
            count.stratum,
            count.probability,
            n=count.n,
            selected=count.n if count.selected else 0,
            audited=count.n if labelled else 0,
            defective=count.n if labelled and count.label != GOOD else 0,
        )


def _ratio(a: float, var_a: float, b: float, var_b: float) -> float | None:
    """A / (A + B) of two independent estimated totals, less its second-order (Jensen) bias; None when A + B = 0."""
    total = a + b
    if total <= 0:
        return None
    corrected = a / total + (b * var_a - a * var_b) / total**3
    return min(max(corrected, 0.0), 1.0)


def _rate(estimate: float | None, draws: np.ndarray | None) -> dict[str, Any]:
    if estimate is None or draws is None:
        return {"estimate": None, "ci95": None, "method": METHOD}
    return {"estimate": estimate, "ci95": interval(draws, estimate), "method": METHOD}


def audit_estimates(counts: Iterable[AuditCount], draws: int = DRAWS) -> dict[str, Any]:
    """The `audit` block of a group: the three estimates with intervals, the audit's size and backlog, a warning."""
    audit = AuditCells()
    for count in counts:
        audit.add_count(count)
    return estimates_for(audit, draws)


def estimates_for(audit: AuditCells, draws: int = DRAWS) -> dict[str, Any]:
    """audit_estimates of a group whose design cells are already counted."""
    key = tuple(sorted((cell_key, (c.n, c.selected, c.audited, c.defective)) for cell_key, c in audit.cells.items()))
    return _copied(_estimates_of(key, audit.outside, draws))


def clear_audit_cache() -> None:
    """Forget every kept block and every kept random stream but those a server draws at its start
    (warm_audit_streams): the state of a server after a restart, for a benchmark timing a chart's first request."""
    _estimates_of.cache_clear()
    clear_streams(but_warm=True)


def warm_audit_streams() -> None:
    """Draw the chart buckets' kept random streams now (a server's start), not on the first chart's request."""
    warm_streams()


def _copied(block: dict[str, Any]) -> dict[str, Any]:
    """A copy of a cached block that a caller may change (copy.deepcopy of a chart's blocks cost about as much as
    the chart's SQL)."""
    return {
        name: {**value, "ci95": None if value["ci95"] is None else list(value["ci95"])}
        if isinstance(value, dict)
        else value
        for name, value in block.items()
    }


# A dashboard refreshing an hourly chart asks again for every past hour, whose counts no longer change; the block is
# a function of the counts alone (its draws are fixed streams: inspection.audit_simulation), so it is kept rather
# than simulated again.
@functools.lru_cache(maxsize=8192)
def _estimates_of(
    key: tuple[tuple[CellKey, tuple[int, int, int, int]], ...], outside: int, draws: int
) -> dict[str, Any]:
    cells = {cell_key: DesignCell(*counts) for cell_key, counts in key}
    n_selected = sum(cell.selected for cell in cells.values())
    n_audited = sum(cell.audited for cell in cells.values())
    n_pass = sum(cell.n for (verdict, _, _), cell in cells.items() if verdict != DEFECT_STRATUM)
    n_flagged = sum(cell.n for (verdict, _, _), cell in cells.items() if verdict == DEFECT_STRATUM)
    block: dict[str, Any] = {
        "n_selected": n_selected,
        "n_audited": n_audited,
        "backlog": n_selected - n_audited,
        "n_outside_design": outside,
    }
    problems = _unestimable(cells)
    escapes = defectives(cells, draws, flagged=False) if not problems["pass"] else None
    flagged_defects = defectives(cells, draws, flagged=True) if not problems["defect"] else None

    miss: tuple[float | None, np.ndarray | None] = (None, None)
    fdr: tuple[float | None, np.ndarray | None] = (None, None)
    ppm: tuple[float | None, np.ndarray | None] = (None, None)
    if escapes is not None:
        point, sims, variance = escapes
        if n_pass:
            ppm = (1e6 * point / n_pass, 1e6 * sims / n_pass)
        if flagged_defects is not None:
            f_point, f_sims, f_variance = flagged_defects
            miss = (_ratio(point, variance, f_point, f_variance), shares_of(sims, f_sims))
            # Good parts: flagged ones are the flagged less their defects, passed ones the passes less the escapes.
            good_flagged, good_passed = n_flagged - f_point, n_pass - point
            fdr = (
                _ratio(good_flagged, f_variance, good_passed, variance),
                shares_of(n_flagged - f_sims, n_pass - sims),
            )
    block["miss_rate"] = _rate(*miss)
    block["false_detection_rate"] = _rate(*fdr)
    block["escaped_defects_ppm"] = _rate(*ppm)
    block["warning"] = _warning(cells, block, problems, outside) or None
    return block


def _unestimable(cells: dict[CellKey, DesignCell]) -> dict[str, list[str]]:
    """Per side (passes, defect verdicts), why their defective count cannot be estimated (empty when it can)."""
    problems: dict[str, list[str]] = {"pass": [], "defect": []}
    audited_in: defaultdict[tuple[str, str], int] = defaultdict(int)
    for (verdict, stratum, _), cell in cells.items():
        audited_in[verdict, stratum] += cell.audited
    for (verdict, stratum, probability), cell in sorted(cells.items()):
        side = "defect" if verdict == DEFECT_STRATUM else "pass"
        noun = "defect verdicts" if side == "defect" else "passes"
        where = "" if stratum in (DEFECT_STRATUM, "pass") else f" in band {stratum.split(':', 1)[-1]}"
        if probability == 0 and cell.n:
            problems[side].append(f"{cell.n} {noun}{where} had audit probability 0")
        elif audited_in[verdict, stratum] == 0 and cell.n:
            problems[side].append(f"none of {cell.n} {noun}{where} audited yet")
    return problems


def _warning(
    cells: dict[CellKey, DesignCell], block: dict[str, Any], problems: dict[str, list[str]], outside: int
) -> str:
    """Plain sentences for a plant manager: what the audit cannot say yet, and what would let it."""
    notes: list[str] = []
    for side, rate in (("pass", "miss rate"), ("defect", "false-detection rate")):
        if problems[side]:
            notes.append(f"{'; '.join(problems[side])}: the {rate} cannot be estimated")
    audited_passes = sum(c.audited for (v, _, _), c in cells.items() if v != DEFECT_STRATUM)
    escapes_seen = sum(c.defective for (v, _, _), c in cells.items() if v != DEFECT_STRATUM)
    miss = block["miss_rate"]
    if not problems["pass"] and audited_passes and escapes_seen == 0 and miss["ci95"] is not None:
        notes.append(
            f"0 escapes in {audited_passes} audited passes: miss rate below {miss['ci95'][1]:.1%} at 95 %; "
            "audit more passes to say more"
        )
    for name, label in (("miss_rate", "miss rate"), ("false_detection_rate", "false-detection rate")):
        interval = block[name]["ci95"]
        if name == "miss_rate" and escapes_seen == 0:
            continue  # said above, with its bound
        if interval is not None and interval[1] - interval[0] > WIDE_INTERVAL:
            notes.append(
                f"the audit is too small to pin the {label} ({interval[0]:.1%} to {interval[1]:.1%}); audit more frames"
            )
    if block["backlog"]:
        done = block["n_audited"] / block["n_selected"]
        notes.append(f"{block['backlog']} selected frames await QA ({done:.0%} of the audit done)")
    if outside:
        notes.append(f"{outside} frames answered before audit sampling are not in these estimates")
    return "; ".join(notes)
