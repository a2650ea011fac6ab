"""What a running server holds: settings, the database, one inference engine per served product, the challengers
in shadow, the rejects."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.orm import Session, sessionmaker

from inspection.frame_archive import FrameArchive, open_archive
from inspection.settings import Settings
from serving.engine import InferenceEngine
from serving.metrics import ServingMetrics
from serving.reject_publisher import RejectPublisher
from serving.row_writer import InspectionRowWriter
from serving.shadow import ShadowScorer


@dataclass
class ServingState:
    settings: Settings
    sessions: sessionmaker[Session]
    rows: InspectionRowWriter  # every answered frame's row goes through it (group commit)
    engines: dict[str, InferenceEngine] = field(default_factory=dict)
    shadows: dict[str, ShadowScorer] = field(default_factory=dict)  # product -> its challenger in shadow
    rejects: RejectPublisher | None = None  # None: MQTT reject messages are off
    metrics: ServingMetrics | None = None  # the app's, so the shadow threads can count what they do

    @cached_property
    def archive(self) -> FrameArchive:
        """Where frames are archived and read back (the object store when configured); built once, on first use."""
        return open_archive(self.settings)
