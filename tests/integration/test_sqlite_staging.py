"""SQLite staging gives exactly what parse_manifest gives, a chunk at a time, from a file."""

from __future__ import annotations

import csv
import io
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from imgpipe.adapters import sqlite_staging
from imgpipe.adapters.sqlite_staging import StagedManifest, stage_manifest
from imgpipe.domain.keys import creator_key
from imgpipe.domain.manifest import Manifest, parse_manifest
from imgpipe.errors import ManifestError, StorageError
from tests.support.hostile_csv import HUGE, TEXTS

# Names that collide by case, need a hash, or are blank; URLs that are fine, bad,
# duplicated, carry the delimiter or a newline (quoted by the writer).
NAMES = ["Ann", "ann", "ANN", "Bo", " Bo ", "a/b", "a_b", "Zoë", "x\ny", "", "  ", "c;d", "n\x00ul"]
URLS = [
    "a.jpg", "b.jpg", "https://x/1.jpg", "https://x/1,2.jpg", "HTTPS://X/3.jpg",
    "ftp://x/4", "", "http://", "http://x:99999/a", "dir/line\nbreak.jpg", " a.jpg ", "c;d.jpg",
]  # fmt: skip


@dataclass
class Csv:
    text: str
    cap: int | None

    def parsed(self) -> Manifest:
        return parse_manifest(io.StringIO(self.text, newline=""), max_covers_per_creator=self.cap)

    def staged(self, path: Path) -> StagedManifest:
        return stage_manifest(
            io.StringIO(self.text, newline=""), path=path, max_covers_per_creator=self.cap
        )


@st.composite
def exports(draw: st.DrawFn) -> Csv:
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    extra = draw(st.booleans())  # a third column the parser must ignore
    rows = draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(NAMES), st.sampled_from(URLS)),
                st.just(("", "")),  # a blank record
                st.just(("short",)),  # a row without its URL cell
            ),
            max_size=40,
        )
    )
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=eol)
    writer.writerow(["creator", "cover_url", *(["extra"] if extra else [])])
    for row in rows:
        if len(row) == 2 and not any(row):
            buffer.write(eol)
        else:
            writer.writerow([*row, *(["1"] if extra and len(row) == 2 else [])])
    bom = "\ufeff" if draw(st.booleans()) else ""
    cap = draw(st.one_of(st.none(), st.integers(1, 3)))
    return Csv(bom + buffer.getvalue(), cap)


def assert_same(staged: StagedManifest, parsed: Manifest) -> None:
    assert list(staged.jobs()) == parsed.jobs
    assert list(staged.problems()) == parsed.problems
    assert staged.problem_count == len(parsed.problems)
    assert (staged.creators, staged.covers) == (
        len(parsed.jobs),
        sum(len(job.covers) for job in parsed.jobs),
    )
    for name in ("rows_read", "duplicate_rows", "blank_rows", "capped_rows"):
        assert getattr(staged, name) == getattr(parsed, name), name
    for name in ("creator_column", "url_column", "delimiter"):
        assert getattr(staged, name) == getattr(parsed, name), name


@settings(max_examples=300, deadline=None)
@given(exports())
def test_staging_equals_parse_manifest(export: Csv) -> None:
    with tempfile.TemporaryDirectory() as tmp, export.staged(Path(tmp) / "s.db") as staged:
        assert_same(staged, export.parsed())


CASES = {
    "duplicates and first appearance": "creator,url\nBob,b1\nAnn,a1\nBob,b2\nBob,b1\nAnn, a1 \n",
    "case-colliding names": "creator,url\nAnn,a.jpg\nann,b.jpg\nANN,c.jpg\nAnn,d.jpg\n",
    "bad rows keep the creator's place": "creator,url\nAnn,ftp://x\nBo,b.jpg\nann,a.jpg\n",
    "quoted newline": 'creator,url\n"Ann\nSmith","a\nb.jpg"\nBob,c.jpg\n',
    "bom and semicolons": "\ufeffauthor;image_url\r\nZoë;https://x/a,b.jpg\r\n;x.jpg\r\n",
    "unreadable row": f'creator,url\nAnn,a.jpg\nBo,"{"x" * 200_000}"\nCy,c.jpg\n',
    "blank lines": "\ncreator,url\n\nAnn,a.jpg\n   \nAnn,b.jpg\n",
    "header only": "creator,url\n",
    "hash collision": "creator,url\nx*<?//<y,1.jpg\nx???||*y,2.jpg\n",
}


@pytest.mark.parametrize("cap", [None, 1, 2])
@pytest.mark.parametrize("text", CASES.values(), ids=CASES.keys())
def test_table_of_exports(text: str, cap: int | None, tmp_path: Path) -> None:
    export = Csv(text, cap)
    with export.staged(tmp_path / "s.db") as staged:
        assert_same(staged, export.parsed())


