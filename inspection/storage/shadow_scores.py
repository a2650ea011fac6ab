"""Shadow scores (a challenger's verdicts on frames the champion answered) and the comparison built from them.

The comparison is the live evidence for a promotion: how often the challenger agrees with what the line was
told, and, on the frames QA labelled, the miss and false-detection rates of both models on the same frames,
each with its Wilson 95% interval and sample size (the conventions of `inspection.storage.defect_stats`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from inspection.metrics import wilson_interval
from inspection.storage.defect_stats import MIN_TRUSTED_N
from inspection.storage.schema import Inspection, ShadowScore


def add_shadow_scores(sessions: sessionmaker[Session], rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert a batch of shadow scores in one transaction; returns how many were written."""
    if not rows:
        return 0
    with sessions.begin() as session:
        session.execute(insert(ShadowScore), [dict(row) for row in rows])
    return len(rows)


def _rate(k: int, n: int) -> dict[str, Any]:
    # The same shape as /v1/stats' rates, so the dashboard draws both with one function.
    return {"rate": k / n if n else None, "k": k, "n": n, "ci95": list(wilson_interval(k, n))}


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite gives back naive datetimes (stored in UTC); PostgreSQL aware ones.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class ModelRates:
    """One model's verdicts on the QA-labelled shadowed frames: defective ones passed, good ones flagged."""

    missed: int = 0
    flagged: int = 0

    def to_dict(self, n_defective: int, n_good: int) -> dict[str, Any]:
        """Miss and false-detection rates with Wilson 95% intervals and their sample sizes."""
        return {"miss_rate": _rate(self.missed, n_defective), "false_detection_rate": _rate(self.flagged, n_good)}


@dataclass(frozen=True)
class ShadowComparison:
    """Challenger in shadow against the served verdicts of the same frames."""

    product: str
    challenger_version: int | None
    champion_version: int | None = None  # the filter asked for; None: whichever champion served each frame
    served_versions: tuple[int, ...] = ()  # champion versions that answered the compared frames
    since: datetime | None = None  # received_at of the first shadowed frame (when shadowing began)
    until: datetime | None = None  # received_at of the last shadowed frame
    frames_shadowed: int = 0
    agreeing: int = 0  # frames where the shadow verdict equals the served verdict
    missing_shadow: int = 0  # frames the champion answered in [since, until] with no shadow score (skipped)
    n_defective: int = 0  # QA-labelled defective (any label but "good")
    n_good: int = 0  # QA-labelled good
    champion: ModelRates = ModelRates()
    challenger: ModelRates = ModelRates()

    @property
    def warning(self) -> str | None:
        """Plain words when the QA sample is too small to act on (or there is none)."""
        if self.challenger_version is None:
            return None
        if self.frames_shadowed == 0:
            return f"no frame has been scored by v{self.challenger_version} in shadow yet"
        warnings = []
        if self.n_defective < MIN_TRUSTED_N:
            warnings.append(f"only {self.n_defective} QA-checked defective frames: too few to compare miss rates")
        if self.n_good < MIN_TRUSTED_N:
            warnings.append(f"only {self.n_good} QA-checked good frames: too few to compare false-detection rates")
        return "; ".join(warnings) or None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of GET /v1/products/{p}/shadow."""
        return {
            "product": self.product,
            "challenger": self.challenger_version,
            "champion": self.champion_version,
            "served_versions": list(self.served_versions),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "frames_shadowed": self.frames_shadowed,
            "missing_shadow": self.missing_shadow,
            "agreement": _rate(self.agreeing, self.frames_shadowed),
            "qa": {
                "n_reviewed": self.n_defective + self.n_good,
                "n_defective": self.n_defective,
                "n_good": self.n_good,
                "champion": self.champion.to_dict(self.n_defective, self.n_good),
                "challenger": self.challenger.to_dict(self.n_defective, self.n_good),
            },
            "warning": self.warning,
        }


def shadow_comparison(
    sessions: sessionmaker[Session],
    product: str,
    challenger_version: int,
    champion_version: int | None = None,
    since: datetime | None = None,
) -> ShadowComparison:
    """Agreement and both models' QA-measured rates on the frames `challenger_version` scored in shadow.

    `champion_version` keeps only frames that version answered; `since` only frames received from then on.
    Frames the challenger itself answered (after it became champion) are never compared with themselves.
    """
    served: list[ColumnElement[bool]] = [
        Inspection.product == product,
        Inspection.model_version != challenger_version,
    ]
    if champion_version is not None:
        served.append(Inspection.model_version == champion_version)
    if since is not None:
        served.append(Inspection.received_at >= _utc(since))
    joined = and_(ShadowScore.inspection_id == Inspection.id, ShadowScore.model_version == challenger_version)
    groups_query = (
        select(
            Inspection.verdict,
            ShadowScore.verdict.label("shadow_verdict"),
            Inspection.feedback_label,
            Inspection.model_version,
            func.count().label("n_rows"),
        )
        .join(ShadowScore, joined)
        .where(*served)
        .group_by(Inspection.verdict, ShadowScore.verdict, Inspection.feedback_label, Inspection.model_version)
    )
    window_query = (
        select(func.min(Inspection.received_at), func.max(Inspection.received_at))
        .join(ShadowScore, joined)
        .where(*served)
    )
    with sessions() as session:
        groups = session.execute(groups_query).all()
        first, last = session.execute(window_query).one()
        missing = 0
        if first is not None:
            # Skipped frames have no row to join, so they are counted from the inspections of the same window.
            unshadowed = ~exists().where(joined)
            missing_query = select(func.count()).where(
                *served, Inspection.received_at >= first, Inspection.received_at <= last, unshadowed
            )
            missing = int(session.scalar(missing_query) or 0)

    shadowed = agreeing = n_defective = n_good = 0
    champion_missed = champion_flagged = challenger_missed = challenger_flagged = 0
    versions: set[int] = set()
    for served_verdict, shadow_verdict, label, version, n_rows in groups:
        count = int(n_rows)
        shadowed += count
        versions.add(int(version))
        agreeing += count if served_verdict == shadow_verdict else 0
        if label is None:
            continue
        if label == "good":
            n_good += count
            champion_flagged += count if served_verdict == "defect" else 0
            challenger_flagged += count if shadow_verdict == "defect" else 0
        else:
            n_defective += count
            champion_missed += count if served_verdict == "pass" else 0
            challenger_missed += count if shadow_verdict == "pass" else 0
    return ShadowComparison(
        product=product,
        challenger_version=challenger_version,
        champion_version=champion_version,
        served_versions=tuple(sorted(versions)),
        since=_utc(first),
        until=_utc(last),
        frames_shadowed=shadowed,
        agreeing=agreeing,
        missing_shadow=missing,
        n_defective=n_defective,
        n_good=n_good,
        champion=ModelRates(champion_missed, champion_flagged),
        challenger=ModelRates(challenger_missed, challenger_flagged),
    )
