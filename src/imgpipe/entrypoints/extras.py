"""One line instead of a traceback when an optional part of imgpipe is not installed.

``imgpipe serve`` needs the ``api`` extra, the AWS commands the ``aws`` extra;
``make run`` installs neither. The hint fits how imgpipe was installed::

    require("uvicorn", "api")   # MissingExtraError: ... pip install -e '.[api]'
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from imgpipe.errors import ConfigError

__all__ = ["MissingExtraError", "install_hint", "require"]


class MissingExtraError(ConfigError):
    """An optional dependency is missing (exit 2: the installation is to be fixed)."""


def install_hint(extra: str) -> str:
    """The command that adds ``extra`` to this installation.

    >>> "[api]" in install_hint("api")
    True
    """
    source = Path(__file__).resolve().parents[2]
    if (source.parent / "pyproject.toml").is_file():  # an editable install in a checkout
        pip = Path(sys.executable).parent / "pip"
        return f"{pip} install -e '{source.parent}[{extra}]'"
    if "pipx" in sys.prefix:
        return f"pipx install --force 'imgpipe[{extra}]'"
    return f"{Path(sys.executable).parent / 'pip'} install 'imgpipe[{extra}]'"


def require(module: str, extra: str) -> None:
    """Raise MissingExtraError naming the extra and the command when ``module`` is absent."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"this command needs the '{extra}' extra ({module} is not installed): "
            f"{install_hint(extra)}"
        ) from exc