def test_cap_counts_repeated_rows_of_dropped_urls_like_parse_manifest(tmp_path: Path) -> None:
    export = Csv("creator,url\nAnn,a\nAnn,b\nAnn,c\nAnn,c\nAnn,a\nAnn,d\n", 2)
    with export.staged(tmp_path / "s.db") as staged:
        assert (staged.duplicate_rows, staged.capped_rows, staged.covers) == (1, 3, 2)
        assert_same(staged, export.parsed())


@pytest.fixture
def many(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StagedManifest:
    """Ten creators, read back three at a time; problems written two at a time."""
    monkeypatch.setattr(sqlite_staging, "_CHUNK", 3)
    monkeypatch.setattr(sqlite_staging, "_BATCH", 2)
    lines = [f"c{i % 10},{i}.jpg\n" for i in range(30)] + [",x.jpg\n"] * 5
    return stage_manifest(["creator,url\n", *lines], path=tmp_path / "s.db")


def test_jobs_from_any_start_across_chunks(many: StagedManifest) -> None:
    everything = list(many.jobs())
    assert [job.creator for job in everything] == [f"c{i}" for i in range(10)]
    assert all(len(job.covers) == 3 for job in everything)
    for start in range(12):
        assert list(many.jobs(start)) == everything[start:]
    assert [p.line for p in many.problems()] == list(range(32, 37))


def test_single_job_and_lookup_by_key(many: StagedManifest) -> None:
    everything = list(many.jobs())
    assert [many.job(i) for i in range(10)] == everything
    assert many.job_by_key("c7") == everything[7]
    assert many.job_by_key("nobody") is None
    for ordinal in (-1, 10):
        with pytest.raises(IndexError, match=f"no job {ordinal}: 10 jobs"):
            many.job(ordinal)


def test_a_finished_file_reopens_read_only(many: StagedManifest) -> None:
    expected = list(many.jobs())
    many.close()
    with StagedManifest.open(many.path) as again:
        assert list(again.jobs()) == expected and again.rows_read == 35
        with pytest.raises(StorageError, match="cannot read staged manifest"):
            again._query("DELETE FROM jobs")


def test_an_unfinished_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "half.db"
    sqlite3.connect(path).executescript(sqlite_staging._SCHEMA).close()
    with pytest.raises(StorageError, match="not a complete staged manifest"):
        StagedManifest.open(path)


def test_an_old_scratch_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"not a database")
    with stage_manifest(["creator,url", "Ann,a.jpg"], path=path) as staged:
        assert [job.key for job in staged.jobs()] == [creator_key("Ann")]


def test_input_errors_come_before_any_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="empty CSV"):
        stage_manifest([], path=tmp_path / "s.db")
    with pytest.raises(ValueError, match="max_covers_per_creator"):
        stage_manifest(["creator,url"], path=tmp_path / "s.db", max_covers_per_creator=0)
    assert not (tmp_path / "s.db").exists()


def test_sqlite_failures_become_storage_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot create staged manifest"):
        stage_manifest(["creator,url"], path=tmp_path / "missing" / "s.db")


def test_a_failed_staging_leaves_no_file(tmp_path: Path) -> None:
    def lines() -> Iterator[str]:
        yield "creator,url\n"
        yield "Ann,a.jpg\n"
        raise OSError("connection reset while reading the CSV")

    with pytest.raises(OSError, match="connection reset"):
        stage_manifest(lines(), path=tmp_path / "s.db")
    assert list(tmp_path.iterdir()) == []


@settings(max_examples=200, deadline=None)
@given(st.one_of(TEXTS, st.binary(max_size=300).map(lambda data: data.decode("latin-1"))))
@example("creator,url," + HUGE + "\nAnn,a.jpg\n")  # issue 10, finding 3
@example('creator,url\nAnn,"' + HUGE + '"\nBo,b.jpg\n')
def test_hostile_text_stages_like_parse_manifest_or_fails_leaving_no_file(text: str) -> None:
    # tmp_path is per test, not per example: one folder per example here.
    with tempfile.TemporaryDirectory() as tmp:
        export, path = Csv(text, None), Path(tmp) / "s.db"
        try:
            parsed = export.parsed()
        except ManifestError as expected:
            with pytest.raises(ManifestError) as raised:
                export.staged(path)
            assert str(raised.value) == str(expected)
            assert not path.exists()
            return
        with export.staged(path) as staged:
            assert_same(staged, parsed)


def test_bytes_that_are_not_utf8_fail_the_staging_and_leave_no_file(tmp_path: Path) -> None:
    data = b"creator,url\n" + b"Ann,https://x/a.jpg\n" * 2_000 + b"Bo,\xff.jpg\n"
    path = tmp_path / "s.db"
    with io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="") as text:
        with pytest.raises(ManifestError, match="not UTF-8 text"):
            stage_manifest(text, path=path)
    assert not path.exists()
