"""What a Python user expects of the ``imgpipe`` command: a version, completion, plain
help, Excel's CSVs, a dry run. Each test runs the real command in a subprocess."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from imgpipe.entrypoints.cli import app
from tests.e2e.test_cli_local import REPO, imgpipe
from tests.support.covers import RED, solid_jpeg
from tests.support.http_server import FaultServer, Serve
from tests.support.images import jpeg

ALLOW = ("--allow-private-networks", "127.0.0.0/8")


def command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand of the CLI, as argument paths (() is the root)."""
    paths = [path]
    if hasattr(command, "commands"):  # a group (typer's own click, not click.Group)
        for name, sub in command.commands.items():
            paths += command_paths(sub, (*path, name))
    return paths


def test_version_is_the_installed_metadata() -> None:
    result = imgpipe("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"imgpipe {importlib.metadata.version('imgpipe')}"


def test_help_shows_flags_as_flags_and_no_rst_markup() -> None:
    paths = command_paths(typer.main.get_command(app))
    assert {("run",), ("status",), ("serve",), ("dlq", "list")} <= set(paths)
    for path in paths:
        result = imgpipe(*path, "--help", env={"COLUMNS": "100"})
        assert result.returncode == 0, (path, result.stderr)
        assert "``" not in result.stdout, (path, result.stdout)
        assert "<bool>" not in result.stdout, (path, result.stdout)
    run_help = imgpipe("run", "--help", env={"COLUMNS": "100"}).stdout
    for flag in ("--force", "--quiet", "--json", "--dry-run"):
        (line,) = [line for line in run_help.splitlines() if f"{flag} " in line]
        assert not line.split(flag, 1)[1].lstrip().startswith("<"), line  # takes no value
    assert "--encoding <str>" in run_help


def test_shell_completion_prints_a_bash_script() -> None:
    # --show-completion detects the shell it runs under (the parent process), so it
    # runs under bash here; `; true` keeps bash from exec-ing imgpipe in its place.
    shown = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m imgpipe --show-completion; true"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert "complete -o" in shown.stdout and "COMP_WORDS" in shown.stdout, shown.stderr
    # The script for a named shell, whatever runs the command (Click's protocol, keyed
    # by the program's name: the installed `imgpipe` command).
    named = subprocess.run(
        [str(Path(sys.executable).parent / "imgpipe")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "_IMGPIPE_COMPLETE": "source_bash"},
    )
    assert "complete -o" in named.stdout and "_imgpipe_completion" in named.stdout, named.stderr


def write_covers(folder: Path) -> None:
    for shade, name in enumerate(("a.jpg", "b.jpg", "c.jpg")):
        (folder / name).write_bytes(jpeg((200, 60 * shade, 30)))  # three different covers


def excel_csv(path: Path, encoding: str, rows: list[tuple[str, str]]) -> Path:
    text = "\r\n".join(["creator;url", *(f"{c};{u}" for c, u in rows), ""])
    path.write_bytes(text.encode(encoding))
    return path


def test_a_cp1252_csv_renders_with_the_right_names(tmp_path: Path) -> None:
    write_covers(tmp_path)
    rows = [("Zoë", "a.jpg"), ("Zoë", "b.jpg"), ("€uro Fan", "c.jpg")]
    csv_path = excel_csv(tmp_path / "excel.csv", "cp1252", rows)
    out = tmp_path / "out"

    result = imgpipe("run", csv_path, "--out", out, "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    by_name = {c["creator"]: c for c in summary["creators"]}
    assert set(by_name) == {"Zoë", "€uro Fan"}
    assert by_name["Zoë"]["images_used"] == 2
    for creator in by_name.values():
        assert (out / creator["collage_key"]).is_file()
    assert "cp1252" in result.stderr  # says how it read the file


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-8-sig", "utf-16"])
def test_dry_run_reads_each_excel_encoding(tmp_path: Path, encoding: str) -> None:
    csv_path = excel_csv(tmp_path / "x.csv", encoding, [("Zoë", "a.jpg"), ("Müller", "b.jpg")])
    result = imgpipe("run", csv_path, "--dry-run", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    preview = json.loads(result.stdout)
    assert [c["creator"] for c in preview["creators"]] == ["Zoë", "Müller"]


def test_encoding_flag_overrides_detection_and_a_bad_name_is_exit_2(tmp_path: Path) -> None:
    # UTF-8 bytes of "Zoë", named Latin-1: read as the two characters "Ã«", as asked.
    csv_path = excel_csv(tmp_path / "x.csv", "utf-8", [("Zoë", "a.jpg")])
    named = imgpipe("run", csv_path, "--dry-run", "--json", "--encoding", "latin-1")
    detected = imgpipe("run", csv_path, "--dry-run", "--json")
    bad = imgpipe("run", csv_path, "--dry-run", "--encoding", "klingon")

    assert json.loads(named.stdout)["creators"][0]["creator"] == "ZoÃ«"
    assert json.loads(named.stdout)["encoding"] == "iso8859-1"
    assert json.loads(detected.stdout)["creators"][0]["creator"] == "Zoë"
    assert bad.returncode == 2 and "unknown text encoding 'klingon'" in bad.stderr


def test_a_byte_that_breaks_after_the_first_megabyte_is_exit_2_naming_its_line(
    tmp_path: Path,
) -> None:
    row = "Zoë;https://cdn.example/a.jpg\r\n".encode()
    count = (1 << 20) // len(row) + 10
    csv_path = tmp_path / "late.csv"
    csv_path.write_bytes(b"creator;url\r\n" + row * count + b"Bo\x80\xff;b.jpg\r\n")

    result = imgpipe("run", csv_path, "--out", tmp_path / "out", env={"COLUMNS": "250"})

    assert result.returncode == 2, result.stderr
    assert f"line {count + 2}: byte 0x80 is not utf-8 text" in result.stderr
    assert "late.csv" in result.stderr and "Traceback" not in result.stderr


def test_dry_run_fetches_nothing_and_records_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with FaultServer() as server:
        red = server.add("/red.jpg", Serve(solid_jpeg(RED)))
        rows = [("alice", red), ("alice", red), ("bob", server.url("/b.jpg")), ("", red)]
        csv_path = excel_csv(tmp_path / "c.csv", "utf-8", [*rows, ("carol", "ftp://x/y")])
        as_json = imgpipe("run", csv_path, "--out", out, "--dry-run", "--json", *ALLOW)
        as_table = imgpipe("run", csv_path, "--out", out, "--dry-run", *ALLOW)
        hits = server.hits()

    assert as_json.returncode == 0 and as_table.returncode == 0, as_json.stderr
    assert hits == 0
    assert not out.exists()  # no state, no staging, no folder
    preview = json.loads(as_json.stdout)
    assert [(c["creator"], c["covers"]) for c in preview["creators"]] == [("alice", 1), ("bob", 1)]
    assert (preview["rows_read"], preview["duplicate_rows"], preview["problem_count"]) == (5, 1, 2)
    assert {(p["line"], p["reason"]) for p in preview["problems"]} == {
        (5, "missing_creator"),
        (6, "unsupported_scheme"),
    }
    for text in ("alice", "bob", "missing_creator", "unsupported_scheme", "nothing fetched"):
        assert text in as_table.stdout


def test_downloads_carry_the_installed_version_in_their_user_agent(tmp_path: Path) -> None:
    with FaultServer() as server:
        csv_path = excel_csv(
            tmp_path / "c.csv", "utf-8", [("alice", server.add("/a.jpg", Serve(solid_jpeg(RED))))]
        )
        result = imgpipe("run", csv_path, "--out", tmp_path / "out", "--json", *ALLOW)
        (request,) = server.requests("/a.jpg")

    assert result.returncode == 0, result.stderr
    version = importlib.metadata.version("imgpipe")
    assert request.headers["User-Agent"].startswith(f"imgpipe/{version} (+https://")
