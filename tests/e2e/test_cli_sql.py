"""``imgpipe run --from-sql`` and ``imgpipe export-csv`` as a user runs them.

Real processes against the session's MariaDB server (tests/support/mariadb.py)
or a SQLite file: a query renders exactly what the same rows render from a CSV,
an interrupted query batch continues on the rerun, the password shows nowhere,
and an export (to a file, or to S3 on moto) is a CSV the normal flow reads.
"""

from __future__ import annotations

import csv
import hashlib
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from imgpipe.entrypoints.api.app import create_app
from imgpipe.entrypoints.cli import app
from imgpipe.settings import Settings
from tests.e2e.test_chaos_local import (
    ALLOW,
    CELL,
    Cli,
    assert_one_valid_collage_each,
    batches,
    final_creators,
    mid_batch,
    serve_corpus,
    wait_for,
)
from tests.e2e.test_cli_extras import run_without
from tests.e2e.test_cli_local import imgpipe, write_csv
from tests.integration.api.conftest import api_settings
from tests.support.api_server import ApiServer
from tests.support.aws import AWS_ENV, client
from tests.support.http_server import FaultServer
from tests.support.images import jpeg
from tests.support.mariadb import PASSWORD, MariaDB, load_covers

pytestmark = pytest.mark.slow
SELECT = "SELECT creator_name, cover_url FROM covers ORDER BY id"


def covers_on_disk(folder: Path) -> list[tuple[str | None, str | None]]:
    """Rows of three creators with covers on disk (absolute paths), and three bad rows."""
    folder.mkdir()
    rows: list[tuple[str | None, str | None]] = []
    for index, (creator, count) in enumerate([("Ann", 9), ("Bo", 3), ("café/paris", 5)]):
        for slot in range(count):
            path = folder / f"{index}-{slot}.jpg"
            path.write_bytes(jpeg((40 * slot % 256, 90 * index % 256, 120)))
            rows.append((creator, str(path)))
    rows.insert(2, (None, str(folder / "0-0.jpg")))  # result row 3: no creator
    rows.insert(5, ("Bo", "ftp://example.com/x.jpg"))  # result row 6
    rows.append(("Ann", str(folder / "0-1.jpg")))  # a duplicate
    return rows


def rendered(summary: dict[str, Any], out: Path) -> dict[str, tuple[Any, ...]]:
    """creator -> what was rendered: key, status, covers used, fingerprint, collage bytes."""
    with sqlite3.connect(f"file:{out / 'state.db'}?mode=ro", uri=True) as db:
        fingerprints = dict(
            db.execute(
                "SELECT creator_name, fingerprint FROM creators WHERE batch_id = ?",
                (summary["batch_id"],),
            ).fetchall()
        )
    found = {}
    for creator in summary["creators"]:
        collage = (out / creator["collage_key"]).read_bytes()
        found[creator["creator"]] = (
            creator["key"], creator["status"], creator["images_used"],
            fingerprints[creator["key"]], hashlib.sha256(collage).hexdigest(),
        )  # fmt: skip
    assert all(fingerprint for _, _, _, fingerprint, _ in found.values())
    return found


def files_holding(folder: Path, secret: str) -> list[Path]:
    return [
        path
        for path in folder.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]


