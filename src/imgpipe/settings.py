"""One typed Settings object read from the environment, and the per-run options.

Environment names are the original system's (``DEFAULT_ROWS``, ``MAX_CONCURRENT_DOWNLOADS``...)
plus ``IMGPIPE_*`` for what is new. CLI flags override settings through
:meth:`Settings.run_options`; nothing else reads ``os.environ``.

Example::

    settings = Settings()                      # reads the environment
    options = settings.run_options(rows=3)     # a flag overrides DEFAULT_ROWS
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from imgpipe.errors import ConfigError

__all__ = ["IPNetwork", "RunOptions", "Settings", "parse_networks"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str | list[str] | tuple[str, ...] | None) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, ::1"`` -> networks; a clear ConfigError names a bad entry."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    networks: list[IPNetwork] = []
    for raw in items:
        text = raw.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ConfigError(f"allowed private network {text!r} is not a CIDR: {exc}") from exc
    return tuple(networks)


def _env(*names: str) -> Any:
    return AliasChoices(*names)


@dataclass(frozen=True)
class RunOptions:
    """Everything one batch run needs to know; settings with flags applied."""

    rows: int = 5
    cols: int = 7
    cell_size: int = 200  # px of one square cell (--cell, IMGPIPE_CELL_SIZE)
    quality: int = 95
    max_images: int = 35
    min_images: int = 1
    min_image_size: int = 50
    concurrency: int = 8  # downloads in flight, all creators together
    per_host_concurrency: int = 8
    max_workers: int = 8  # creators in flight
    timeout: float = 30.0
    retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_redirects: int = 5
    allowed_networks: tuple[IPNetwork, ...] = ()
    allow_local_files: bool = True
    creator_column: str | None = None
    url_column: str | None = None
    force: bool = False
    deduplicate: bool = True
    collision_check: bool = True
    memory_warning: float = 80.0
    memory_critical: float = 90.0
    record_ttl_days: int = 30
    user_agent: str = "imgpipe/0.1 (+https://github.com/imgpipe/imgpipe)"

    def __post_init__(self) -> None:
        checks = {
            "rows": self.rows >= 1,
            "cols": self.cols >= 1,
            "cell_size": 8 <= self.cell_size <= 2000,
            "quality": 1 <= self.quality <= 100,
            "max_images": self.max_images >= 1,
            "min_images": self.min_images >= 1,
            "concurrency": self.concurrency >= 1,
            "per_host_concurrency": self.per_host_concurrency >= 1,
            "max_workers": self.max_workers >= 1,
            "timeout": self.timeout > 0,
            "retries": self.retries >= 0,
            "max_bytes": self.max_bytes > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise ConfigError(f"invalid option value: {values}")

    @property
    def images_per_collage(self) -> int:
        """At most ``max_images`` and never more than the grid holds."""
        return min(self.max_images, self.rows * self.cols)

    def safe_mode(self) -> RunOptions:
        """The original system's fallback under memory pressure."""
        return replace(
            self,
            max_workers=max(1, self.max_workers // 2),
            concurrency=max(1, self.concurrency // 2),
            quality=min(self.quality, 75),
            max_images=min(self.max_images, 20),
        )

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready: what a planner stores so every worker renders with exactly this."""
        spec = asdict(self)
        spec["allowed_networks"] = [str(n) for n in self.allowed_networks]
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any], **trusted: Any) -> RunOptions:
        """The options a planner stored; ``trusted`` (the worker's own network
        allowances) replaces what the plan says, unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in spec.items() if k in known}
        values["allowed_networks"] = parse_networks(values.get("allowed_networks") or ())
        values.update(trusted)
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> RunOptions:
        """Apply only the overrides that were actually given (not None)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "allowed_networks" in given and not isinstance(given["allowed_networks"], tuple):
            given["allowed_networks"] = parse_networks(given["allowed_networks"])
        return replace(self, **given)


class Settings(BaseSettings):
    """Process-wide configuration from the environment (see README, "Settings")."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # storage and backend
    backend: Literal["local", "aws"] = Field("local", validation_alias=_env("IMGPIPE_BACKEND"))
    data_dir: Path = Field(Path("imgpipe-data"), validation_alias=_env("IMGPIPE_DATA_DIR"))
    input_bucket: str = Field("", validation_alias=_env("INPUT_BUCKET"))
    output_bucket: str = Field("", validation_alias=_env("OUTPUT_BUCKET"))
    temp_bucket: str = Field("", validation_alias=_env("TEMP_BUCKET"))
    sqs_queue_url: str = Field("", validation_alias=_env("SQS_QUEUE_URL"))
    sqs_dlq_url: str = Field("", validation_alias=_env("SQS_DLQ_URL"))
    # The planning queue (csv_s3 messages) and its DLQ; empty: one queue for both kinds.
    plan_queue_url: str = Field("", validation_alias=_env("IMGPIPE_PLAN_QUEUE_URL"))
    plan_dlq_url: str = Field("", validation_alias=_env("IMGPIPE_PLAN_DLQ_URL"))
    dynamodb_table_name: str = Field("", validation_alias=_env("DYNAMODB_TABLE_NAME"))
    aws_endpoint_url: str = Field(
        "", validation_alias=_env("IMGPIPE_AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL")
    )
    aws_region: str = Field("us-east-1", validation_alias=_env("AWS_REGION", "AWS_DEFAULT_REGION"))
    csv_prefix: str = Field("csv-files/", validation_alias=_env("IMGPIPE_CSV_PREFIX"))
    presign_expiry: int = Field(3600, validation_alias=_env("IMGPIPE_PRESIGN_EXPIRY"))
    metrics_namespace: str = Field("imgpipe", validation_alias=_env("IMGPIPE_METRICS_NAMESPACE"))

    # rendering
    default_rows: int = Field(5, validation_alias=_env("DEFAULT_ROWS"))
    default_cols: int = Field(7, validation_alias=_env("DEFAULT_COLS"))
    default_cell: int = Field(200, validation_alias=_env("IMGPIPE_CELL_SIZE"))
    default_quality: int = Field(95, validation_alias=_env("DEFAULT_QUALITY"))
    default_max_images_per_creator: int = Field(
        35, validation_alias=_env("DEFAULT_MAX_IMAGES_PER_CREATOR")
    )
    min_images_per_creator: int = Field(1, validation_alias=_env("IMGPIPE_MIN_IMAGES"))
    min_image_size: int = Field(50, validation_alias=_env("MIN_IMAGE_SIZE"))
    max_image_size: int = Field(800, validation_alias=_env("MAX_IMAGE_SIZE"))

    # fetching
    default_max_workers: int = Field(8, validation_alias=_env("DEFAULT_MAX_WORKERS"))
    default_timeout: float = Field(30.0, validation_alias=_env("DEFAULT_TIMEOUT"))
    default_max_retries: int = Field(3, validation_alias=_env("DEFAULT_MAX_RETRIES"))
    max_concurrent_downloads: int = Field(8, validation_alias=_env("MAX_CONCURRENT_DOWNLOADS"))
    per_host_concurrency: int = Field(8, validation_alias=_env("IMGPIPE_PER_HOST_CONCURRENCY"))
    max_download_bytes: int = Field(
        20 * 1024 * 1024, validation_alias=_env("IMGPIPE_MAX_DOWNLOAD_BYTES")
    )
    max_image_pixels: int = Field(64_000_000, validation_alias=_env("IMGPIPE_MAX_IMAGE_PIXELS"))
    allow_private_networks: str = Field("", validation_alias=_env("IMGPIPE_ALLOW_PRIVATE_NETWORKS"))
    allow_local_files: bool = Field(True, validation_alias=_env("IMGPIPE_ALLOW_LOCAL_FILES"))

    # behaviour
    memory_warning_threshold: float = Field(80.0, validation_alias=_env("MEMORY_WARNING_THRESHOLD"))
    memory_critical_threshold: float = Field(
        90.0, validation_alias=_env("MEMORY_CRITICAL_THRESHOLD")
    )
    # false: a cover whose bytes equal an earlier one's of the same creator fills a cell too
    enable_deduplication: bool = Field(True, validation_alias=_env("ENABLE_DEDUPLICATION"))
    collision_check_enabled: bool = Field(True, validation_alias=_env("COLLISION_CHECK_ENABLED"))

    # batch engine: how long a claim on a creator lives without a heartbeat (on Lambda,
    # the worker function's timeout), and the cover cache of reruns (0 turns it off)
    creator_lease_seconds: float = Field(
        300.0, gt=0, validation_alias=_env("IMGPIPE_CREATOR_LEASE_SECONDS")
    )
    cache_max_bytes: int = Field(
        512 * 1024 * 1024, ge=0, validation_alias=_env("IMGPIPE_CACHE_MAX_BYTES")
    )

    # compression (event, CLI, API)
    compress_prefix: str = Field("uploads/", validation_alias=_env("IMGPIPE_COMPRESS_PREFIX"))
    compress_max_size: int = Field(800, validation_alias=_env("IMGPIPE_COMPRESS_MAX_SIZE"))
    compress_quality: int = Field(85, validation_alias=_env("IMGPIPE_COMPRESS_QUALITY"))

    # comparison (the original system's configuration names)
    compare_backend: Literal["builtin", "vlm"] = Field(
        "builtin", validation_alias=_env("IMGPIPE_COMPARE_BACKEND")
    )
    vlm_url: str = Field("", validation_alias=_env("IMGPIPE_VLM_URL"))
    vlm_model: str = Field("", validation_alias=_env("IMGPIPE_VLM_MODEL"))
    vlm_api_key: str = Field("", validation_alias=_env("IMGPIPE_VLM_API_KEY"))
    vlm_max_in_flight: int = Field(1, validation_alias=_env("IMGPIPE_VLM_MAX_IN_FLIGHT"))
    focus_elements: str = Field(
        "subject,composition,colors,text", validation_alias=_env("FOCUS_ELEMENTS")
    )
    comparison_aspects: str = Field(
        "visual_similarity,style,content", validation_alias=_env("COMPARISON_ASPECTS")
    )
    similarity_threshold: float = Field(0.8, validation_alias=_env("SIMILARITY_THRESHOLD"))
    image_quality: int = Field(85, validation_alias=_env("IMAGE_QUALITY"))
    processing_timeout: float = Field(60.0, validation_alias=_env("PROCESSING_TIMEOUT"))
    compare_workers: int = Field(0, ge=0, validation_alias=_env("IMGPIPE_COMPARE_WORKERS"))

    # HTTP service
    api_key: str = Field("", validation_alias=_env("IMGPIPE_API_KEY"))
    max_upload_bytes: int = Field(
        50 * 1024 * 1024, validation_alias=_env("IMGPIPE_MAX_UPLOAD_BYTES")
    )
    cors_origins: str = Field("", validation_alias=_env("IMGPIPE_CORS_ORIGINS"))
    readiness_url: str = Field("", validation_alias=_env("IMGPIPE_READINESS_URL"))

    def run_options(self, **overrides: Any) -> RunOptions:
        """Settings as :class:`RunOptions`, with the given non-None overrides applied."""
        base = RunOptions(
            rows=self.default_rows,
            cols=self.default_cols,
            cell_size=self.default_cell,
            quality=self.default_quality,
            max_images=self.default_max_images_per_creator,
            min_images=self.min_images_per_creator,
            min_image_size=self.min_image_size,
            concurrency=self.max_concurrent_downloads,
            per_host_concurrency=self.per_host_concurrency,
            max_workers=self.default_max_workers,
            timeout=self.default_timeout,
            retries=self.default_max_retries,
            max_bytes=self.max_download_bytes,
            max_pixels=self.max_image_pixels,
            allowed_networks=parse_networks(self.allow_private_networks),
            allow_local_files=self.allow_local_files,
            deduplicate=self.enable_deduplication,
            collision_check=self.collision_check_enabled,
            memory_warning=self.memory_warning_threshold,
            memory_critical=self.memory_critical_threshold,
        )
        return base.with_overrides(**overrides)
