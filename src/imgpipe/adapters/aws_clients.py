"""boto3 clients made in one place, lazily, honouring the endpoint override.

boto3 is imported inside :func:`make_client`, never at module import, so the
Lambda handler's cold start pays for it only when an AWS call is made.
``IMGPIPE_AWS_ENDPOINT_URL`` (or the standard ``AWS_ENDPOINT_URL``) points every
client at an AWS-compatible server such as moto or LocalStack::

    s3 = make_client("s3", settings)
"""

from __future__ import annotations

import functools
from typing import Any

from imgpipe.errors import ConfigError
from imgpipe.settings import Settings

__all__ = ["MIN_BOTO3", "aws_error_code", "check_boto3", "make_client"]

# S3 conditional writes (IfNoneMatch on PutObject) arrived in boto3 1.35; a Lambda
# runtime's own boto3 may be older, so the zip bundles one and this checks it.
MIN_BOTO3 = (1, 35)


@functools.cache
def check_boto3(version: str | None = None) -> str:
    """The boto3 version, or ConfigError when it is too old for imgpipe.

    >>> check_boto3("1.35.0")
    '1.35.0'
    >>> check_boto3("1.34.9")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    imgpipe.errors.ConfigError: boto3 1.34.9 is too old: imgpipe needs boto3 >= 1.35 ...
    """
    if version is None:
        import boto3

        version = str(boto3.__version__)
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_BOTO3:
        wanted = ".".join(map(str, MIN_BOTO3))
        raise ConfigError(
            f"boto3 {version} is too old: imgpipe needs boto3 >= {wanted} (S3 IfNoneMatch)"
        )
    return version


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

    check_boto3()
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
