"""Downloader with a CoverCache against a real HTTP server on 127.0.0.1: no re-downloading."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from imgpipe.fetch.cover_cache import CoverCache
from imgpipe.fetch.downloader import Downloader, FetchCounts, FetchPolicy, FetchResult
from imgpipe.fetch.netguard import IPAddress
from tests.integration.conftest import PolicyFactory
from tests.support.http_caching import Cacheable
from tests.support.http_server import (
    HTML_ERROR_PAGE,
    FaultServer,
    Redirect,
    SentResponse,
    Sequence,
    Serve,
    Status,
)
from tests.support.images import jpeg, png

JPEG = jpeg()
PNG = png()
MODIFIED = "Tue, 01 Apr 2025 10:00:00 GMT"


def rerun(
    cache: CoverCache, policy: FetchPolicy, *urls: str, **kwargs: Any
) -> tuple[list[FetchResult], FetchCounts]:
    """One downloader (one "run") fetching ``urls`` in turn; its results and counts."""

    async def run() -> tuple[list[FetchResult], FetchCounts]:
        async with Downloader(policy, cache=cache, **kwargs) as downloader:
            results = [await downloader.fetch(url) for url in urls]
            return results, downloader.counts

    return asyncio.run(run())


def entry_files(root: Path) -> list[Path]:
    return [p for p in root.glob("*/*") if p.is_file() and not p.name.startswith(".")]


@pytest.fixture
def cache(tmp_path: Path) -> CoverCache:
    return CoverCache(tmp_path / "covers", 10 * 1024 * 1024)


def test_second_fetch_is_a_304_without_a_body(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    url = server.add("/a.jpg", Cacheable(JPEG, etag='"v1"'))
    [first], counts = rerun(cache, policy(), url)
    assert first.ok and not first.from_cache
    assert counts == FetchCounts(downloaded=1)
    [second], counts = rerun(cache, policy(), url)
    assert second.ok and second.from_cache
    assert second.data == JPEG
    assert (second.status_code, second.attempts, second.image_format) == (304, 1, "jpeg")
    assert (second.content_type, second.final_url) == ("image/jpeg", url)
    assert counts == FetchCounts(revalidated=1)
    assert server.responses("/a.jpg") == [SentResponse(200, len(JPEG)), SentResponse(304, 0)]
    assert server.conditional_hits("/a.jpg") == 1
    assert server.requests("/a.jpg")[1].headers["If-None-Match"] == '"v1"'


def test_last_modified_alone_revalidates(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    url = server.add("/a.jpg", Cacheable(JPEG, last_modified=MODIFIED))
    rerun(cache, policy(), url)
    [second], counts = rerun(cache, policy(), url)
    assert second.from_cache and second.data == JPEG
    assert server.requests("/a.jpg")[1].headers["If-Modified-Since"] == MODIFIED
    assert "If-None-Match" not in server.requests("/a.jpg")[1].headers
    assert server.responses("/a.jpg")[1] == SentResponse(304, 0)


def test_changed_content_replaces_the_entry(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    url = server.add("/a", Sequence(Cacheable(JPEG, etag='"v1"'), Cacheable(PNG, etag='"v2"')))
    rerun(cache, policy(), url)
    [changed], counts = rerun(cache, policy(), url)
    assert (changed.data, changed.from_cache, changed.image_format) == (PNG, False, "png")
    assert counts == FetchCounts(downloaded=1)
    [third], _ = rerun(cache, policy(), url)
    assert (third.data, third.from_cache, third.image_format) == (PNG, True, "png")
    sent = [r.headers.get("If-None-Match") for r in server.requests("/a")]
    assert sent == [None, '"v1"', '"v2"']
    assert [r.status for r in server.responses("/a")] == [200, 200, 304]
    assert len(entry_files(cache.root)) == 1


def test_max_age_is_served_without_a_request(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    url = server.add("/a.jpg", Cacheable(JPEG, cache_control="public, max-age=600, immutable"))
    rerun(cache, policy(), url)
    [second], counts = rerun(cache, policy(), url)
    assert second.ok and second.from_cache and second.data == JPEG
    assert (second.attempts, second.status_code) == (0, None)
    assert counts == FetchCounts(from_cache=1)
    assert server.hits("/a.jpg") == 1


def test_an_entry_past_its_max_age_is_revalidated_and_renewed(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    stale = Cacheable(JPEG, etag='"v1"', cache_control="max-age=600", age=600)
    renewed = Cacheable(JPEG, etag='"v1"', cache_control="max-age=600")
    url = server.add("/a.jpg", Sequence(stale, renewed))
    rerun(cache, policy(), url)  # spent its lifetime in a CDN already
    [second], counts = rerun(cache, policy(), url)  # so: asked, and 304 renews it
    [third], counts_3 = rerun(cache, policy(), url)  # fresh now: no request
    assert (second.from_cache, second.status_code, third.from_cache) == (True, 304, True)
    assert (counts, counts_3) == (FetchCounts(revalidated=1), FetchCounts(from_cache=1))
    assert server.hits("/a.jpg") == 2


def test_private_entry_is_not_served_unasked_once_the_policy_refuses_it(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    url = server.add("/a.jpg", Cacheable(JPEG, cache_control="max-age=600"))
    rerun(cache, policy(), url)  # stored while 127.0.0.0/8 was allowed
    [allowed], _ = rerun(cache, policy(), url)
    assert allowed.from_cache and server.hits("/a.jpg") == 1
    [refused], counts = rerun(cache, policy(allowed_networks=()), url)
    assert (refused.ok, refused.reason, refused.from_cache) == (False, "blocked_address", False)
    assert counts == FetchCounts()
    assert server.hits("/a.jpg") == 1  # the guard refused the request it made instead


def test_a_name_that_now_resolves_to_a_refused_address_is_not_served(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    def resolving_to(address: str) -> Any:
        async def resolve(host: str, port: int) -> list[IPAddress]:
            return [IPv4Address(address)]

        return resolve

    url = server.add("/a.jpg", Cacheable(JPEG, cache_control="max-age=600"))
    named = url.replace("127.0.0.1", "covers.test")
    [first], _ = rerun(cache, policy(), named, resolver=resolving_to("127.0.0.1"))
    assert first.ok
    [still], _ = rerun(cache, policy(), named, resolver=resolving_to("127.0.0.2"))
    assert still.from_cache  # another allowed address: served unasked
    [moved], _ = rerun(cache, policy(), named, resolver=resolving_to("169.254.169.254"))
    assert (moved.reason, moved.from_cache) == ("blocked_address", False)
    assert server.hits("/a.jpg") == 1


def test_a_redirected_cover_is_revalidated_at_its_final_url(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    start = server.add("/start", Redirect("/real.jpg"))
    final = server.add("/real.jpg", Cacheable(JPEG, etag='"v1"'))
    rerun(cache, policy(), start)
    [second], _ = rerun(cache, policy(), start)
    assert second.from_cache and (second.final_url, second.status_code) == (final, 304)
    assert server.conditional_hits("/start") == 0  # the redirect answers for no resource
    assert server.conditional_hits("/real.jpg") == 1


def test_a_fresh_entry_behind_more_redirects_than_allowed_now_is_not_served(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    start = server.add("/start", Redirect("/real.jpg"))
    server.add("/real.jpg", Cacheable(JPEG, cache_control="max-age=600"))
    rerun(cache, policy(), start)
    [second], _ = rerun(cache, policy(max_redirects=0), start)
    assert (second.reason, second.from_cache) == ("too_many_redirects", False)
    assert server.hits("/start") == 2


def test_retries_on_a_conditional_request_are_counted(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    cover = Cacheable(JPEG, etag='"v1"')
    url = server.add("/a.jpg", Sequence(cover, Status(503), cover))
    rerun(cache, policy(), url)
    [second], counts = rerun(cache, policy(), url)
    assert (second.from_cache, second.status_code, second.attempts) == (True, 304, 2)
    assert server.conditional_hits("/a.jpg") == 2  # the retry asked "changed?" too
    assert counts == FetchCounts(revalidated=1)


def test_an_entry_over_todays_max_bytes_is_not_used(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    url = server.add("/a.jpg", Cacheable(JPEG, etag='"v1"', cache_control="max-age=600"))
    rerun(cache, policy(), url)
    [second], _ = rerun(cache, policy(max_bytes=len(JPEG) - 1), url)
    assert (second.reason, second.from_cache) == ("too_large", False)
    assert server.conditional_hits("/a.jpg") == 0


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:-1] + bytes([data[-1] ^ 1]), id="body-byte-flipped"),
        pytest.param(lambda data: b"garbage", id="garbage"),
    ],
)
def test_a_corrupt_entry_is_a_miss(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache, damage: Any
) -> None:
    url = server.add("/a.jpg", Cacheable(JPEG, etag='"v1"'))
    rerun(cache, policy(), url)
    [path] = entry_files(cache.root)
    path.write_bytes(damage(path.read_bytes()))
    [second], counts = rerun(cache, policy(), url)
    assert second.ok and second.data == JPEG and not second.from_cache
    assert counts == FetchCounts(downloaded=1)
    assert server.responses("/a.jpg")[-1] == SentResponse(200, len(JPEG))
    [third], _ = rerun(cache, policy(), url)  # the full body was stored again
    assert third.from_cache and third.data == JPEG


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(Status(404, {"ETag": '"e"', "Cache-Control": "max-age=600"}), id="404"),
        pytest.param(Status(500, {"ETag": '"e"', "Cache-Control": "max-age=600"}), id="500"),
        pytest.param(
            Cacheable(
                HTML_ERROR_PAGE, etag='"e"', cache_control="max-age=600", content_type="text/html"
            ),
            id="not-an-image",
        ),
        pytest.param(Serve(JPEG), id="no-validator-no-lifetime"),
        pytest.param(Cacheable(JPEG, etag='"e"', cache_control="no-store"), id="no-store"),
    ],
)
def test_responses_that_are_never_cached(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache, behaviour: Any
) -> None:
    url = server.add("/a.jpg", behaviour)
    first, _ = rerun(cache, policy(retries=0), url)
    second, _ = rerun(cache, policy(retries=0), url)
    assert not second[0].from_cache
    assert server.hits("/a.jpg") == 2
    assert server.conditional_hits("/a.jpg") == 0
    assert entry_files(cache.root) == []


def test_zero_bytes_turns_the_cache_off(
    server: FaultServer, policy: PolicyFactory, tmp_path: Path
) -> None:
    off = CoverCache(tmp_path / "covers", 0)
    url = server.add("/a.jpg", Cacheable(JPEG, etag='"v1"', cache_control="max-age=600"))
    rerun(off, policy(), url)
    [second], counts = rerun(off, policy(), url)
    assert second.ok and not second.from_cache
    assert counts == FetchCounts(downloaded=1)
    assert server.conditional_hits("/a.jpg") == 0 and server.hits("/a.jpg") == 2
    assert not (tmp_path / "covers").exists()


def test_local_files_are_not_cached(
    policy: PolicyFactory, cache: CoverCache, tmp_path: Path
) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(JPEG)
    results, counts = rerun(cache, policy(), str(path), path.as_uri())
    assert all(r.ok and not r.from_cache for r in results)
    assert counts == FetchCounts()
    assert not cache.root.exists()


def test_a_run_of_many_covers_keeps_the_folder_under_the_bound(
    server: FaultServer, policy: PolicyFactory, tmp_path: Path
) -> None:
    bound = 3 * len(JPEG) + 2000
    small = CoverCache(tmp_path / "covers", bound)
    urls = [server.add(f"/{n}.jpg", Cacheable(JPEG, etag=f'"{n}"')) for n in range(8)]
    results, counts = rerun(small, policy(), *urls)
    assert all(r.ok for r in results) and counts == FetchCounts(downloaded=8)
    files = entry_files(small.root)
    assert 1 <= len(files) <= 3
    assert sum(p.stat().st_size for p in files) <= bound
    [last], counts = rerun(small, policy(), urls[-1])  # the most recent one survived
    assert last.from_cache and counts == FetchCounts(revalidated=1)


def test_a_304_to_a_plain_request_is_not_a_success(
    server: FaultServer, policy: PolicyFactory, cache: CoverCache
) -> None:
    url = server.add("/a.jpg", Status(304))
    [result], counts = rerun(cache, policy(), url)
    assert (result.ok, result.reason, result.from_cache) == (False, "http_304", False)
    assert counts == FetchCounts()


def test_an_unusable_cache_folder_never_fails_a_fetch(
    server: FaultServer, policy: PolicyFactory, tmp_path: Path
) -> None:
    blocker = tmp_path / "covers"
    blocker.write_bytes(b"a file where the folder should be")
    broken = CoverCache(blocker, 10 * 1024 * 1024)
    url = server.add("/a.jpg", Cacheable(JPEG, etag='"v1"'))
    results, counts = rerun(broken, policy(), url, url)
    assert [r.data for r in results] == [JPEG, JPEG]
    assert counts == FetchCounts(downloaded=2)
    assert server.conditional_hits("/a.jpg") == 0
