"""Changing a product's audit rates, the one way the CLI and the HTTP API both go: validate, then record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from inspection.audit import parse_policy
from inspection.storage.audit_settings import AuditSetting, audit_setting_in_force, record_audit_setting


def change_audit_rates(
    sessions: sessionmaker[Session],
    configs_dir: Path,
    product: str,
    changes: dict[str, Any],
    *,
    by: str,
    reason: str,
) -> AuditSetting:
    """Put `changes` (pass_rate, defect_rate, pass_bands; the others kept as in force) into force for `product`.

    An impossible setting (a rate outside [0, 1], bands that do not cover [0, 1], no reason) is refused with
    AuditRefused and nothing is recorded. `pass_bands: None` among the changes removes the bands."""
    current = audit_setting_in_force(sessions, configs_dir, product).policy.model_dump()
    policy = parse_policy({**current, **changes})
    return record_audit_setting(sessions, product, policy, by, reason)
