"""Each product's audit rates as QA set them, with who and why, newest in force; else the product's config.

A table rather than registry tags: the rates belong to the product, not to a model version, and every replica
reads them from the one database it already shares. The history is never rewritten, so the rates any past frame
was drawn at can be explained (each row also stores the probability it was drawn with).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from inspection.audit import AuditPolicy, AuditRefused
from inspection.errors import ConfigError
from inspection.product_config import load_product_config
from inspection.storage.schema import AuditPolicyRecord

MAX_REASON_CHARS = 500
CONFIG_SOURCE = "product config"
QA_SOURCE = "set by QA"


@dataclass(frozen=True)
class AuditSetting:
    """The rates in force for a product and where they come from (QA's record, or the product's config)."""

    policy: AuditPolicy
    source: str
    set_at: datetime | None = None
    set_by: str | None = None
    reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON form the HTTP API and the CLI show."""
        return {
            **self.policy.model_dump(),
            "description": self.policy.describe(),
            "source": self.source,
            "set_at": self.set_at.isoformat() if self.set_at else None,
            "set_by": self.set_by,
            "reason": self.reason,
        }


def _from_record(record: AuditPolicyRecord) -> AuditSetting:
    bands = json.loads(record.pass_bands) if record.pass_bands else None
    policy = AuditPolicy(pass_rate=record.pass_rate, defect_rate=record.defect_rate, pass_bands=bands)
    set_at = record.set_at if record.set_at.tzinfo else record.set_at.replace(tzinfo=UTC)  # SQLite drops the offset
    return AuditSetting(policy, QA_SOURCE, set_at, record.set_by, record.reason)


def record_audit_setting(
    sessions: sessionmaker[Session], product: str, policy: AuditPolicy, by: str, reason: str
) -> AuditSetting:
    """Put new rates in force for `product`, recording who and why; a missing or overlong reason is refused."""
    reason = reason.strip()
    if not reason:
        raise AuditRefused("say why the audit rates change (--reason): the record is how an auditor reads them later")
    if len(reason) > MAX_REASON_CHARS:
        raise AuditRefused(f"the reason is longer than {MAX_REASON_CHARS} characters")
    record = AuditPolicyRecord(
        product=product,
        pass_rate=policy.pass_rate,
        defect_rate=policy.defect_rate,
        pass_bands=None if policy.pass_bands is None else json.dumps([b.model_dump() for b in policy.pass_bands]),
        set_at=datetime.now(UTC),
        set_by=by[:64],
        reason=reason,
    )
    with sessions.begin() as session:
        session.add(record)
    return _from_record(record)


def audit_history(sessions: sessionmaker[Session], product: str, limit: int = 20) -> list[AuditSetting]:
    """QA's settings for `product`, newest first."""
    query = (
        select(AuditPolicyRecord)
        .where(AuditPolicyRecord.product == product)
        .order_by(AuditPolicyRecord.id.desc())
        .limit(limit)
    )
    with sessions() as session:
        return [_from_record(record) for record in session.scalars(query)]


def audit_setting_in_force(sessions: sessionmaker[Session], configs_dir: Path, product: str) -> AuditSetting:
    """QA's newest setting for `product`, else its config's `audit` (the defaults when the config says nothing)."""
    newest = audit_history(sessions, product, limit=1)
    if newest:
        return newest[0]
    try:
        return AuditSetting(load_product_config(configs_dir, product).audit, CONFIG_SOURCE)
    except ConfigError:
        # A broken config must not stop frames being drawn: the defaults hold until it is fixed (training says why).
        return AuditSetting(AuditPolicy(), CONFIG_SOURCE + " (unreadable: defaults)")
