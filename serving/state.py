"""What a running server holds: settings, the database, and one inference engine per served product."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from inspection.settings import Settings
from serving.engine import InferenceEngine


@dataclass
class ServingState:
    settings: Settings
    sessions: sessionmaker[Session]
    engines: dict[str, InferenceEngine] = field(default_factory=dict)
