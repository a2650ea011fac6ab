"""Truncating `received_at` to the UTC day, hour or minute inside SQL, the same way on SQLite and PostgreSQL.

Grouping in the database keeps the rows sent to Python to one per time unit and group, however many frames a
line sends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import ColumnElement, func, literal_column
from sqlalchemy.orm import Session, sessionmaker

from inspection.storage.schema import Inspection

TimeUnit = Literal["day", "hour", "minute"]
_SQLITE_FORMATS = {"day": "%Y-%m-%d", "hour": "%Y-%m-%dT%H", "minute": "%Y-%m-%dT%H:%M"}
_POSTGRES_FORMATS = {"day": "YYYY-MM-DD", "hour": 'YYYY-MM-DD"T"HH24', "minute": 'YYYY-MM-DD"T"HH24:MI'}


def time_key(sessions: sessionmaker[Session], unit: TimeUnit) -> ColumnElement[str]:
    """A text column holding each row's UTC `received_at` cut to the unit; parse it with `parse_time_key`."""
    return dialect_time_key(sessions.kw["bind"].dialect.name, unit)


def dialect_time_key(dialect: str, unit: TimeUnit) -> ColumnElement[str]:
    """`time_key` for a database named by its SQLAlchemy dialect ("sqlite" or "postgresql")."""
    if dialect == "sqlite":
        # SQLite stores the UTC wall-clock time without an offset.
        return func.strftime(literal_column(f"'{_SQLITE_FORMATS[unit]}'"), Inspection.received_at)
    # Constants, not bound parameters: PostgreSQL only matches the GROUP BY expression to the selected one
    # when they are textually identical, and two bound parameters never are.
    utc = func.timezone(literal_column("'UTC'"), Inspection.received_at)
    return func.to_char(utc, literal_column(f"'{_POSTGRES_FORMATS[unit]}'"))


def format_time_key(moment: datetime, unit: TimeUnit) -> str:
    """The `time_key` value of one moment, computed in Python (a naive moment is taken to be UTC already)."""
    utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    return utc.strftime(_SQLITE_FORMATS[unit])


def parse_time_key(value: str, unit: TimeUnit) -> datetime:
    """The aware UTC start of the unit named by a `time_key` value."""
    return datetime.strptime(value, _SQLITE_FORMATS[unit]).replace(tzinfo=UTC)
