"""Tables. Every answered inspection is one row; API keys are stored only as hashes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Dialect, Float, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A moment in time stored as UTC and read back as an aware UTC datetime, on every database.

    SQLite has no time-zone type: a plain DateTime writes an aware value's wall clock and drops its offset, so
    10:00+02:00 came back as 10:00 and a `since` with an offset compared against the wrong instant. Values bound
    to queries (since/until) pass through here too, so both sides of a comparison are UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Inspection(Base):
    """One frame's verdict, who sent it, which model answered, and (later) what QA said it really was."""

    __tablename__ = "inspections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID4, assigned by the server
    product: Mapped[str] = mapped_column(String(64))
    line_id: Mapped[str | None] = mapped_column(String(64))
    camera_id: Mapped[str | None] = mapped_column(String(64))
    frame_id: Mapped[str | None] = mapped_column(String(128))
    captured_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    verdict: Mapped[str] = mapped_column(String(16))  # "pass" or "defect"
    defect_probability: Mapped[float] = mapped_column(Float)
    defect_type: Mapped[str | None] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)
    model_version: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    archive_path: Mapped[str | None] = mapped_column(String(512))
    anomaly_map_path: Mapped[str | None] = mapped_column(String(512))  # the model's map, for the heatmap
    feedback_label: Mapped[str | None] = mapped_column(String(64))
    feedback_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    feedback_by: Mapped[str | None] = mapped_column(String(64))
    # The audit sample, drawn when the frame was answered (inspection.audit): the probability the frame had of
    # being selected (None: answered before audit sampling existed), whether it was, and the design stratum
    # ("pass", "defect" or a pass score band) that probability came from. The live estimates weight by these.
    audit_probability: Mapped[float | None] = mapped_column(Float)
    audit_selected: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    audit_stratum: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_inspections_product_received", "product", "received_at"),
        Index("ix_inspections_line_received", "line_id", "received_at"),
        Index("ix_inspections_received", "received_at"),
        Index("ix_inspections_audit_queue", "product", "audit_selected", "received_at"),
    )


class AuditPolicyRecord(Base):
    """One setting of a product's audit sampling rates, with who set it and why; the newest row is in force."""

    __tablename__ = "audit_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product: Mapped[str] = mapped_column(String(64))
    pass_rate: Mapped[float] = mapped_column(Float)
    defect_rate: Mapped[float] = mapped_column(Float)
    pass_bands: Mapped[str | None] = mapped_column(Text)  # JSON list of {lo, hi, rate}, or None
    set_at: Mapped[datetime] = mapped_column(UtcDateTime())
    set_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(500))

    __table_args__ = (Index("ix_audit_policies_product", "product", "id"),)


class ShadowScore(Base):
    """A challenger's verdict on a frame the champion answered; never shown to the line.

    A table of its own, keyed by the inspection's id without a foreign key, so the shadow worker only ever
    inserts: it never updates (or waits for) the inspection row the request wrote.
    """

    __tablename__ = "shadow_scores"

    inspection_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    product: Mapped[str] = mapped_column(String(64))
    defect_probability: Mapped[float] = mapped_column(Float)
    verdict: Mapped[str] = mapped_column(String(16))  # "pass" or "defect", as the challenger would have answered
    defect_type: Mapped[str | None] = mapped_column(String(64))
    threshold: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)  # from the champion's answer to the shadow score
    scored_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_shadow_scores_inspection", "inspection_id"),
        Index("ix_shadow_scores_product_version", "product", "model_version"),
    )


