"""What a running server holds: settings, the database, one inference engine per served product, the challengers
in shadow, the rejects."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.orm import Session, sessionmaker

from inspection.audit import AuditPolicy
from inspection.frame_archive import FrameArchive, open_archive
from inspection.settings import Settings
from serving.engine import InferenceEngine
from serving.prometheus_metrics import ServingMetrics
from serving.reject_publisher import RejectPublisher
from serving.row_writer import InspectionRowWriter
from serving.shadow_scorer import ShadowScorer

ARCHIVE_UNCHECKED = "unchecked"  # archive_status before the startup check (serving.archive_check) has answered
ARCHIVE_OK = "ok"


@dataclass(frozen=True)
class UnloadableModel:
    """A champion the server tried to load and could not: which, from where, and why."""

    version: int
    stamp: tuple[str, int, int]  # models.serving_choice.file_stamp() of the file that failed
    error: str


@dataclass
class ServingState:
    settings: Settings
    sessions: sessionmaker[Session]
    rows: InspectionRowWriter  # every answered frame's row goes through it (group commit)
    engines: dict[str, InferenceEngine] = field(default_factory=dict)
    shadows: dict[str, ShadowScorer] = field(default_factory=dict)  # product -> its challenger in shadow
    # product -> its champion that failed to load (the product keeps its older engine, if it had one)
    unloadable: dict[str, UnloadableModel] = field(default_factory=dict)
    # product -> models.serving_choice.file_stamp() of the file its engine scores with: an export of the same version
    # (INT8 accepted, or fp32 back in its place) changes the served file without moving the champion alias
    engine_files: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    shadow_files: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # the same for the shadows
    rejects: RejectPublisher | None = None  # None: MQTT reject messages are off
    metrics: ServingMetrics | None = None  # the app's, so the shadow threads can count what they do
    # ARCHIVE_OK, ARCHIVE_UNCHECKED (the startup check has not answered yet), or why frames cannot be archived
    # (serving.archive_check); /readyz shows it.
    archive_status: str = ARCHIVE_UNCHECKED
    # product -> the audit rates its frames are drawn at (serving.audit_rates keeps it current)
    audit_policies: dict[str, AuditPolicy] = field(default_factory=dict)

    @cached_property
    def archive(self) -> FrameArchive:
        """Where frames are archived and read back (the object store when configured); built once, on first use."""
        return open_archive(self.settings)
