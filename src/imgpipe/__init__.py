"""imgpipe: per-creator grid collages from spreadsheets of cover image URLs."""

import sys
from typing import Any

__all__ = ["__version__"]

# httpx's package imports its command-line client whenever click, rich and pygments
# are installed (they are, for typer): about 90 ms of imports before the first
# download, for a tool we never run. A None entry makes that one import fail, and
# httpx falls back to its own stub ``main``; the library itself is unchanged.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def __getattr__(name: str) -> Any:
    # Lazy: the version comes from the package metadata (imgpipe/version.py), and
    # reading it on every import would slow the Lambda's cold start.
    if name == "__version__":
        from imgpipe.version import version

        return version()
    raise AttributeError(f"module 'imgpipe' has no attribute {name!r}")
