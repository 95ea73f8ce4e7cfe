"""domain/csv_text.py: Excel's encodings detected or named; a bad byte names its line."""

from __future__ import annotations

import io

import pytest

from imgpipe.domain.csv_text import SNIFF_BYTES, check_encoding, csv_text
from imgpipe.domain.manifest import parse_manifest
from imgpipe.errors import ConfigError, ManifestError

NAMES = ["Zoë Müller", "José Ñandú", "François Café"]


def excel_csv(encoding: str, names: list[str] = NAMES, newline: str = "\r\n") -> bytes:
    """What Excel writes: a header and one row per creator, CRLF line ends."""
    lines = ["creator;url"] + [
        f"{name};https://cdn.example/{i}.jpg" for i, name in enumerate(names)
    ]
    return newline.join([*lines, ""]).encode(encoding)


def creators(data: bytes, encoding: str | None = None) -> list[str]:
    return [job.creator for job in parse_manifest(csv_text(io.BytesIO(data), encoding)).jobs]


@pytest.mark.parametrize(
    ("written", "expected_codec"),
    [
        ("cp1252", "cp1252"),
        ("latin-1", "cp1252"),  # cp1252 reads every Latin-1 letter the same
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),  # Excel's "CSV UTF-8": a BOM
        ("utf-16", "utf-16"),  # Excel's "Unicode text": UTF-16 with a BOM
    ],
)
def test_excel_encodings_are_read_with_the_right_names(written: str, expected_codec: str) -> None:
    data = excel_csv(written)
    assert creators(data) == NAMES
    assert csv_text(io.BytesIO(data)).encoding == expected_codec


def test_the_euro_sign_of_cp1252_is_read() -> None:
    data = excel_csv("cp1252", ["Zoë", "€ Euro Fan"])
    assert creators(data) == ["Zoë", "€ Euro Fan"]


def test_a_named_encoding_wins_over_detection() -> None:
    # Named, the name is read as written, even where detection would say otherwise.
    assert creators(excel_csv("utf-8", ["Иван"]), "latin-1") == ["Ð\x98Ð²Ð°Ð½"]
    assert creators(excel_csv("cp1251", ["Иван"]), "cp1251") == ["Иван"]
    # "utf-8" named for a file with a BOM: the BOM is not part of the header
    assert creators(excel_csv("utf-8-sig"), "UTF8") == NAMES


def test_an_unknown_encoding_name_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="unknown text encoding 'klingon'"):
        check_encoding("klingon")


def test_a_bad_byte_after_the_first_megabyte_names_its_line() -> None:
    row = "Zoë;https://cdn.example/a.jpg\n".encode()
    rows = SNIFF_BYTES // len(row) + 500  # the bad row is well past the first megabyte
    data = b"creator;url\n" + row * rows + b"Bo\xff;https://cdn.example/b.jpg\n" + row
    with pytest.raises(ManifestError) as raised:
        parse_manifest(csv_text(io.BytesIO(data)))
    assert f"line {rows + 2}: byte 0xff is not utf-8 text" in str(raised.value)
    assert "--encoding" in str(raised.value)


def test_a_bad_byte_on_a_line_split_across_blocks_still_names_its_line() -> None:
    head = b"creator,url\n" + b"a,b\r\n" * ((SNIFF_BYTES - 12) // 5)
    # the first block ends inside this line; its bad byte is in the second block
    data = head + b"x" * 10 + b"\r" + b"\n" + b"Zo\xc3" + b"\x28" + b",c\n"
    lines_before = head.count(b"\n") + 1
    with pytest.raises(ManifestError, match=rf"^line {lines_before + 1}: byte 0xc3"):
        list(csv_text(io.BytesIO(data), "utf-8"))


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_lines_keep_their_endings_across_blocks(newline: str) -> None:
    names = [f"creator{i}" for i in range(SNIFF_BYTES // 20)]  # more than one block
    data = excel_csv("utf-8", names, newline)
    lines = list(csv_text(io.BytesIO(data)))
    assert "".join(lines).encode() == data
    assert all(line.endswith(newline) for line in lines)
    assert len(lines) == len(names) + 1
