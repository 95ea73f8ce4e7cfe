"""Creator keys are safe, readable and collision-free; output keys follow the layout."""

from __future__ import annotations

import hashlib
import itertools
import unicodedata
from datetime import datetime

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from imgpipe.domain.keys import (
    collage_key,
    creator_key,
    metadata_key,
    summary_key,
    unique_key,
)


def h8(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Ann", "Ann"),
        ("日本語", "日本語"),
        ("Zoë", "Zoë"),
        ("O'Brien & Co.", "O'Brien_&_Co-" + h8("O'Brien & Co.")),
        ("the-artist_2", "the-artist_2"),
        ("Zoë Dance", "Zoë_Dance-" + h8("Zoë Dance")),
        ("a/b", "a_b-" + h8("a/b")),
        ("  Ann  ", "Ann-" + h8("  Ann  ")),
        ("con", "con-" + h8("con")),
        ("LPT1.txt", "LPT1.txt-" + h8("LPT1.txt")),
        ("", h8("")),
        ("..", h8("..")),
        ("deadbeef", "deadbeef-" + h8("deadbeef")),
        ("Alice-0123abcd", "Alice-0123abcd-" + h8("Alice-0123abcd")),
        ("Zoe\u0308", "Zoë-" + h8("Zoe\u0308")),  # not NFC: normalized, and marked as changed
    ],
)
def test_readable_names(name: str, expected: str) -> None:
    assert creator_key(name) == expected


def test_full_hash_variant() -> None:
    digest = hashlib.sha256(b"Ann").hexdigest()
    assert creator_key("Ann", full_hash=True) == f"Ann-{digest}"


def adversarial_names() -> list[str]:
    base = [
        "", " ", "  ", ".", "..", "...", "_", "-", "a", "A", "con", "CON", "nul.txt",
        "a/b", "a_b", "a\\b", "a b", "a  b", "a\tb", "a\nb", "a:b", "a|b", "a?b", "a*b",
        'a"b', "a<b>", "/", "//", "\\", "/etc/passwd", "../x", "a/../../x", "./a", "a.",
        ".a", "_a_", "a\x00b", "ab", "a\x00", "\x00", "\u200fabc", "abc\u200f", "\u202eabc",
        "\ufeffabc", "abc", "a\u200bb", "😀", "😀😀", "👩‍👩‍👧", "e\u0301", "é", "Zoë",
        "Zoe\u0308", "日本語", "日本 語", "x-deadbeef", "deadbeef", "0123456789abcdef",
        "a\ud800b", "\u2028", "a\u00a0b", "COM1", "com1.", "Ann", "ann", "ANN",
    ]  # fmt: skip
    prefix = "p" * 200
    long = [prefix + str(i) * 100 for i in range(10)] + [prefix, prefix + "/"]
    wide = ["日" * 40 + str(i) for i in range(5)] + ["😀" * 30 + "x", "😀" * 30 + "y"]
    mixed = ["".join(p) for p in itertools.product(["a", "/", "_", " ", ".", "\x01"], repeat=3)]
    return list(dict.fromkeys(base + long + wide + mixed))


def test_adversarial_names_give_distinct_safe_keys() -> None:
    names = adversarial_names()
    keys = [creator_key(name) for name in names]
    assert len(set(keys)) == len(names)
    for name, key in zip(names, keys, strict=True):
        assert key, name
        assert key not in (".", "..")
        assert "/" not in key and "\\" not in key
        assert not any(unicodedata.category(ch).startswith("C") for ch in key), repr(key)
        assert not key.startswith((".", " ")) and not key.endswith((".", " "))
        assert len(key.encode("utf-8")) <= 120, repr(name)
        assert unicodedata.is_normalized("NFC", key)
        assert creator_key(name) == key  # deterministic
    full = {creator_key(name, full_hash=True) for name in names}
    assert len(full) == len(names) and not full & set(keys)
    assert all(len(k.encode()) <= 120 for k in full)