@pytest.mark.mariadb
def test_a_query_renders_what_the_same_rows_render_from_a_csv(
    mariadb_url: str, tmp_path: Path
) -> None:
    rows = covers_on_disk(tmp_path / "covers")
    load_covers(mariadb_url, rows)
    csv_path = write_csv(
        tmp_path / "same.csv", [("" if c is None else c, u or "") for c, u in rows],
        header=("creator_name", "cover_url"),
    )  # fmt: skip
    args = ("--json", "--cell", "40")

    from_csv = imgpipe("run", csv_path, "--out", tmp_path / "a", *args)
    # The URL from the environment: no password in argv
    env = {"IMGPIPE_SQL_URL": mariadb_url}
    from_sql = imgpipe("run", "--query", SELECT, "--out", tmp_path / "b", *args, env=env)

    assert from_csv.returncode == from_sql.returncode == 0, from_sql.stderr
    csv_summary, sql_summary = json.loads(from_csv.stdout), json.loads(from_sql.stdout)
    assert rendered(sql_summary, tmp_path / "b") == rendered(csv_summary, tmp_path / "a")
    assert sql_summary["totals"]["completed"] == 3
    assert sql_summary["totals"]["duplicate_rows"] == csv_summary["totals"]["duplicate_rows"] == 1
    # the same problems, counted as result rows (from 1) instead of lines (header = 1)
    assert (
        [(p["line"], p["reason"]) for p in sql_summary["row_problems"]]
        == [(p["line"] - 1, p["reason"]) for p in csv_summary["row_problems"]]
        == [(3, "missing_creator"), (6, "unsupported_scheme")]
    )
    assert sql_summary["source"].startswith("sql:mysql+pymysql://imgpipe:***@127.0.0.1:")
    assert sql_summary["source"].endswith(SELECT)

    # A rerun with the URL on the command line: unchanged, and problems named by result row
    again = imgpipe("run", "--from-sql", mariadb_url, "--query", SELECT, "--out", tmp_path / "b")
    assert again.returncode == 0, again.stderr
    assert "result row 3: skipped (missing_creator)" in again.stdout
    assert "result row 6: skipped (unsupported_scheme) ftp://example.com/x.jpg" in again.stdout
    for run in (from_sql, again):
        assert PASSWORD not in run.stdout + run.stderr
    assert files_holding(tmp_path / "b", PASSWORD) == []  # state.db, summaries, gallery


@pytest.mark.mariadb
def test_an_interrupted_query_batch_continues_on_the_rerun(
    mariadb_url: str, tmp_path: Path
) -> None:
    """The batch identity is the digest of the rows streamed: the same query continues."""
    out = tmp_path / "out"
    cli = Cli(tmp_path, out)
    cli.env["IMGPIPE_SQL_URL"] = mariadb_url
    with FaultServer() as server:
        corpus = serve_corpus(server, tmp_path / "corpus.csv", [4] * 16)
        with corpus.csv.open(newline="") as stream:
            load_covers(mariadb_url, [tuple(row) for row in list(csv.reader(stream))[1:]])
        args = (
            "run", "--query", SELECT,
            "--out", out, "--json", "--quiet", "--workers", "4", "--cell", str(CELL),
            "--retries", "0", *ALLOW,
        )  # fmt: skip
        first = cli.start(*args)
        wait_for(mid_batch(out, 3), first, "3 creators final")
        assert first.signal(signal.SIGTERM) == 143, first.stderr
        [(batch_id, status)] = batches(out)
        assert status == "interrupted" and 3 <= len(final_creators(out)) < 16
        last = cli.run(*args)
    assert last.code == 0, last.stderr
    summary = last.summary()
    assert summary["batch_id"] == batch_id and summary["totals"]["completed"] == 16
    assert batches(out) == [(batch_id, "completed")]
    assert_one_valid_collage_each(out, corpus)


@pytest.mark.mariadb
def test_a_wrong_password_shows_nowhere(mariadb: MariaDB, mariadb_url: str, tmp_path: Path) -> None:
    wrong = "Wr0ng/Secret@pw"
    url = mariadb.url(mariadb_url.rsplit("/", 1)[1], password=wrong)
    runs = [
        imgpipe("run", "--from-sql", url, "--query", SELECT, "--out", tmp_path / "o"),
        imgpipe("run", "--query", SELECT, "--out", tmp_path / "o", env={"IMGPIPE_SQL_URL": url}),
        imgpipe("export-csv", "--from-sql", url, "--query", SELECT, "--out", tmp_path / "x.csv"),
    ]
    for run in runs:
        assert run.returncode == 4, run.stderr  # the source failed, not the input
        assert "cannot connect to mysql+pymysql://imgpipe:***@127.0.0.1:" in run.stderr
        assert "Access denied" in run.stderr and "Traceback" not in run.stderr
        for secret in (wrong, "Wr0ng%2FSecret%40pw", PASSWORD):
            assert secret not in run.stdout + run.stderr
    assert files_holding(tmp_path, wrong) == []
    assert not (tmp_path / "x.csv").exists()


