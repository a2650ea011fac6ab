"""Defect statistics from stored inspections: counts, defect rate, per-type counts, and the live miss and
false-detection rates two ways: `audit`, estimated from the audit sample drawn at answer time (the line's rates,
inspection.audit_estimates), and `qa`, counted over whichever frames QA labelled (Wilson 95% intervals; not a
random sample of the line, so not the line's rates)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session, sessionmaker

from inspection.audit_estimates import BUCKET_DRAWS, DRAWS, AuditCells, estimates_for
from inspection.errors import InspectionError
from inspection.metrics import wilson_interval
from inspection.names import DEFECT_VERDICT
from inspection.spc import p_chart
from inspection.storage.rollup_reads import grouped_counts
from inspection.storage.time_keys import parse_time_key

Bucket = Literal["hour", "shift", "day"]
BUCKETS: tuple[str, ...] = ("hour", "shift", "day")
MIN_TRUSTED_N = 30  # below this a Wilson interval is too wide to act on
NO_LINE = "(none)"
UNTYPED = "(none)"
QA_SCOPE = "of the frames QA labelled (not a random sample of the line)"


@dataclass
class _Tally:
    """Running counts for one group of inspections."""

    n: int = 0
    n_defect: int = 0
    per_type: Counter[str] = field(default_factory=Counter)
    n_reviewed: int = 0
    defects_reviewed: int = 0
    defects_missed: int = 0
    goods_reviewed: int = 0
    goods_flagged: int = 0
    audit: AuditCells = field(default_factory=AuditCells)

    def add(self, group: Any) -> None:
        """Count one group read by grouped_counts: rows that share a verdict, defect type and audit design cell."""
        count, reviewed, good = int(group.n_rows), int(group.n_reviewed), int(group.n_reviewed_good)
        self.audit.add(
            group.verdict,
            group.audit_stratum,
            group.audit_probability,
            n=count,
            selected=int(group.n_selected),
            audited=int(group.n_audited),
            defective=int(group.n_audited_defective),
        )
        self.n += count
        self.n_reviewed += reviewed
        self.goods_reviewed += good
        self.defects_reviewed += reviewed - good
        if group.verdict == DEFECT_VERDICT:
            self.n_defect += count
            self.per_type[group.defect_type or UNTYPED] += count
            self.goods_flagged += good
        elif group.verdict == "pass":
            self.defects_missed += reviewed - good

    def block(self, draws: int = DRAWS) -> dict[str, Any]:
        """The JSON-ready summary of this group (its audit interval simulated with `draws` draws)."""
        warnings = []
        if self.defects_reviewed < MIN_TRUSTED_N:
            warnings.append(f"only {self.defects_reviewed} QA-checked defective frames: too few to trust the miss rate")
        if self.goods_reviewed < MIN_TRUSTED_N:
            warnings.append(
                f"only {self.goods_reviewed} QA-checked good frames: too few to trust the false-detection rate"
            )
        return {
            "n": self.n,
            "n_defect": self.n_defect,
            "defect_rate": self.n_defect / self.n if self.n else None,
            "per_type": dict(sorted(self.per_type.items(), key=lambda item: (-item[1], item[0]))),
            "audit": estimates_for(self.audit, draws=draws),
            "qa": {
                "scope": QA_SCOPE,
                "n_reviewed": self.n_reviewed,
                "miss_rate": _rate(self.defects_missed, self.defects_reviewed),
                "false_detection_rate": _rate(self.goods_flagged, self.goods_reviewed),
                "warning": "; ".join(warnings) or None,
            },
        }


def _rate(k: int, n: int) -> dict[str, Any]:
    return {"rate": k / n if n else None, "k": k, "n": n, "ci95": list(wilson_interval(k, n))}


def _as_utc(moment: datetime | None) -> datetime | None:
    # SQLite stores wall-clock time without an offset, so every bound must be in UTC like the stored rows;
    # a naive bound is taken to be UTC already.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def bucket_bounds(hour: datetime, bucket: Bucket, shift_starts: Sequence[int]) -> tuple[datetime, datetime]:
    """Start and end of the hour, shift or day bucket holding the UTC hour `hour`."""
    if bucket == "hour":
        return hour, hour + timedelta(hours=1)
    midnight = hour.replace(hour=0)
    if bucket == "day":
        return midnight, midnight + timedelta(days=1)
    starts = sorted(shift_starts)
    # Before the first start of a day, the hour belongs to the previous day's last shift (it runs past midnight).
    started_today = hour.hour >= starts[0]
    day = midnight if started_today else midnight - timedelta(days=1)
    start_hour = max(s for s in starts if s <= hour.hour) if started_today else starts[-1]
    later = [s for s in starts if s > start_hour]
    end = day + timedelta(hours=later[0]) if later else day + timedelta(days=1, hours=starts[0])
    return day + timedelta(hours=start_hour), end


def compute_stats(
    sessions: sessionmaker[Session],
    *,
    product: str | None = None,
    line_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    bucket: Bucket | None = None,
    shift_starts: Sequence[int] = (6, 14, 22),
) -> dict[str, Any]:
    """Totals, per product, per line and (with `bucket`) per UTC hour, shift or day; `until` is exclusive."""
    since, until = _as_utc(since), _as_utc(until)
    if since is not None and until is not None and since >= until:
        raise InspectionError("since must be earlier than until")
    if bucket is not None and bucket not in BUCKETS:
        raise InspectionError(f"bucket must be one of {', '.join(BUCKETS)}")
    whole_hours = all(isinstance(s, int) and 0 <= s < 24 for s in shift_starts)
    if not shift_starts or not whole_hours or len(set(shift_starts)) != len(shift_starts):
        raise InspectionError("shift starts must be distinct whole hours in [0, 24)")
    # Two reads, each grouped down to what its tallies need: per line without the hour (totals, products,
    # lines), and per hour without the line (the buckets). One read per (line, hour) cell made the product's
    # hourly chart fold about 23,000 cells for a week at 20 lines (docs/scale.md); now it is the cells of the
    # lines plus one line's worth per hour.
    groups = grouped_counts(sessions, product=product, line_id=line_id, since=since, until=until)
    totals = _Tally()
    by_product: defaultdict[str, _Tally] = defaultdict(_Tally)
    by_line: defaultdict[str, _Tally] = defaultdict(_Tally)
    for group in groups:
        for tally in (totals, by_product[group.product], by_line[group.line_id or NO_LINE]):
            tally.add(group)
    by_bucket: defaultdict[tuple[datetime, datetime], _Tally] = defaultdict(_Tally)
    if bucket is not None:
        hours = grouped_counts(
            sessions, product=product, line_id=line_id, since=since, until=until, hourly=True, per_line=False
        )
        bounds: dict[str, tuple[datetime, datetime]] = {}
        for group in hours:
            key = bounds.get(group.hour)
            if key is None:
                key = bounds[group.hour] = bucket_bounds(parse_time_key(group.hour, "hour"), bucket, shift_starts)
            by_bucket[key].add(group)

    result: dict[str, Any] = {
        "filters": {
            "product": product,
            "line_id": line_id,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "bucket": bucket,
            "shift_starts": sorted(shift_starts),
        },
        "totals": totals.block(),
        "by_product": {name: by_product[name].block() for name in sorted(by_product)},
        "by_line": {name: by_line[name].block() for name in sorted(by_line)},
    }
    if bucket is not None:
        ordered = sorted(by_bucket)
        limits = p_chart([(by_bucket[b].n_defect, by_bucket[b].n) for b in ordered])
        result["buckets"] = [
            {
                "start": start.isoformat(),
                "end": end.isoformat(),
                **by_bucket[start, end].block(draws=BUCKET_DRAWS),
                "control": None if control is None else asdict(control),
            }
            for (start, end), control in zip(ordered, limits, strict=True)
        ]
    return result
