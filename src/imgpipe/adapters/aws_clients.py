"""boto3 clients made in one place, lazily, honouring the endpoint override.

boto3 is imported inside :func:`make_client`, never at module import, so the
Lambda handler's cold start pays for it only when an AWS call is made.
``IMGPIPE_AWS_ENDPOINT_URL`` (or the standard ``AWS_ENDPOINT_URL``) points every
client at an AWS-compatible server such as moto or LocalStack::

    s3 = make_client("s3", settings)
"""

from __future__ import annotations

from typing import Any

from imgpipe.settings import Settings

__all__ = ["aws_error_code", "make_client"]


def make_client(
    service: str,
    settings: Settings | None = None,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> Any:
    """A boto3 client for ``service`` with bounded retries, timeouts and pool size."""
    import boto3
    from botocore.config import Config

    settings = settings or Settings()
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=50,  # the pipeline runs many store calls in threads at once
        # Presigned URLs must name the regional endpoint, or they redirect and break.
        s3={"addressing_style": "path"} if service == "s3" else None,
        signature_version="s3v4" if service == "s3" else None,
    )
    return boto3.client(
        service,
        endpoint_url=endpoint_url or settings.aws_endpoint_url or None,
        region_name=region or settings.aws_region,
        config=config,
    )


def aws_error_code(exc: BaseException) -> str:
    """The error code of a botocore ClientError (``"NoSuchKey"``), else ``""``."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
