"""Turning a SQLite state file back into an older layout, to test its migration."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def rewind_state_file(path: Path, version: int, *statements: str) -> None:
    """Run ``statements`` (the DDL that undoes later versions) and mark ``version``."""
    with closing(sqlite3.connect(path)) as old:
        for statement in statements:
            old.execute(statement)
        old.execute(f"PRAGMA user_version = {version}")
        old.commit()