def test_long_names_are_cut_on_a_character_boundary() -> None:
    key = creator_key("é" * 300)
    assert key == "é" * 50 + "-" + h8("é" * 300)
    assert key.encode("utf-8").decode("utf-8") == key


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        (0, "collages/by-creator/Ann/collage_20260102_030405.jpg"),
        (1, "collages/by-creator/Ann/collage_20260102_030405_1.jpg"),
        (12, "collages/by-creator/Ann/collage_20260102_030405_12.jpg"),
    ],
)
def test_collage_key(suffix: int, expected: str) -> None:
    assert collage_key("Ann", datetime(2026, 1, 2, 3, 4, 5, 999), suffix) == expected


def test_document_keys() -> None:
    assert metadata_key("20260102-030405-1a2b3c4d", "Zoë") == (
        "results/metadata/20260102-030405-1a2b3c4d/Zoë.json"
    )
    assert summary_key("b_1-x") == "results/processing-summaries/b_1-x.json"


@pytest.mark.parametrize("batch_id", ["", "a/b", "../x", "a b", "ü", "a.b", "x\n"])
def test_invalid_batch_ids_are_refused(batch_id: str) -> None:
    with pytest.raises(ValueError, match="batch id"):
        summary_key(batch_id)
    with pytest.raises(ValueError, match="batch id"):
        metadata_key(batch_id, "Ann")


@pytest.mark.parametrize("creator", ["", ".", "..", "a/b", "a\\b"])
def test_raw_names_are_refused_where_a_key_is_expected(creator: str) -> None:
    with pytest.raises(ValueError, match="creator key"):
        collage_key(creator, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="creator key"):
        metadata_key("b1", creator)


def test_negative_suffix_is_refused() -> None:
    with pytest.raises(ValueError, match="suffix"):
        collage_key("Ann", datetime(2026, 1, 1), -1)


# -- property-based: no name escapes its folder (issue 10, finding 3) -----------

# Every kind of character a CSV can carry, weighted towards the dangerous ones.
DANGEROUS = st.sampled_from(
    ["/", "\\", ".", "..", " ", "\x00", "\n", "\r", "\t", "\x7f", "\u200d", "\u202e", "\ufeff",
     "\u0301", "e\u0301", "\u00a0", "\u2028", ":", "*", "?", "CON", "-", "deadbeef"]
)  # fmt: skip
NAMES = st.lists(st.one_of(DANGEROUS, st.text(max_size=8)), max_size=12).map("".join)


def assert_safe_key(key: str) -> None:
    assert key and key not in (".", "..")
    assert "/" not in key and "\\" not in key
    assert not any(unicodedata.category(ch).startswith("C") for ch in key), repr(key)
    assert key == key.strip(" ."), repr(key)
    assert unicodedata.is_normalized("NFC", key), repr(key)
    assert len(key.encode("utf-8")) <= 120
    # The key is one segment under its folder, wherever the layout puts it.
    when = datetime(2026, 1, 2, 3, 4, 5)
    assert collage_key(key, when).split("/")[2] == key
    assert metadata_key("b1", key) == f"results/metadata/b1/{key}.json"


@given(NAMES)
@example("e\u200d\u0301")  # a format character between a letter and its accent
def test_any_name_gives_a_key_that_stays_in_its_folder(name: str) -> None:
    assert_safe_key(creator_key(name))
    assert_safe_key(creator_key(name, full_hash=True))


@given(st.lists(NAMES, unique=True, max_size=30))
@example(["Ann", "ann", "ANN", "a/b", "a_b", "Straße", "STRASSE", "deadbeef", ""])
def test_distinct_names_get_distinct_keys_ignoring_case(names: list[str]) -> None:
    taken: set[str] = set()
    keys = [unique_key(name, taken) for name in names]
    assert len({key.casefold() for key in keys}) == len(names)
    for key in keys:
        assert_safe_key(key)
    # The same names in the same order give the same keys (every reader agrees).
    again: set[str] = set()
    assert [unique_key(name, again) for name in names] == keys