class ApiKey(Base):
    """An API key's SHA-256 hash and role; the key itself is shown once at creation and never stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))  # camera | qa | manager
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class _ProductCellColumns:
    """The key and counts of a product's cell, which every rollup table shares; the line's tables add `line_id`,
    and each table its time column (`hour`, `day`).

    Every key column is NOT NULL (a missing value is stored as ROLLUP_NONE, or -1 for a missing audit
    probability) because a unique key treats NULLs as distinct on both databases, and an upsert could never find
    its row.
    """

    product: Mapped[str] = mapped_column(String(64), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(16), primary_key=True)
    defect_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    feedback_label: Mapped[str] = mapped_column(String(64), primary_key=True)
    audit_stratum: Mapped[str] = mapped_column(String(32), primary_key=True)
    audit_probability: Mapped[float] = mapped_column(Float, primary_key=True, autoincrement=False)
    audit_selected: Mapped[bool] = mapped_column(Boolean, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(Integer)
    latency_ms_sum: Mapped[float] = mapped_column(Float)


class _RollupCellColumns(_ProductCellColumns):
    """A line's cell: the product's key and its line."""

    line_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class InspectionRollup(_RollupCellColumns, Base):
    """How many inspections share one hour, place, verdict, QA label and audit design cell: what every statistic
    is summed from, so a chart costs the buckets it shows, not the rows stored. Kept up to date in the
    transaction that writes the rows (inspection.storage.rollups); retention never deletes from it.
    """

    __tablename__ = "inspection_rollups"

    hour: Mapped[str] = mapped_column(String(13), primary_key=True)  # UTC "YYYY-MM-DDTHH", as time_key writes it

    __table_args__ = (
        Index("ix_inspection_rollups_hour", "hour"),
        Index("ix_inspection_rollups_product_hour", "product", "hour"),
        Index("ix_inspection_rollups_line_hour", "line_id", "hour"),
    )


class InspectionDailyRollup(_RollupCellColumns, Base):
    """The hourly rollups summed per UTC day: what a statistic over whole days reads, 24 times fewer cells than
    the hours. Kept in the same transactions as the hourly cells, and refreshed from them by a rebuild
    (inspection.storage.rollups)."""

    __tablename__ = "inspection_daily_rollups"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # UTC "YYYY-MM-DD": the hour key's first 10

    __table_args__ = (
        Index("ix_inspection_daily_rollups_day", "day"),
        Index("ix_inspection_daily_rollups_product_day", "product", "day"),
        Index("ix_inspection_daily_rollups_line_day", "line_id", "day"),
    )


class InspectionProductRollup(_ProductCellColumns, Base):
    """The hourly rollups summed over a product's lines: what a product's (or the plant's) hourly and shift charts
    read. A line's hour holds more cells as its rate fills rarer label and type combinations; summed over the
    lines, a product's hour holds about as many at 1M rows as at 10M (docs/scale.md). Kept in the same
    transactions as the hourly cells, and refreshed from them by a rebuild (inspection.storage.rollups)."""

    __tablename__ = "inspection_product_rollups"

    hour: Mapped[str] = mapped_column(String(13), primary_key=True)

    __table_args__ = (
        Index("ix_inspection_product_rollups_product_hour", "product", "hour"),
        Index("ix_inspection_product_rollups_hour", "hour"),
    )


class InspectionMinuteCount(Base):
    """How many inspections one product's line answered in one UTC minute, and their summed latency: the
    throughput chart's cells, kept for two days (inspection.storage.minute_counts)."""

    __tablename__ = "inspection_minute_counts"

    product: Mapped[str] = mapped_column(String(64), primary_key=True)
    line_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" for frames without a line
    minute: Mapped[str] = mapped_column(String(16), primary_key=True)  # UTC "YYYY-MM-DDTHH:MM", as time_key writes
    n: Mapped[int] = mapped_column(Integer)
    latency_ms_sum: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_inspection_minute_counts_minute", "minute"),)


class RetentionRun(Base):
    """One retention run over one product: the cutoffs it applied and what it removed.

    `complete_from` is the oldest time whose rows retention has left whole: a rollup rebuild must start there,
    because before it the rollups are the only count left.
    """

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product: Mapped[str] = mapped_column(String(64))
    ran_at: Mapped[datetime] = mapped_column(UtcDateTime())
    complete_from: Mapped[datetime] = mapped_column(UtcDateTime())
    rows_deleted: Mapped[int] = mapped_column(Integer)
    frames_deleted: Mapped[int] = mapped_column(Integer)
