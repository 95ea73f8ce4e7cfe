"""Every setting has an ``IMGPIPE_*`` name, and the original system's names still work.

Generated from ``Settings.model_fields``: a setting added without an ``IMGPIPE_``
name fails here, and every original name is tried as an alias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices

from imgpipe.settings import Settings


def names(field: str) -> list[str]:
    alias = Settings.model_fields[field].validation_alias
    assert isinstance(alias, AliasChoices), f"{field} has no environment names"
    return [str(choice) for choice in alias.choices]


CHOICES = {"backend": "aws", "compare_backend": "vlm", "crop": "smart"}  # the Literal settings


def other_value(field: str) -> tuple[str, Any]:
    """A valid value unlike the default: (as the environment writes it, as read)."""
    default = Settings.model_fields[field].default
    if field in CHOICES:
        return CHOICES[field], CHOICES[field]
    if isinstance(default, Path):
        return "from-the-environment", Path("from-the-environment")
    if isinstance(default, bool):
        return str(not default).lower(), not default
    if isinstance(default, int | float):
        return str(default + 1), default + 1
    return "from-the-environment", "from-the-environment"


ORIGINAL_NAMES = [
    pytest.param(field, name, id=name)
    for field in Settings.model_fields
    for name in names(field)[1:]
]


def clear(monkeypatch: pytest.MonkeyPatch, field: str) -> None:
    for name in names(field):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("field", Settings.model_fields)
def test_every_setting_is_named_imgpipe_first(field: str) -> None:
    assert names(field)[0].startswith("IMGPIPE_")


def test_the_original_designs_names_are_all_aliases() -> None:
    original = {
        "INPUT_BUCKET", "OUTPUT_BUCKET", "TEMP_BUCKET", "SQS_QUEUE_URL", "SQS_DLQ_URL",
        "DYNAMODB_TABLE_NAME", "DEFAULT_ROWS", "DEFAULT_COLS", "DEFAULT_QUALITY",
        "DEFAULT_MAX_WORKERS", "DEFAULT_TIMEOUT", "DEFAULT_MAX_RETRIES",
        "DEFAULT_MAX_IMAGES_PER_CREATOR", "MIN_IMAGE_SIZE", "MAX_IMAGE_SIZE",
        "MEMORY_WARNING_THRESHOLD", "MEMORY_CRITICAL_THRESHOLD", "MAX_CONCURRENT_DOWNLOADS",
        "ENABLE_DEDUPLICATION", "COLLISION_CHECK_ENABLED",
    }  # fmt: skip
    aliases = {p.values[1] for p in ORIGINAL_NAMES}
    assert original <= aliases
    # and the rule for them is IMGPIPE_ + the original name
    assert all(f"IMGPIPE_{n}" in {names(p.values[0])[0] for p in ORIGINAL_NAMES} for n in original)


@pytest.mark.parametrize("field", Settings.model_fields)
def test_the_imgpipe_name_sets_the_setting(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    clear(monkeypatch, field)
    written, read = other_value(field)
    monkeypatch.setenv(names(field)[0], written)
    assert getattr(Settings(), field) == read


@pytest.mark.parametrize(("field", "name"), ORIGINAL_NAMES)
def test_an_original_name_still_works(
    field: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear(monkeypatch, field)
    written, read = other_value(field)
    monkeypatch.setenv(name, written)
    assert getattr(Settings(), field) == read


@pytest.mark.parametrize(("field", "name"), ORIGINAL_NAMES)
def test_the_imgpipe_name_wins_over_an_original_one(
    field: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear(monkeypatch, field)
    written, read = other_value(field)
    monkeypatch.setenv(name, written)
    monkeypatch.setenv(names(field)[0], str(Settings.model_fields[field].default).lower())
    assert getattr(Settings(), field) == Settings.model_fields[field].default
