"""imgpipe: per-creator grid collages from spreadsheets of cover image URLs."""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: the version comes from the package metadata (imgpipe/version.py), and
    # reading it on every import would slow the Lambda's cold start.
    if name == "__version__":
        from imgpipe.version import version

        return version()
    raise AttributeError(f"module 'imgpipe' has no attribute {name!r}")
