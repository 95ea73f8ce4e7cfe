"""The limits that keep memory bounded have the documented defaults, end to end.

An audit (issue 10) raised the defaults to 640 MP and 200 MB and every test still
passed: nothing pinned them. The numbers are the README's ("Safety and limits").
"""

from __future__ import annotations

import pytest

from imgpipe.domain.spec import BatchSpec, CollectSpec, FetchPolicy
from imgpipe.settings import Settings

MAX_PIXELS = 64_000_000
MAX_BYTES = 20 * 1024 * 1024


def test_spec_defaults_bound_pixels_and_download_bytes() -> None:
    assert CollectSpec().max_pixels == MAX_PIXELS
    assert FetchPolicy().max_bytes == MAX_BYTES
    assert (BatchSpec().collect.max_pixels, BatchSpec().fetch.max_bytes) == (MAX_PIXELS, MAX_BYTES)


def test_settings_without_overrides_keep_the_spec_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IMGPIPE_MAX_IMAGE_PIXELS", raising=False)
    monkeypatch.delenv("IMGPIPE_MAX_DOWNLOAD_BYTES", raising=False)
    spec = Settings().batch_spec()  # what `imgpipe run` and the API start from
    assert (spec.collect.max_pixels, spec.fetch.max_bytes) == (MAX_PIXELS, MAX_BYTES)
