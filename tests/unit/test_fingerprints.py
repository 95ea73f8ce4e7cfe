"""Content hashes and collage fingerprints are stable and sensitive to every input."""

from __future__ import annotations

import hashlib
import json

import pytest

from imgpipe.domain import fingerprints
from imgpipe.domain.fingerprints import RENDER_VERSION, collage_fingerprint, content_hash

SETTINGS = {"rows": 5, "cols": 7, "cell_size": 200, "quality": 95}


def test_content_hash_is_sha256_hex() -> None:
    assert content_hash(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_fingerprint_is_sha256_of_canonical_json() -> None:
    # Pinned format: records written by earlier runs (and other hosts) must keep matching.
    canonical = '{"cell":200,"cols":7,"images":["aa","bb"],"quality":95,"rows":5,"v":VERSION}'
    canonical = canonical.replace("VERSION", str(RENDER_VERSION))
    assert json.loads(canonical)["v"] == RENDER_VERSION
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert collage_fingerprint(["aa", "bb"], **SETTINGS) == expected


def test_fingerprint_is_deterministic_for_any_sequence_type() -> None:
    assert collage_fingerprint(["aa", "bb"], **SETTINGS) == collage_fingerprint(
        ("aa", "bb"), **SETTINGS
    )


def test_image_order_matters() -> None:
    assert collage_fingerprint(["aa", "bb"], **SETTINGS) != collage_fingerprint(
        ["bb", "aa"], **SETTINGS
    )


@pytest.mark.parametrize(
    "change", [{"rows": 4}, {"cols": 6}, {"cell_size": 150}, {"quality": 90}], ids=str
)
def test_every_render_setting_matters(change: dict[str, int]) -> None:
    base = collage_fingerprint(["aa"], **SETTINGS)
    assert collage_fingerprint(["aa"], **{**SETTINGS, **change}) != base


def test_render_version_matters(monkeypatch: pytest.MonkeyPatch) -> None:
    before = collage_fingerprint(["aa"], **SETTINGS)
    monkeypatch.setattr(fingerprints, "RENDER_VERSION", RENDER_VERSION + 1)
    assert collage_fingerprint(["aa"], **SETTINGS) != before


def test_image_list_is_not_ambiguous() -> None:
    # A plain concatenation would confuse ["ab", "c"] with ["a", "bc"].
    assert collage_fingerprint(["ab", "c"], **SETTINGS) != collage_fingerprint(
        ["a", "bc"], **SETTINGS
    )