def test_the_flags_choose_one_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg((200, 0, 0)))
    db = f"sqlite:///{tmp_path / 'c.db'}"
    load_covers(db, [("Ann", str(tmp_path / "a.jpg"))])
    csv_path = str(write_csv(tmp_path / "in.csv", [("x", "a.jpg")]))
    out = ["--out", str(tmp_path / "o")]
    cases = [
        ([], "give a CSV file, or a query"),
        ([csv_path, "--query", SELECT], "not both"),
        (["--from-sql", db], "--from-sql needs --query"),
        (["--query", SELECT], "--query needs a database: --from-sql URL or IMGPIPE_SQL_URL"),
        (["--from-sql", db, "--query", "SELECT id FROM covers"], "no creator column"),
        (["--from-sql", db, "--query", "SELECT * FROM nope"], "SQL query failed on sqlite:///"),
    ]
    # In process (a subprocess each costs seconds on a busy machine); the run below is real.
    monkeypatch.delenv("IMGPIPE_SQL_URL", raising=False)
    monkeypatch.setenv("COLUMNS", "300")
    for args, message in cases:
        done = CliRunner().invoke(app, ["run", *args, *out])
        assert done.exit_code == 2, (args, done.output)
        assert message in done.output, (args, done.output)
        assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    ok = imgpipe("run", "--from-sql", db, "--query", SELECT, *out, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["totals"]["completed"] == 1


def test_without_the_sql_extra_a_csv_runs_and_a_query_names_the_extra(tmp_path: Path) -> None:
    """SQLAlchemy is imported only when a query runs: a CSV run never needs it."""
    (tmp_path / "a.jpg").write_bytes(jpeg((200, 0, 0)))
    csv_path = write_csv(tmp_path / "in.csv", [("x", str(tmp_path / "a.jpg"))])
    env = {"IMGPIPE_DATA_DIR": str(tmp_path / "data")}
    plain = run_without(["sqlalchemy"], "run", str(csv_path), "--out", str(tmp_path / "o"), env=env)
    assert plain.returncode == 0, plain.stderr
    for command in ("run", "export-csv"):
        extra = ["--out", str(tmp_path / "x.csv")] if command == "export-csv" else []
        done = run_without(
            ["sqlalchemy"], command, "--from-sql", "sqlite://", "--query", "SELECT 1", *extra
        )
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "needs the 'sql' extra" in done.stderr and "[sql]" in done.stderr


@pytest.mark.mariadb
def test_export_csv_to_a_file_then_run_it(mariadb_url: str, tmp_path: Path) -> None:
    rows = covers_on_disk(tmp_path / "covers")
    load_covers(mariadb_url, rows)
    target = tmp_path / "export.csv"
    done = imgpipe(
        "export-csv", "--query", "SELECT id, creator_name, cover_url FROM covers ORDER BY id",
        "--out", target, env={"IMGPIPE_SQL_URL": mariadb_url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"exported {len(rows)} rows to {target}" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    with target.open(newline="", encoding="utf-8") as stream:
        exported = list(csv.reader(stream))
    assert exported[0] == ["id", "creator_name", "cover_url"]
    assert [(c, u) for _, c, u in exported[1:]] == [(c or "", u or "") for c, u in rows]

    from_export = imgpipe("run", target, "--out", tmp_path / "a", "--json", "--cell", "40")
    from_sql = imgpipe(
        "run", "--from-sql", mariadb_url, "--query", SELECT, "--out", tmp_path / "b",
        "--json", "--cell", "40",
    )  # fmt: skip
    assert from_export.returncode == from_sql.returncode == 0, from_export.stderr
    assert rendered(json.loads(from_export.stdout), tmp_path / "a") == rendered(
        json.loads(from_sql.stdout), tmp_path / "b"
    )

    # A query the run would refuse is refused before a file is written
    bad = imgpipe(
        "export-csv", "--from-sql", mariadb_url, "--query", "SELECT id FROM covers",
        "--out", tmp_path / "bad.csv",
    )  # fmt: skip
    assert bad.returncode == 2 and "no creator column" in bad.stderr
    assert "--creator-column" in bad.stderr and not (tmp_path / "bad.csv").exists()


@pytest.mark.mariadb
def test_export_csv_to_s3_feeds_the_normal_flow(
    mariadb_url: str, aws: Settings, tmp_path: Path
) -> None:
    rows = covers_on_disk(tmp_path / "covers")
    load_covers(mariadb_url, rows)
    s3 = client(aws, "s3")
    s3.create_bucket(Bucket="input")
    env = {**AWS_ENV, "IMGPIPE_AWS_ENDPOINT_URL": aws.aws_endpoint_url}
    named = imgpipe(
        "export-csv", "--from-sql", mariadb_url, "--query", SELECT,
        "--out", "s3://input/csv-files/covers.csv", env=env,
    )  # fmt: skip
    prefixed = imgpipe(
        "export-csv", "--from-sql", mariadb_url, "--query", SELECT,
        "--out", "s3://input/csv-files/", env=env,
    )  # fmt: skip
    assert named.returncode == prefixed.returncode == 0, named.stderr + prefixed.stderr
    assert f"exported {len(rows)} rows to s3://input/csv-files/covers.csv" in named.stderr
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="input")["Contents"])
    assert len(keys) == 2 and "csv-files/covers.csv" in keys
    [generated] = [k for k in keys if k != "csv-files/covers.csv"]
    assert generated.startswith("csv-files/export_") and generated.endswith(".csv")
    head = s3.head_object(Bucket="input", Key="csv-files/covers.csv")
    assert head["ContentType"] == "text/csv" and head["ServerSideEncryption"] == "AES256"

    body = s3.get_object(Bucket="input", Key="csv-files/covers.csv")["Body"].read()
    assert body == s3.get_object(Bucket="input", Key=generated)["Body"].read()
    downloaded = tmp_path / "from-s3.csv"
    downloaded.write_bytes(body)
    run = imgpipe("run", downloaded, "--out", tmp_path / "o", "--json", "--cell", "40")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert {c["creator"] for c in summary["creators"]} == {"Ann", "Bo", "café/paris"}
    assert summary["totals"]["completed"] == 3


def test_the_summary_says_what_its_line_numbers_count(tmp_path: Path) -> None:
    """``line`` stays the key for CSV consumers; ``line_kind`` says it is a result row."""
    good, gone = tmp_path / "a.jpg", tmp_path / "gone.jpg"
    good.write_bytes(jpeg((200, 0, 0)))
    rows = [("Ann", str(good)), (None, str(good)), ("Ann", str(gone))]
    db = f"sqlite:///{tmp_path / 'c.db'}"
    load_covers(db, rows)
    csv_path = write_csv(
        tmp_path / "same.csv", [("" if c is None else c, u) for c, u in rows],
        header=("creator_name", "cover_url"),
    )  # fmt: skip
    env = {"IMGPIPE_DATA_DIR": str(tmp_path / "data")}
    from_sql = imgpipe(
        "run", "--from-sql", db, "--query", SELECT, "--out", tmp_path / "b", "--json", env=env
    )
    from_csv = imgpipe("run", csv_path, "--out", tmp_path / "a", "--json", env=env)

    assert from_sql.returncode == from_csv.returncode == 0, from_sql.stderr + from_csv.stderr
    sql_summary, csv_summary = json.loads(from_sql.stdout), json.loads(from_csv.stdout)
    assert (sql_summary["line_kind"], csv_summary["line_kind"]) == ("result_row", "csv_line")
    # the same rows: result rows count from the first row returned, lines from the header
    assert [p["line"] for p in sql_summary["row_problems"]] == [2]
    assert [p["line"] for p in csv_summary["row_problems"]] == [3]
    assert [f["line"] for f in sql_summary["failed_urls"]] == [3]
    assert [f["line"] for f in csv_summary["failed_urls"]] == [4]
    (part,) = sql_summary["failed_url_files"]
    assert json.loads((tmp_path / "b" / part).read_text())["line"] == 3
    # the gallery's tables name the column the same way
    assert "<th>result row</th>" in (tmp_path / "b" / "index.html").read_text()
    assert "<th>result row</th>" not in (tmp_path / "a" / "index.html").read_text()
    assert "<th>line</th>" in (tmp_path / "a" / "index.html").read_text()
    # and so do the API and the dashboard serving those output folders
    for out, summary, kind, heading in (
        ("b", sql_summary, "result_row", "Query result rows skipped"),
        ("a", csv_summary, "csv_line", "CSV rows skipped"),
    ):
        app = create_app(api_settings(), out_dir=tmp_path / out)
        with ApiServer(app) as server:
            batch = httpx.get(server.url(f"/v1/batches/{summary['batch_id']}")).json()
            page = httpx.get(server.url(f"/batches/{summary['batch_id']}")).text
        assert batch["line_kind"] == kind
        assert batch["row_problems"] == summary["row_problems"]
        assert heading in page
