"""What a running server holds: settings, the database, one inference engine per served product, the rejects."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from inspection.settings import Settings
from serving.engine import InferenceEngine
from serving.reject_publisher import RejectPublisher


@dataclass
class ServingState:
    settings: Settings
    sessions: sessionmaker[Session]
    engines: dict[str, InferenceEngine] = field(default_factory=dict)
    rejects: RejectPublisher | None = None  # None: MQTT reject messages are off
