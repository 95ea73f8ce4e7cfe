"""Classifying source strings and reading local files (real temporary files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imgpipe.errors import FetchError
from imgpipe.fetch.sources import (
    SourceKind,
    classify_source,
    local_path,
    read_local_file,
    source_scheme,
)


@pytest.mark.parametrize(
    ("text", "scheme", "kind"),
    [
        ("http://cdn.example.com/a.jpg", "http", SourceKind.REMOTE),
        ("HTTPS://cdn.example.com/a.jpg", "https", SourceKind.REMOTE),
        ("  https://cdn.example.com/a.jpg  ", "https", SourceKind.REMOTE),
        ("file:///srv/covers/a.jpg", "file", SourceKind.LOCAL),
        ("covers/a.jpg", "", SourceKind.LOCAL),
        ("/srv/covers/a.jpg", "", SourceKind.LOCAL),
        ("./a:b.jpg", "", SourceKind.LOCAL),
        ("C:\\covers\\a.jpg", "", SourceKind.LOCAL),  # a drive letter, not a scheme
        ("c:/covers/a.jpg", "", SourceKind.LOCAL),
        ("a.jpg?v=1:2", "", SourceKind.LOCAL),
        ("ftp://files.example.com/a.jpg", "ftp", SourceKind.UNSUPPORTED),
        ("data:image/png;base64,AAAA", "data", SourceKind.UNSUPPORTED),
        ("JavaScript:alert(1)", "javascript", SourceKind.UNSUPPORTED),
        ("s3://bucket/key.jpg", "s3", SourceKind.UNSUPPORTED),
        ("svn+ssh://host/x", "svn+ssh", SourceKind.UNSUPPORTED),
    ],
)
def test_scheme_and_kind(text: str, scheme: str, kind: SourceKind) -> None:
    assert source_scheme(text) == scheme
    assert classify_source(text) is kind


def test_local_path_forms(tmp_path: Path) -> None:
    assert local_path("a.jpg", tmp_path) == tmp_path / "a.jpg"
    assert local_path("sub/a.jpg", tmp_path) == tmp_path / "sub" / "a.jpg"
    assert local_path("/abs/a.jpg", tmp_path) == Path("/abs/a.jpg")
    assert local_path("file:///abs/a%20b.jpg", tmp_path) == Path("/abs/a b.jpg")
    assert local_path("file://localhost/abs/a.jpg") == Path("/abs/a.jpg")
    assert local_path("a.jpg") == Path.cwd() / "a.jpg"
    assert local_path("a.jpg", Path("relative")).is_absolute()


@pytest.mark.parametrize("text", ["file://fileserver/share/a.jpg", "file://", "  "])
def test_unusable_local_sources(text: str) -> None:
    with pytest.raises(FetchError) as caught:
        local_path(text)
    assert caught.value.reason == "invalid_url"


def test_read_local_file(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100)
    assert read_local_file(path, 100) == b"x" * 100
    with pytest.raises(FetchError) as caught:
        read_local_file(path, 99)
    assert (caught.value.reason, caught.value.detail) == (
        "too_large",
        "file is 100 bytes, limit is 99",
    )


def test_read_local_file_past_its_stat_size() -> None:
    # /proc files are regular files whose fstat size is 0: what is read past the
    # size fstat gave is kept (a file that grew), and still bounded by the limit.
    status = Path("/proc/self/status")
    data = read_local_file(status, 1 << 20)
    assert data.startswith(b"Name:") and b"\nPid:" in data
    with pytest.raises(FetchError) as info:
        read_local_file(status, 10)
    assert info.value.reason == "too_large" and "grew past the limit of 10" in info.value.detail


@pytest.mark.parametrize(
    ("name", "reason", "words"),
    [
        ("missing.jpg", "file_not_found", "no such file"),
        ("folder", "file_not_found", "regular file"),
        ("pipe.jpg", "file_not_found", "regular file"),  # must not block on open
        ("nul\x00.jpg", "invalid_url", "unusable path"),
    ],
)
def test_unreadable_local_files(tmp_path: Path, name: str, reason: str, words: str) -> None:
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(FetchError) as caught:
        read_local_file(tmp_path / name, 1000)
    assert caught.value.reason == reason
    assert words in caught.value.detail
