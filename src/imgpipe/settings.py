"""One typed Settings object read from the environment, and the per-run options.

Environment names are the original system's (``DEFAULT_ROWS``, ``MAX_CONCURRENT_DOWNLOADS``...)
plus ``IMGPIPE_*`` for what is new. CLI flags override settings through
:meth:`Settings.run_options`; nothing else reads ``os.environ``.

Example::

    settings = Settings()                      # reads the environment
    options = settings.batch_spec(rows=3)     # a flag overrides DEFAULT_ROWS
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from imgpipe.domain.spec import (
    BatchSpec,
    CollectSpec,
    FetchPolicy,
    IPNetwork,
    RenderSpec,
    parse_networks,
)

__all__ = ["BatchSpec", "IPNetwork", "Settings", "parse_networks"]

_RENDER, _COLLECT, _FETCH, _BATCH = RenderSpec(), CollectSpec(), FetchPolicy(), BatchSpec()


def _env(*names: str) -> Any:
    return AliasChoices(*names)


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
    default_rows: int = Field(_RENDER.rows, validation_alias=_env("DEFAULT_ROWS"))
    default_cols: int = Field(_RENDER.cols, validation_alias=_env("DEFAULT_COLS"))
    default_cell: int = Field(_RENDER.cell_size, validation_alias=_env("IMGPIPE_CELL_SIZE"))
    default_quality: int = Field(_RENDER.quality, validation_alias=_env("DEFAULT_QUALITY"))
    default_max_images_per_creator: int = Field(
        _COLLECT.max_images, validation_alias=_env("DEFAULT_MAX_IMAGES_PER_CREATOR")
    )
    min_images_per_creator: int = Field(
        _COLLECT.min_images, validation_alias=_env("IMGPIPE_MIN_IMAGES")
    )
    min_image_size: int = Field(_COLLECT.min_image_size, validation_alias=_env("MIN_IMAGE_SIZE"))
    max_image_size: int = Field(800, validation_alias=_env("MAX_IMAGE_SIZE"))

    # fetching
    default_max_workers: int = Field(
        _BATCH.max_workers, validation_alias=_env("DEFAULT_MAX_WORKERS")
    )
    default_timeout: float = Field(_FETCH.timeout, validation_alias=_env("DEFAULT_TIMEOUT"))
    default_max_retries: int = Field(_FETCH.retries, validation_alias=_env("DEFAULT_MAX_RETRIES"))
    max_concurrent_downloads: int = Field(
        _FETCH.concurrency, validation_alias=_env("MAX_CONCURRENT_DOWNLOADS")
    )
    per_host_concurrency: int = Field(
        _FETCH.per_host_concurrency, validation_alias=_env("IMGPIPE_PER_HOST_CONCURRENCY")
    )
    max_download_bytes: int = Field(
        _FETCH.max_bytes, validation_alias=_env("IMGPIPE_MAX_DOWNLOAD_BYTES")
    )
    max_image_pixels: int = Field(
        _COLLECT.max_pixels, validation_alias=_env("IMGPIPE_MAX_IMAGE_PIXELS")
    )
    allow_private_networks: str = Field("", validation_alias=_env("IMGPIPE_ALLOW_PRIVATE_NETWORKS"))
    allow_local_files: bool = Field(True, validation_alias=_env("IMGPIPE_ALLOW_LOCAL_FILES"))

    # behaviour
    memory_warning_threshold: float = Field(
        _BATCH.memory_warning, validation_alias=_env("MEMORY_WARNING_THRESHOLD")
    )
    memory_critical_threshold: float = Field(
        _BATCH.memory_critical, validation_alias=_env("MEMORY_CRITICAL_THRESHOLD")
    )
    # false: a cover whose bytes equal an earlier one's of the same creator fills a cell too
    enable_deduplication: bool = Field(
        _COLLECT.deduplicate, validation_alias=_env("ENABLE_DEDUPLICATION")
    )
    collision_check_enabled: bool = Field(
        _COLLECT.collision_check, validation_alias=_env("COLLISION_CHECK_ENABLED")
    )

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

    # decoded pixels held at once by compression and comparison together (0: unbounded);
    # the largest allowed image (IMGPIPE_MAX_IMAGE_PIXELS) fits alone: 256 MB as RGBA
    decode_budget_pixels: int = Field(
        64_000_000, ge=0, validation_alias=_env("IMGPIPE_DECODE_BUDGET_PIXELS")
    )

    # HTTP service
    api_key: str = Field("", validation_alias=_env("IMGPIPE_API_KEY"))
    max_upload_bytes: int = Field(
        50 * 1024 * 1024, ge=1, validation_alias=_env("IMGPIPE_MAX_UPLOAD_BYTES")
    )
    # Signs the dashboard's session cookie; empty: derived from the API key, so every
    # process (each Lambda container) agrees without more configuration.
    session_secret: str = Field("", validation_alias=_env("IMGPIPE_SESSION_SECRET"))
    # true: /metrics answers without the key (a scraper on a private network)
    public_metrics: bool = Field(False, validation_alias=_env("IMGPIPE_PUBLIC_METRICS"))
    cors_origins: str = Field("", validation_alias=_env("IMGPIPE_CORS_ORIGINS"))
    readiness_url: str = Field("", validation_alias=_env("IMGPIPE_READINESS_URL"))

    def batch_spec(self, **overrides: Any) -> BatchSpec:
        """The settings as a :class:`BatchSpec`, with the given non-None flat overrides."""
        return BatchSpec.of(
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
        ).with_overrides(**overrides)
