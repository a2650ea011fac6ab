"""API keys with roles. Keys are random 256-bit tokens, so a plain SHA-256 is a safe hash (nothing to brute
force, unlike passwords) and lets a request be authenticated with one indexed lookup."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from inspection.errors import InspectionError
from inspection.storage.schema import ApiKey

ROLES = ("camera", "qa", "manager")
KEY_PREFIX = "insp_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(sessions: sessionmaker[Session], role: str, name: str) -> str:
    """Create a key for `role`; returns the key itself, which is stored only as its hash."""
    if role not in ROLES:
        raise InspectionError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not name.strip() or len(name) > 64:
        raise InspectionError("a key needs a name of 1-64 characters (who or what uses it)")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with sessions.begin() as session:
        session.add(ApiKey(name=name, role=role, key_hash=hash_key(key), created_at=datetime.now(UTC)))
    return key


def authenticate(sessions: sessionmaker[Session], key: str | None) -> ApiKey | None:
    """The active key record for `key`, or None (missing, unknown or revoked)."""
    if not key:
        return None
    with sessions() as session:
        found = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if found is None or found.revoked_at is not None:
        return None
    return found


def revoke_api_key(sessions: sessionmaker[Session], name: str) -> int:
    """Revoke every active key with this name; returns how many were revoked."""
    with sessions.begin() as session:
        keys = session.scalars(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))).all()
        for key in keys:
            key.revoked_at = datetime.now(UTC)
    return len(keys)
