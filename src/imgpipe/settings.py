"""One typed Settings object read from the environment, and the per-run options.

Every setting has an ``IMGPIPE_*`` name, listed first; the original system's
names (``DEFAULT_ROWS``, ``MAX_CONCURRENT_DOWNLOADS``...) keep working as aliases,
and when both are set the ``IMGPIPE_*`` one wins. For the original names the
rule is plain: ``IMGPIPE_`` + the original name (``IMGPIPE_DEFAULT_ROWS``). CLI
flags override settings through :meth:`Settings.batch_spec`; nothing else reads
``os.environ``.

Example::

    settings = Settings()                      # reads the environment
    options = settings.batch_spec(rows=3)     # a flag overrides IMGPIPE_DEFAULT_ROWS
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from imgpipe.domain.keys import (
    API_UPLOADS_PREFIX,
    ARCHIVE_FAILED,
    ARCHIVE_PROCESSED,
    COMPRESSED_PREFIX,
    OUTPUT_FOLDERS,
    prefixes_overlap,
)
from imgpipe.domain.spec import RANGES, BatchSpec, Bounds, IPNetwork, parse_networks

__all__ = ["SPEC_OPTIONS", "BatchSpec", "IPNetwork", "Settings", "parse_networks"]

_SPEC_DEFAULTS = BatchSpec().flat()

# Settings that are a spec option's default -> that option (flat name). Their
# defaults and ranges are the spec's (domain/spec.py), declared there once.
SPEC_OPTIONS = {
    "default_rows": "rows",
    "default_cols": "cols",
    "default_cell": "cell_size",
    "default_quality": "quality",
    "crop": "crop",
    "default_max_images_per_creator": "max_images",
    "min_images_per_creator": "min_images",
    "min_image_size": "min_image_size",
    "default_max_workers": "max_workers",
    "default_timeout": "timeout",
    "default_max_retries": "retries",
    "max_concurrent_downloads": "concurrency",
    "per_host_concurrency": "per_host_concurrency",
    "max_download_bytes": "max_bytes",
    "max_image_pixels": "max_pixels",
    "allow_local_files": "allow_local_files",
    "memory_warning_threshold": "memory_warning",
    "memory_critical_threshold": "memory_critical",
    "enable_deduplication": "deduplicate",
    "near_duplicates": "near_duplicates",
    "collision_check_enabled": "collision_check",
}


def _env(*names: str) -> Any:
    return AliasChoices(*names)


def _option(option: str, *names: str) -> Any:
    """A setting holding the default of the spec option ``option``, with its range."""
    bounds = RANGES[option].bounds() if option in RANGES else Bounds()
    return Field(_SPEC_DEFAULTS[option], validation_alias=_env(*names), **bounds)


class Settings(BaseSettings):
    """Process-wide configuration from the environment (see README, "Settings")."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # storage and backend
    backend: Literal["local", "aws"] = Field("local", validation_alias=_env("IMGPIPE_BACKEND"))
    data_dir: Path = Field(Path("imgpipe-data"), validation_alias=_env("IMGPIPE_DATA_DIR"))
    input_bucket: str = Field("", validation_alias=_env("IMGPIPE_INPUT_BUCKET", "INPUT_BUCKET"))
    output_bucket: str = Field("", validation_alias=_env("IMGPIPE_OUTPUT_BUCKET", "OUTPUT_BUCKET"))
    temp_bucket: str = Field("", validation_alias=_env("IMGPIPE_TEMP_BUCKET", "TEMP_BUCKET"))
    sqs_queue_url: str = Field("", validation_alias=_env("IMGPIPE_SQS_QUEUE_URL", "SQS_QUEUE_URL"))
    sqs_dlq_url: str = Field("", validation_alias=_env("IMGPIPE_SQS_DLQ_URL", "SQS_DLQ_URL"))
    # The planning queue (csv_s3 messages) and its DLQ; empty: one queue for both kinds.
    plan_queue_url: str = Field("", validation_alias=_env("IMGPIPE_PLAN_QUEUE_URL"))
    plan_dlq_url: str = Field("", validation_alias=_env("IMGPIPE_PLAN_DLQ_URL"))
    dynamodb_table_name: str = Field(
        "", validation_alias=_env("IMGPIPE_DYNAMODB_TABLE_NAME", "DYNAMODB_TABLE_NAME")
    )
    aws_endpoint_url: str = Field(
        "", validation_alias=_env("IMGPIPE_AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL")
    )
    aws_region: str = Field(
        "us-east-1", validation_alias=_env("IMGPIPE_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
    )
    csv_prefix: str = Field("csv-files/", validation_alias=_env("IMGPIPE_CSV_PREFIX"))
    # Buckets besides the input bucket that csv_s3 messages may name (comma-separated;
    # the template's ReadableBuckets grants the functions read access to the same list).
    readable_buckets: str = Field("", validation_alias=_env("IMGPIPE_READABLE_BUCKETS"))
    # The database of `run --query` / `export-csv --query` (a SQLAlchemy URL). From the
    # environment, its password stays out of argv and `ps`; never shown (repr=False).
    sql_url: str = Field("", validation_alias=_env("IMGPIPE_SQL_URL"), repr=False)
    presign_expiry: int = Field(3600, validation_alias=_env("IMGPIPE_PRESIGN_EXPIRY"))
    metrics_namespace: str = Field("imgpipe", validation_alias=_env("IMGPIPE_METRICS_NAMESPACE"))

    # rendering
    default_rows: int = _option("rows", "IMGPIPE_DEFAULT_ROWS", "DEFAULT_ROWS")
    default_cols: int = _option("cols", "IMGPIPE_DEFAULT_COLS", "DEFAULT_COLS")
    default_cell: int = _option("cell_size", "IMGPIPE_CELL_SIZE")
    default_quality: int = _option("quality", "IMGPIPE_DEFAULT_QUALITY", "DEFAULT_QUALITY")
    # center or smart (faces, else saliency; README, "Smart crop")
    crop: Literal["center", "smart"] = _option("crop", "IMGPIPE_CROP")
    default_max_images_per_creator: int = _option(
        "max_images", "IMGPIPE_DEFAULT_MAX_IMAGES_PER_CREATOR", "DEFAULT_MAX_IMAGES_PER_CREATOR"
    )
    min_images_per_creator: int = _option("min_images", "IMGPIPE_MIN_IMAGES")
    min_image_size: int = _option("min_image_size", "IMGPIPE_MIN_IMAGE_SIZE", "MIN_IMAGE_SIZE")
    max_image_size: int = Field(
        800, ge=1, validation_alias=_env("IMGPIPE_MAX_IMAGE_SIZE", "MAX_IMAGE_SIZE")
    )

    # fetching
    default_max_workers: int = _option(
        "max_workers", "IMGPIPE_DEFAULT_MAX_WORKERS", "DEFAULT_MAX_WORKERS"
    )
    default_timeout: float = _option("timeout", "IMGPIPE_DEFAULT_TIMEOUT", "DEFAULT_TIMEOUT")
    default_max_retries: int = _option(
        "retries", "IMGPIPE_DEFAULT_MAX_RETRIES", "DEFAULT_MAX_RETRIES"
    )
    max_concurrent_downloads: int = _option(
        "concurrency", "IMGPIPE_MAX_CONCURRENT_DOWNLOADS", "MAX_CONCURRENT_DOWNLOADS"
    )
    per_host_concurrency: int = _option("per_host_concurrency", "IMGPIPE_PER_HOST_CONCURRENCY")
    max_download_bytes: int = _option("max_bytes", "IMGPIPE_MAX_DOWNLOAD_BYTES")
    max_image_pixels: int = _option("max_pixels", "IMGPIPE_MAX_IMAGE_PIXELS")
    allow_private_networks: str = Field("", validation_alias=_env("IMGPIPE_ALLOW_PRIVATE_NETWORKS"))
    allow_local_files: bool = _option("allow_local_files", "IMGPIPE_ALLOW_LOCAL_FILES")

    # behaviour
    memory_warning_threshold: float = _option(
        "memory_warning", "IMGPIPE_MEMORY_WARNING_THRESHOLD", "MEMORY_WARNING_THRESHOLD"
    )
    memory_critical_threshold: float = _option(
        "memory_critical", "IMGPIPE_MEMORY_CRITICAL_THRESHOLD", "MEMORY_CRITICAL_THRESHOLD"
    )
    # false: a cover whose bytes equal an earlier one's of the same creator fills a cell too
    enable_deduplication: bool = _option(
        "deduplicate", "IMGPIPE_ENABLE_DEDUPLICATION", "ENABLE_DEDUPLICATION"
    )
    # Hamming distance within which two covers of a creator count once (0: off)
    near_duplicates: int = _option("near_duplicates", "IMGPIPE_NEAR_DUPLICATES")
    collision_check_enabled: bool = _option(
        "collision_check", "IMGPIPE_COLLISION_CHECK_ENABLED", "COLLISION_CHECK_ENABLED"
    )

    # batch engine: how long a claim on a creator lives without a heartbeat (on Lambda,
    # the worker function's timeout), and the cover cache of reruns (0 turns it off)
    creator_lease_seconds: float = Field(
        300.0, gt=0, validation_alias=_env("IMGPIPE_CREATOR_LEASE_SECONDS")
    )
    cache_max_bytes: int = Field(
        512 * 1024 * 1024, ge=0, validation_alias=_env("IMGPIPE_CACHE_MAX_BYTES")
    )
    # the AWS sweep's work per run (service/sweep.py SweepBudget says why these fit its
    # 300 s); what is left is the next run's, and its counts and log say "more"
    sweep_max_requeues: int = Field(1000, ge=1, validation_alias=_env("IMGPIPE_SWEEP_MAX_REQUEUES"))
    sweep_max_finalizations: int = Field(
        5, ge=1, validation_alias=_env("IMGPIPE_SWEEP_MAX_FINALIZATIONS")
    )
    sweep_max_settlements: int = Field(
        1000, ge=1, validation_alias=_env("IMGPIPE_SWEEP_MAX_SETTLEMENTS")
    )

    # completion notices (README, "Completion notices"): a webhook, an SNS topic, or both
    notify_url: str = Field("", validation_alias=_env("IMGPIPE_NOTIFY_URL"))
    notify_secret: str = Field("", validation_alias=_env("IMGPIPE_NOTIFY_SECRET"))
    notify_topic_arn: str = Field("", validation_alias=_env("IMGPIPE_NOTIFY_TOPIC_ARN"))
    # 0: no link in the digest; else a link to the summary valid this long (S3: 7 days at most)
    notify_presign_seconds: int = Field(
        0, ge=0, le=7 * 24 * 3600, validation_alias=_env("IMGPIPE_NOTIFY_PRESIGN_SECONDS")
    )
    notify_timeout: float = Field(10.0, gt=0, validation_alias=_env("IMGPIPE_NOTIFY_TIMEOUT"))
    notify_retries: int = Field(3, ge=0, le=10, validation_alias=_env("IMGPIPE_NOTIFY_RETRIES"))

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
        "subject,composition,colors,text",
        validation_alias=_env("IMGPIPE_FOCUS_ELEMENTS", "FOCUS_ELEMENTS"),
    )
    comparison_aspects: str = Field(
        "visual_similarity,style,content",
        validation_alias=_env("IMGPIPE_COMPARISON_ASPECTS", "COMPARISON_ASPECTS"),
    )
    similarity_threshold: float = Field(
        0.8, validation_alias=_env("IMGPIPE_SIMILARITY_THRESHOLD", "SIMILARITY_THRESHOLD")
    )
    image_quality: int = Field(85, validation_alias=_env("IMGPIPE_IMAGE_QUALITY", "IMAGE_QUALITY"))
    processing_timeout: float = Field(
        60.0, validation_alias=_env("IMGPIPE_PROCESSING_TIMEOUT", "PROCESSING_TIMEOUT")
    )
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

    @model_validator(mode="after")
    def _refuse_overlapping_prefixes(self) -> Settings:
        """S3 notifications match prefixes, and CloudFormation cannot compare two
        parameters' prefixes: a key under both a watched prefix and another one, or
        an output the code writes under a watched prefix, would be taken as input."""
        watched = {
            "IMGPIPE_CSV_PREFIX": self.csv_prefix,
            "IMGPIPE_COMPRESS_PREFIX": self.compress_prefix,
        }
        if prefixes_overlap(self.csv_prefix, self.compress_prefix):
            raise ValueError(
                f"IMGPIPE_CSV_PREFIX={self.csv_prefix!r} and "
                f"IMGPIPE_COMPRESS_PREFIX={self.compress_prefix!r} overlap: an upload under "
                "both would be planned as a CSV and compressed as an image; "
                "give them prefixes that do not start one another"
            )
        # What the code writes into the input bucket, and which watched prefix it could trip.
        written = [
            ("IMGPIPE_CSV_PREFIX", ARCHIVE_PROCESSED, "the archive of planned CSVs"),
            ("IMGPIPE_CSV_PREFIX", ARCHIVE_FAILED, "the archive of unusable CSVs"),
            ("IMGPIPE_CSV_PREFIX", API_UPLOADS_PREFIX, "the API's CSV uploads"),
            ("IMGPIPE_COMPRESS_PREFIX", COMPRESSED_PREFIX, "the compressed images"),
        ]
        if self.input_bucket and self.input_bucket == self.output_bucket:
            for folder in OUTPUT_FOLDERS:
                written.append(("IMGPIPE_COMPRESS_PREFIX", folder, "the collages and results"))
        for name, folder, what in written:
            if prefixes_overlap(watched[name], folder):
                raise ValueError(
                    f"{name}={watched[name]!r} overlaps {folder!r}, where imgpipe writes "
                    f"{what} in the input bucket: they would be taken as new input; "
                    f"choose a {name} that does not start, or start with, {folder!r}"
                )
        return self

    def readable_bucket_names(self) -> frozenset[str]:
        """IMGPIPE_READABLE_BUCKETS as names; the input bucket is always readable."""
        names = {name.strip() for name in self.readable_buckets.split(",") if name.strip()}
        return frozenset(names | ({self.input_bucket} if self.input_bucket else set()))

    def batch_spec(self, **overrides: Any) -> BatchSpec:
        """The settings as a :class:`BatchSpec`, with the given non-None flat overrides."""
        given = {option: getattr(self, name) for name, option in SPEC_OPTIONS.items()}
        networks = parse_networks(self.allow_private_networks)
        return BatchSpec.of(**given, allowed_networks=networks).with_overrides(**overrides)
