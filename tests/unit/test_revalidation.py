"""The cover cache's HTTP rules: what is stored, for how long, and how it is asked about."""

from __future__ import annotations

import pytest

from imgpipe.fetch.cover_cache import CachedCover
from imgpipe.fetch.revalidation import (
    conditional_headers,
    cover_for,
    directives,
    is_fresh,
    lifetime,
    renewed,
)

URL = "https://cdn.example/covers/a.jpg"
NOW = 1_700_000_000.0


def _cover_for(headers: dict[str, str], hops: tuple[str, ...] = (URL,)) -> CachedCover | None:
    return cover_for(
        URL,
        1234,
        image_format="jpeg",
        content_type="image/jpeg",
        hops=hops,
        headers=headers,
        now=NOW,
    )


def test_directives_are_case_insensitive_and_unquoted() -> None:
    found = directives('Public, MAX-AGE="60", no-transform, max-age=999')
    assert found == {"public": None, "max-age": "60", "no-transform": None}  # first one wins


@pytest.mark.parametrize(
    ("cache_control", "age", "expected"),
    [
        ("max-age=600", None, 600.0),
        ("public, max-age=31536000, immutable", "36000", 31500000.0),
        ("max-age=60", "100", 0.0),  # older than its lifetime: stale already
        ("max-age=600, no-cache", None, 0.0),  # fresh never means "skip asking"
        ("max-age=600, no-store", None, 0.0),
        ("immutable", None, 0.0),  # no lifetime of its own (RFC 8246)
        ("max-age=ten", None, 0.0),  # malformed: stale, never fresh
        ("max-age=-5", None, 0.0),
        ("s-maxage=600", None, 0.0),  # for shared caches, not us
        (None, None, 0.0),
    ],
)
def test_lifetime(cache_control: str | None, age: str | None, expected: float) -> None:
    assert lifetime(cache_control, age) == expected


def test_a_response_with_an_etag_is_stored_without_freshness() -> None:
    cover = _cover_for({"etag": '"v1"', "content-type": "image/jpeg"})
    assert cover is not None
    assert (cover.etag, cover.last_modified, cover.fresh_until) == ('"v1"', None, 0.0)
    assert (cover.url, cover.final_url, cover.size) == (URL, URL, 1234)
    assert not is_fresh(cover, NOW)


def test_a_max_age_response_is_fresh_until_its_lifetime_ends() -> None:
    cover = _cover_for({"cache-control": "max-age=600", "age": "100"})
    assert cover is not None
    assert cover.fresh_until == NOW + 500
    assert is_fresh(cover, NOW + 499)
    assert not is_fresh(cover, NOW + 500)


def test_final_url_is_the_last_hop() -> None:
    hops = (URL, "https://cdn2.example/real.jpg")
    cover = _cover_for({"last-modified": "Tue, 01 Apr 2025 10:00:00 GMT"}, hops)
    assert cover is not None
    assert (cover.final_url, cover.hops) == ("https://cdn2.example/real.jpg", hops)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # nothing to revalidate with and never fresh: useless
        {"cache-control": "no-cache"},
        {"etag": '"v1"', "cache-control": "no-store"},
        {"cache-control": "max-age=600, no-store"},
        {"etag": "  "},
    ],
)
def test_responses_that_are_not_stored(headers: dict[str, str]) -> None:
    assert _cover_for(headers) is None


def test_renewed_takes_the_304s_lifetime_and_validators() -> None:
    old = _cover_for({"etag": '"v1"'})
    assert old is not None
    new = renewed(old, {"etag": '"v1b"', "cache-control": "max-age=60"}, now=NOW + 10)
    assert (new.etag, new.lifetime, new.fresh_until) == ('"v1b"', 60.0, NOW + 70)
    assert new.size == old.size and new.hops == old.hops


def test_renewed_without_cache_control_restarts_the_stored_lifetime() -> None:
    old = _cover_for({"etag": '"v1"', "cache-control": "max-age=60"})
    assert old is not None
    new = renewed(old, {}, now=NOW + 1000)
    assert (new.etag, new.fresh_until) == ('"v1"', NOW + 1060)


def test_conditional_headers() -> None:
    both = CachedCover(URL, 1, "jpeg", URL, etag='W/"x"', last_modified="Tue, 01 Apr 2025")
    assert conditional_headers(both) == {
        "If-None-Match": 'W/"x"',
        "If-Modified-Since": "Tue, 01 Apr 2025",
    }
    assert conditional_headers(CachedCover(URL, 1, "jpeg", URL)) == {}
