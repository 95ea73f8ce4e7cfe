"""The record stream under parse_manifest, the shared cover rule and creator keys."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from imgpipe.domain.keys import creator_key, unique_key
from imgpipe.domain.manifest import (
    DEFAULT_SCHEMES,
    CoverRef,
    CoverSet,
    ManifestRow,
    RowProblem,
    read_records,
)
from imgpipe.domain.row_rules import _check_url, _check_url_by_parsing
from imgpipe.errors import ManifestError


def test_records_are_read_lazily_once_with_problems_in_place() -> None:
    lines = iter(["\ufeffid;author;image_url", "1;Ann;a.jpg", "2;;b.jpg", "", "3;Bo;", "4;Cy"])
    records = read_records(lines)
    assert (records.creator_column, records.url_column, records.delimiter) == (
        "author",
        "image_url",
        ";",
    )
    assert next(iter(records)) == ManifestRow(2, "Ann", "a.jpg")
    # Nothing was read ahead: the line taken here is never seen by the reader.
    assert next(lines) == "2;;b.jpg"
    assert list(records) == [
        ManifestRow(4, "Bo", "", RowProblem(4, "url", "missing_url")),
        ManifestRow(5, "Cy", "", RowProblem(5, "url", "missing_url")),
    ]
    assert list(records) == [] and records.blank_rows == 1


def test_blank_records_are_counted_not_yielded() -> None:
    records = read_records(["creator,url", "", " , ", "Ann,a.jpg", ",,"])
    assert [item.line for item in records] == [4]
    assert records.blank_rows == 3


def test_header_errors_come_when_reading_starts() -> None:
    with pytest.raises(ManifestError, match="no url column"):
        read_records(["creator,link", "Ann,a.jpg"])


def test_unreadable_record_is_a_problem() -> None:
    records = list(read_records(["creator,url", f'Bo,"{"x" * 200_000}"', "Cy,c.jpg"]))
    assert isinstance(records[0], RowProblem) and records[0].reason == "unreadable_row"
    assert records[1] == ManifestRow(3, "Cy", "c.jpg")


def test_cover_set_without_a_cap_keeps_every_distinct_url() -> None:
    covers = CoverSet()
    for line, url in enumerate(["a", "b", "a", "c", "b"], 2):
        covers.add(line, url)
    assert covers.covers == [CoverRef(2, "a"), CoverRef(3, "b"), CoverRef(5, "c")]
    assert (covers.duplicate_rows, covers.capped_rows) == (2, 0)


def test_unique_key_tells_case_apart_and_claims_what_it_gives() -> None:
    taken: set[str] = set()
    assert unique_key("Ann", taken) == "Ann" and taken == {"ann"}
    assert unique_key("ann", taken) == creator_key("ann", full_hash=True)
    taken.add(creator_key("ANN", full_hash=True).casefold())  # even a full-hash clash ends
    assert unique_key("ANN", taken) == creator_key("ANN", full_hash=True) + "-2"
    assert len(taken) == 4


URL_PARTS = st.sampled_from(
    ["http", "HTTPS", "https", "ftp", "://", ":", "/", "x", "X.y", "-", "[", "]", "::1", "@",
     "?", "#", "80", "99999", "\t", "\n", " ", "K", "ſ", "é", "%2F", "..", "\\"]
)  # fmt: skip


@given(st.lists(URL_PARTS, max_size=8).map("".join), st.sampled_from([DEFAULT_SCHEMES, {"https"}]))
@example("http://x/a.jpg", DEFAULT_SCHEMES)
@example("HTTPS://X.Y", {"https"})
@example("http://ſ/", DEFAULT_SCHEMES)
def test_the_fast_url_check_agrees_with_urlsplit(url: str, schemes: frozenset[str]) -> None:
    schemes = frozenset(schemes)
    assert _check_url(url, schemes) == _check_url_by_parsing(url, schemes)
