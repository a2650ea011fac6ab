"""The one settings object (env prefix INSPECTION_) and the directory layout under INSPECTION_HOME."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings; every path the system writes derives from `home`."""

    model_config = SettingsConfigDict(env_prefix="INSPECTION_", extra="forbid")

    home: Path = Field(default=Path("var"), description="State directory: datasets, runs, models, database.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default is SQLite in home.")
    configs_dir: Path = Field(default=Path("configs"), description="Per-product YAML configs.")
    device: str = Field(default="auto", description="Torch device for training: auto, cpu, cuda.")
    num_threads: int = Field(default=0, description="Torch CPU threads; 0 means one per core.")
    max_body_bytes: int = Field(default=20_000_000, description="Largest accepted frame upload.")
    max_pixels: int = Field(default=50_000_000, description="Largest accepted frame, by its header.")
    # Defaults measured on 2 cores (docs/decisions/0004-engine-runners-per-core.md): one single-threaded session run per
    # core beat one 2-thread session on batches of 8; and each runner taking up to 2 frames of what is already waiting,
    # never waiting for company, beat one frame a run (154 against 135-144 frames/s, 12.4 against 13.3-14.1 ms of CPU a
    # frame) and batches of up to 4 (148-150). A wait would only add latency at low load.
    batch_max: int = Field(default=2, ge=1, description="Largest micro-batch the engine forms.")
    batch_wait_ms: float = Field(
        default=0.0, ge=0, description="How long the engine waits to fill a batch; 0: only what is already waiting."
    )
    queue_size: int = Field(default=64, description="Frames waiting per model before answering 503.")
    ort_threads: int = Field(
        default=1, ge=0, description="ONNX Runtime intra-op threads per served model's session; 0: one per core."
    )
    engine_runners: int = Field(
        default=0,
        ge=0,
        description="Threads scoring frames side by side on each served model's session; 0: one per core its "
        "intra-op threads leave (`inspection serve --workers N` shares the cores out among the workers).",
    )
    ort_spinning: bool = Field(
        default=False,
        description="Let ONNX Runtime's threads spin-wait for work between ops (faster alone, steals the cores the "
        "server's HTTP, decoding and database work need under load).",
    )
    shadow_queue_size: int = Field(default=256, ge=1, description="Frames waiting for the challenger in shadow.")
    shadow_max_delay_ms: float = Field(
        default=2000.0, gt=0, description="A frame whose shadow scoring would start later than this is skipped."
    )
    model_poll_seconds: float = Field(default=5.0, gt=0, description="How often replicas check for promotions.")
    rollup_upkeep: bool = Field(
        default=True,
        description="Keep the hourly rollups and the minute counts in the rows' transaction. For measurement only "
        "(the baseline of the `server_rollups_vs_off` bench): a server with it off stores rows the statistics "
        "never count, until `inspection db rollups --rebuild` recounts them.",
    )
    archive_pass_fraction: float = Field(default=0.02, ge=0, le=1, description="Share of passes archived.")
    mqtt_url: str | None = Field(default=None, description="Broker for reject messages (mqtt://host:1883); None: off.")
    mqtt_topic_prefix: str = Field(default="inspection/reject", description="Reject topic is <prefix>/<line_id>.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="An MLflow tracking server (http://host:5000, started with --serve-artifacts) that holds the "
        "runs, the registry and the model files, shared by every replica and training job; None: an embedded "
        "SQLite store in home/mlflow.",
    )
    archive_url: str | None = Field(
        default=None,
        pattern=r"^s3://[^/]+(/.*)?$",
        description="Archive frames in an S3-compatible object store (s3://bucket/prefix), so every replica can "
        "show them; None: the local folder home/archive.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="The object store's endpoint (MinIO: http://host:9000)."
    )
    s3_region: str | None = Field(default=None, description="The object store's region; None: boto3's default.")
    s3_access_key_id: str | None = Field(default=None, description="None: boto3's own chain (AWS_* variables, a role).")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="Secret of s3_access_key_id.")

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def mlflow_dir(self) -> Path:
        return self.home / "mlflow"

    @property
    def resolved_mlflow_tracking_uri(self) -> str:
        # MLflow 3 refuses a bare file store; an SQLite backend keeps it embedded and supports the registry.
        return self.mlflow_tracking_uri or f"sqlite:///{(self.mlflow_dir / 'mlflow.db').resolve()}"

    @property
    def model_cache_dir(self) -> Path:
        """Where a replica keeps the model files it downloaded from an MLflow server."""
        return self.home / "model-cache"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def archive_dir(self) -> Path:
        return self.home / "archive"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'inspection.db').resolve()}"

    def dataset_dir(self, product: str) -> Path:
        return self.datasets_dir / product

    def run_dir(self, product: str) -> Path:
        return self.runs_dir / product


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides (tests pass their own home)."""
    return Settings(**overrides)  # type: ignore[arg-type]
