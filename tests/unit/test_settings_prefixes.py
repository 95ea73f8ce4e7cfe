"""Prefixes that would feed outputs back in as inputs are refused when the settings load.

S3 notifications match key prefixes, and CloudFormation cannot compare two
parameters' prefixes, so the settings are where an overlap is caught: at start-up,
with a message naming both settings (or the setting and imgpipe's own folder).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imgpipe.domain.spec import BatchSpec
from imgpipe.errors import ConfigError
from imgpipe.settings import Settings


def test_the_defaults_do_not_overlap() -> None:
    settings = Settings(csv_prefix="csv-files/", compress_prefix="uploads/")
    assert (settings.csv_prefix, settings.compress_prefix) == ("csv-files/", "uploads/")


@pytest.mark.parametrize(
    ("csv_prefix", "compress_prefix"),
    [("in/", "in/"), ("in/", "in/images/"), ("in/csv/", "in/"), ("", "uploads/"), ("x/", "")],
)
def test_overlapping_csv_and_compression_prefixes_are_refused(
    monkeypatch: pytest.MonkeyPatch, csv_prefix: str, compress_prefix: str
) -> None:
    monkeypatch.setenv("IMGPIPE_CSV_PREFIX", csv_prefix)
    monkeypatch.setenv("IMGPIPE_COMPRESS_PREFIX", compress_prefix)
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert f"IMGPIPE_CSV_PREFIX={csv_prefix!r}" in message
    assert f"IMGPIPE_COMPRESS_PREFIX={compress_prefix!r}" in message
    assert "overlap" in message


@pytest.mark.parametrize(
    ("setting", "value", "folder"),
    [
        ("IMGPIPE_CSV_PREFIX", "archived/", "archived/processed/"),
        ("IMGPIPE_CSV_PREFIX", "archived/failed/csv/", "archived/failed/"),
        ("IMGPIPE_CSV_PREFIX", "api-uploads/", "api-uploads/"),
        ("IMGPIPE_COMPRESS_PREFIX", "compressed/", "compressed/"),
        ("IMGPIPE_COMPRESS_PREFIX", "comp", "compressed/"),
    ],
)
def test_a_watched_prefix_over_a_folder_imgpipe_writes_is_refused(
    monkeypatch: pytest.MonkeyPatch, setting: str, value: str, folder: str
) -> None:
    monkeypatch.setenv(setting, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert f"{setting}={value!r} overlaps {folder!r}" in message


def test_outputs_in_the_input_bucket_must_stay_clear_of_the_compression_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMGPIPE_COMPRESS_PREFIX", "collages/")
    assert Settings(input_bucket="in", output_bucket="out").compress_prefix == "collages/"
    with pytest.raises(ValidationError, match="IMGPIPE_COMPRESS_PREFIX='collages/' overlaps"):
        Settings(input_bucket="same", output_bucket="same")


def test_readable_buckets_are_a_comma_list_and_include_the_input_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(input_bucket="in").readable_bucket_names() == {"in"}
    monkeypatch.setenv("IMGPIPE_READABLE_BUCKETS", " partner-a, ,partner-b ")
    assert Settings(input_bucket="in").readable_bucket_names() == {"in", "partner-a", "partner-b"}


def test_a_spec_output_prefix_is_a_checked_folder() -> None:
    assert BatchSpec.of(output_prefix="team/a/").output_prefix == "team/a/"
    assert BatchSpec.from_spec(BatchSpec.of(output_prefix="p/").to_spec()).output_prefix == "p/"
    with pytest.raises(ConfigError, match="must end with '/'"):
        BatchSpec.of(output_prefix="team")
    with pytest.raises(ConfigError, match="'/abs/'"):
        BatchSpec.of(output_prefix="/abs/")
