"""CSV manifest parsing: columns, delimiters, line numbers, row problems, grouping."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgpipe.domain.keys import creator_key
from imgpipe.domain.manifest import (
    CREATOR_ALIASES,
    URL_ALIASES,
    CoverRef,
    Manifest,
    RowProblem,
    parse_manifest,
)
from imgpipe.domain.row_rules import MAX_CREATOR_CHARS, MAX_URL_CHARS
from imgpipe.errors import InputError, ManifestError


def parse(text: str, **kwargs: object) -> Manifest:
    return parse_manifest(io.StringIO(text, newline=""), **kwargs)  # type: ignore[arg-type]


def summary(m: Manifest) -> list[tuple[str, list[tuple[int, str]]]]:
    return [(job.creator, [(c.line, c.url) for c in job.covers]) for job in m.jobs]


# -- columns -------------------------------------------------------------------


@pytest.mark.parametrize("alias", CREATOR_ALIASES)
def test_every_creator_alias_is_recognised(alias: str) -> None:
    m = parse(f"id, {alias.upper()} ,url\n1,Ann,https://x/1.jpg\n")
    assert m.creator_column == alias.upper()
    assert summary(m) == [("Ann", [(2, "https://x/1.jpg")])]


@pytest.mark.parametrize("alias", URL_ALIASES)
def test_every_url_alias_is_recognised(alias: str) -> None:
    m = parse(f"creator,{alias.lower()}\nAnn,https://x/1.jpg\n")
    assert m.url_column == alias.lower()
    assert summary(m) == [("Ann", [(2, "https://x/1.jpg")])]


def test_alias_preference_order_beats_header_order() -> None:
    m = parse("username,cover,creator,url\nu1,https://x/c.jpg,Ann,https://x/u.jpg\n")
    assert (m.creator_column, m.url_column) == ("creator", "url")
    assert summary(m) == [("Ann", [(2, "https://x/u.jpg")])]


def test_explicit_columns_override_aliases_case_insensitively() -> None:
    m = parse(
        "creator,url,Name,Link\nwrong,https://x/wrong.jpg,Ann,https://x/right.jpg\n",
        creator_column=" name ",
        url_column="LINK",
    )
    assert (m.creator_column, m.url_column) == ("Name", "Link")
    assert summary(m) == [("Ann", [(2, "https://x/right.jpg")])]


def test_explicit_column_missing_names_it() -> None:
    with pytest.raises(ManifestError) as info:
        parse("creator,url\nAnn,a.jpg\n", creator_column="artist")
    assert "'artist'" in str(info.value) and "['creator', 'url']" in str(info.value)


def test_no_usable_creator_column_names_header_and_aliases() -> None:
    with pytest.raises(ManifestError) as info:
        parse("a,b\n1,2\n")
    message = str(info.value)
    assert message.startswith("no creator column: header has ['a', 'b']; expected one of ")
    assert all(alias in message for alias in CREATOR_ALIASES)
    # Each entry point says how to choose the column; the reader names no CLI flag.
    assert "--" not in message and info.value.role == "creator"  # type: ignore[attr-defined]
    assert isinstance(info.value, InputError)


def test_no_usable_url_column_names_the_url_role() -> None:
    with pytest.raises(ManifestError, match=r"no url column: header has \['creator', 'b'\]"):
        parse("creator,b\nAnn,2\n")


@pytest.mark.parametrize("text", ["", "\n\n  \n", "\ufeff"])
def test_empty_file_is_an_error(text: str) -> None:
    with pytest.raises(ManifestError, match="empty CSV"):
        parse(text)


def test_header_only_gives_no_jobs() -> None:
    m = parse("creator,url\n")
    assert (m.jobs, m.problems, m.rows_read) == ([], [], 0)


# -- encodings and delimiters --------------------------------------------------


def test_bom_is_stripped_from_a_stream_not_opened_with_utf8_sig() -> None:
    m = parse("\ufeffcreator,url\nAnn,a.jpg\n")
    assert m.creator_column == "creator" and summary(m) == [("Ann", [(2, "a.jpg")])]


def test_bom_file_opened_like_the_cli_does(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffcreator;url\r\nZoë;a.jpg\r\n".encode())
    with path.open(encoding="utf-8-sig", newline="") as stream:
        m = parse_manifest(stream)
    assert summary(m) == [("Zoë", [(2, "a.jpg")])]


def test_semicolon_delimiter_with_commas_inside_urls() -> None:
    m = parse("creator;url\nAnn;https://x/a,b.jpg\nBo;https://x/c.jpg\n")
    assert m.delimiter == ";"
    assert summary(m) == [("Ann", [(2, "https://x/a,b.jpg")]), ("Bo", [(3, "https://x/c.jpg")])]


def test_tab_delimiter() -> None:
    m = parse("creator\turl\nAnn Lee\thttps://x/1.jpg\n")
    assert m.delimiter == "\t" and summary(m) == [("Ann Lee", [(2, "https://x/1.jpg")])]


def test_plain_iterable_of_lines_without_newlines() -> None:
    m = parse_manifest(["creator,url", "Ann,a.jpg", "Ann,b.jpg"])
    assert summary(m) == [("Ann", [(2, "a.jpg"), (3, "b.jpg")])]


# -- line numbers --------------------------------------------------------------


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_line_numbers_after_a_quoted_multiline_field(eol: str) -> None:
    text = eol.join(
        [
            "creator,url",
            '"Ann',
            'Smith",https://x/1.jpg',
            "Bob,https://x/2.jpg",
            ",https://x/3.jpg",
            '"Cy","https://x/4.jpg"',
            "",
        ]
    )
    m = parse(text)
    assert summary(m) == [
        (f"Ann{eol}Smith", [(2, "https://x/1.jpg")]),
        ("Bob", [(4, "https://x/2.jpg")]),
        ("Cy", [(6, "https://x/4.jpg")]),
    ]
    assert m.problems == [RowProblem(5, "creator", "missing_creator")]


def test_blank_lines_are_skipped_but_keep_line_numbers() -> None:
    m = parse("\ncreator,url\n\nAnn,a.jpg\n   \nAnn,b.jpg\n")
    assert summary(m) == [("Ann", [(4, "a.jpg"), (6, "b.jpg")])]
    assert (m.rows_read, m.blank_rows) == (2, 2)


# -- row problems --------------------------------------------------------------


def test_every_bad_row_kind_with_line_and_reason() -> None:
    rows = [
        "creator,url,extra",
        "Ann,https://x/ok.jpg,1",  # 2 ok
        ",https://x/1.jpg,1",  # 3 empty creator
        "   ,https://x/2.jpg,1",  # 4 blank creator
        "Ann,,1",  # 5 empty url
        "Ann",  # 6 short row: no url cell
        "Ann,ftp://x/3.jpg",  # 7
        "Ann,javascript:alert(1)",  # 8
        "Ann,data:image/png;base64,AAAA",  # 9 (quoted below)
        "Ann,http://",  # 10 no host
        "Ann,https:///etc/passwd",  # 11 no host
        "Ann,http://x:99999/a.jpg",  # 12 bad port
        "Ann,http://[::1/a.jpg",  # 13 broken IPv6 literal
        "Ann,  https://x/ok2.jpg  ",  # 14 ok after trimming
    ]
    rows[8] = 'Ann,"data:image/png;base64,AAAA"'
    m = parse("\n".join(rows) + "\n")
    assert m.problems == [
        RowProblem(3, "creator", "missing_creator"),
        RowProblem(4, "creator", "missing_creator"),
        RowProblem(5, "url", "missing_url"),
        RowProblem(6, "url", "missing_url"),
        RowProblem(7, "url", "unsupported_scheme", "ftp://x/3.jpg"),
        RowProblem(8, "url", "unsupported_scheme", "javascript:alert(1)"),
        RowProblem(9, "url", "unsupported_scheme", "data:image/png;base64,AAAA"),
        RowProblem(10, "url", "invalid_url", "http://"),
        RowProblem(11, "url", "invalid_url", "https:///etc/passwd"),
        RowProblem(12, "url", "invalid_url", "http://x:99999/a.jpg"),
        RowProblem(13, "url", "invalid_url", "http://[::1/a.jpg"),
    ]
    assert summary(m) == [("Ann", [(2, "https://x/ok.jpg"), (14, "https://x/ok2.jpg")])]
    assert m.rows_read == 13
    assert m.problems[4].to_dict() == {
        "line": 7,
        "field": "url",
        "reason": "unsupported_scheme",
        "value": "ftp://x/3.jpg",
    }


def test_short_row_missing_the_creator_cell() -> None:
    m = parse("url,creator\nhttps://x/1.jpg\n")
    assert m.problems == [RowProblem(2, "creator", "missing_creator")] and m.jobs == []


def test_paths_and_case_insensitive_schemes_are_kept() -> None:
    urls = [
        "C:\\covers\\a.jpg",
        "d:/covers/b.jpg",
        "\\\\server\\share\\c.jpg",
        "covers/d.jpg",
        "/abs/e.jpg",
        "file:///tmp/f.jpg",
        "HTTPS://X/g.jpg",
    ]
    m = parse("creator,url\n" + "".join(f"Ann,{u}\n" for u in urls))
    assert m.problems == []
    assert [c.url for c in m.jobs[0].covers] == urls


def test_schemes_argument_restricts_what_is_accepted() -> None:
    m = parse(
        "creator,url\nAnn,http://x/a.jpg\nAnn,https://x/b.jpg\n", schemes=frozenset({"https"})
    )
    assert m.problems == [RowProblem(2, "url", "unsupported_scheme", "http://x/a.jpg")]
    assert summary(m) == [("Ann", [(3, "https://x/b.jpg")])]


def test_unreadable_rows_are_problems_and_the_batch_goes_on() -> None:
    huge = "x" * 200_000
    m = parse(f'creator,url\nAnn,a.jpg\nBo,"{huge}"\nCy,c.jpg\n')
    assert [p.reason for p in m.problems] == ["unreadable_row"]
    assert m.problems[0].line == 3 and "field larger" in m.problems[0].value
    assert [job.creator for job in m.jobs] == ["Ann", "Cy"]


# -- grouping ------------------------------------------------------------------


def test_order_of_first_appearance_and_distinct_urls() -> None:
    m = parse("creator,url\nBob,b1\nAnn,a1\nBob,b2\nBob,b1\nCy,c1\nAnn,a1\nAnn,a2\nBob, b1 \n")
    assert summary(m) == [
        ("Bob", [(2, "b1"), (4, "b2")]),
        ("Ann", [(3, "a1"), (8, "a2")]),
        ("Cy", [(6, "c1")]),
    ]
    assert (m.rows_read, m.duplicate_rows, m.problems) == (8, 3, [])
    assert [job.key for job in m.jobs] == ["Bob", "Ann", "Cy"]


def test_creator_with_only_bad_rows_gets_no_job_but_keeps_its_place() -> None:
    m = parse("creator,url\nAnn,ftp://x\nBo,b.jpg\nCy,\nAnn,a.jpg\n")
    assert [job.creator for job in m.jobs] == ["Ann", "Bo"]
    assert [p.line for p in m.problems] == [2, 4]


def test_names_are_trimmed_but_case_sensitive() -> None:
    m = parse("creator,url\n  Ann ,a.jpg\nann,b.jpg\nAnn,c.jpg\n")
    assert summary(m) == [("Ann", [(2, "a.jpg"), (4, "c.jpg")]), ("ann", [(3, "b.jpg")])]


def test_names_differing_only_by_case_get_keys_that_differ_beyond_case() -> None:
    # One file on macOS or Windows otherwise: Ann.json and ann.json.
    m = parse("creator,url\nAnn,a.jpg\nann,b.jpg\nANN,c.jpg\n")
    keys = [job.key for job in m.jobs]
    assert keys[0] == "Ann"
    assert len({key.casefold() for key in keys}) == 3
    assert keys[1] == creator_key("ann", full_hash=True)


def test_cap_keeps_the_first_distinct_covers() -> None:
    m = parse(
        "creator,url\nAnn,a\nAnn,a\nAnn,b\nAnn,c\nAnn,b\nAnn,d\nBo,x\n", max_covers_per_creator=2
    )
    assert summary(m) == [("Ann", [(2, "a"), (4, "b")]), ("Bo", [(8, "x")])]
    assert (m.duplicate_rows, m.capped_rows) == (2, 2)


def test_cap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_covers_per_creator"):
        parse("creator,url\n", max_covers_per_creator=0)


def test_names_with_the_same_sanitized_text_stay_apart() -> None:
    names = ["a/b", "a_b", "a\\b", "a b", "a:b"]
    m = parse("creator,url\n" + "".join(f'"{n}",{i}.jpg\n' for i, n in enumerate(names)))
    assert [job.creator for job in m.jobs] == names
    assert len({job.key for job in m.jobs}) == len(names)
    assert m.jobs[1].key == "a_b" and m.jobs[0].key == creator_key("a/b")


def test_a_short_hash_collision_falls_back_to_the_full_hash() -> None:
    # Found by a birthday search: both sanitize to "x_y" and share the 8-hex suffix.
    first, second = "x*<?//<y", "x???||*y"
    assert creator_key(first) == creator_key(second)
    m = parse(f"creator,url\n{first},1.jpg\n{second},2.jpg\n")
    assert m.jobs[0].key == creator_key(first)
    assert m.jobs[1].key == creator_key(second, full_hash=True)
    assert m.jobs[0].key != m.jobs[1].key


def test_large_generated_stream_is_parsed_lazily() -> None:
    consumed = 0

    def lines() -> Iterator[str]:
        nonlocal consumed
        yield "creator_name,cover_url\n"
        for i in range(10_000):
            for j in range(3):
                consumed += 1
                yield f"creator {i},https://cdn.example/{i}/{j}.jpg\n"

    m = parse_manifest(lines())
    assert consumed == 30_000
    assert (len(m.jobs), m.rows_read, m.duplicate_rows, m.problems) == (10_000, 30_000, 0, [])
    assert all(len(job.covers) == 3 for job in m.jobs)
    last = m.jobs[-1]
    assert last.creator == "creator 9999" and last.key == creator_key("creator 9999")
    assert last.covers[2] == CoverRef(2 + 9999 * 3 + 2, "https://cdn.example/9999/2.jpg")


def test_over_long_creators_and_urls_are_row_problems_quoting_their_start() -> None:
    url = "https://x/" + "u" * MAX_URL_CHARS
    name = "é" * (MAX_CREATOR_CHARS + 1)
    longest = "https://x/" + "v" * (MAX_URL_CHARS - 10)
    m = parse(f"creator,url\nAnn,{url}\n{name},b.jpg\nAnn,{longest}\n")
    assert [(p.line, p.field, p.reason) for p in m.problems] == [
        (2, "url", "url_too_long"),
        (3, "creator", "creator_too_long"),
    ]
    assert m.problems[0].value == f"{url[:200]}… ({len(url):,} characters)"
    assert len(m.problems[1].value) < 250
    assert summary(m) == [("Ann", [(4, longest)])]  # the limit itself is allowed
