"""Hypothesis strategies for hostile CSV text, shared by the reader and staging tests.

``TEXTS`` joins pieces that steer the csv module into its corners (quotes,
NULs, BOMs, CR/LF variants, every delimiter, a field over the field limit)
with arbitrary text in between::

    @given(TEXTS)
    def test_reader(text: str) -> None: ...
"""

from __future__ import annotations

import csv

from hypothesis import strategies as st

__all__ = ["FIELD_LIMIT", "HUGE", "TEXTS"]

FIELD_LIMIT = csv.field_size_limit()  # 131,072 unless someone raised it
HUGE = "x" * (FIELD_LIMIT + 1)

PIECES = st.sampled_from(
    [
        "creator", "url", "cover_url", ",", ";", "\t", '"', '""', "\r", "\n", "\r\n",
        "\x00", "\ufeff", "\u2028", "\x85", " ", "https://x/a.jpg", "ftp://x", HUGE,
    ]
)  # fmt: skip
TEXTS = st.lists(st.one_of(PIECES, st.text(max_size=20)), max_size=30).map("".join)
