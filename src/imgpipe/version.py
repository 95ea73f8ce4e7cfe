"""imgpipe's version and User-Agent, read once from the installed package's metadata.

The version is written in one place, ``pyproject.toml``; everything that shows
it (``imgpipe --version``, the OpenAPI document, the User-Agent of downloads and
notices) asks here. Reading the metadata imports :mod:`importlib.metadata`
(tens of ms on a cold Lambda), so it happens on first use, not at import::

    >>> user_agent().startswith(f"imgpipe/{version()} ")
    True
"""

from __future__ import annotations

from functools import cache

__all__ = ["PROJECT_URL", "UNKNOWN_VERSION", "user_agent", "version"]

PROJECT_URL = "https://github.com/imgpipe/imgpipe"
# A source checkout on PYTHONPATH without `pip install`: a PEP 440 local version
# that sorts below every release and says what it is.
UNKNOWN_VERSION = "0+unknown"


@cache
def version() -> str:
    """The installed distribution's version (``pip install`` / ``pipx install`` wrote it)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("imgpipe")
    except PackageNotFoundError:
        return UNKNOWN_VERSION


@cache
def user_agent() -> str:
    """What imgpipe's HTTP requests call themselves: ``imgpipe/<version> (+<project URL>)``."""
    return f"imgpipe/{version()} (+{PROJECT_URL})"
