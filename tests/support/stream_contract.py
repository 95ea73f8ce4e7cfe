"""What every ObjectStore's ``open`` and ``get_range`` promise, checked the same way.

The local, in-memory and S3 test files each call these on their own store, so
the three adapters are held to one contract (DESIGN: one suite over every adapter).
"""

from __future__ import annotations

import csv
import io

import pytest

from imgpipe.domain.manifest import parse_manifest
from imgpipe.errors import StorageError
from imgpipe.ports import ObjectStore

# A BOM, a quoted newline and a multi-byte character across the reads of a buffer.
CSV_TEXT = "\ufeffcreator,url\r\n" + "".join(
    f'"Zoë {i}\nSmith",https://x/{i}.jpg\r\n' for i in range(5000)
)


def check_open_streams_a_csv(store: ObjectStore) -> None:
    store.put("csv-files/big.csv", CSV_TEXT.encode())
    # Closing the text wrapper closes the store's stream under it.
    with io.TextIOWrapper(
        store.open("csv-files/big.csv"), encoding="utf-8-sig", newline=""
    ) as text:
        manifest = parse_manifest(text)
    assert len(manifest.jobs) == 5000 and manifest.problems == []
    assert manifest.jobs[-1].creator == "Zoë 4999\nSmith"
    assert manifest.jobs[-1].covers[0].line == 2 + 2 * 4999
    raw = store.open("csv-files/big.csv")
    with io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        rows = list(csv.reader(text))
    assert raw.closed
    assert rows[0] == ["creator", "url"] and len(rows) == 5001
    with store.open("csv-files/big.csv") as raw:
        assert raw.read(3) == b"\xef\xbb\xbf" and raw.read() == CSV_TEXT.encode()[3:]
    with pytest.raises(StorageError, match="no such key"):
        store.open("csv-files/absent.csv")


def check_get_range(store: ObjectStore) -> None:
    data = bytes(range(256)) * 40
    store.put("plans/chunk-0001.jsonl", data)
    assert store.get_range("plans/chunk-0001.jsonl", 0, 10) == data[:10]
    assert store.get_range("plans/chunk-0001.jsonl", 5000, 1234) == data[5000:6234]
    assert store.get_range("plans/chunk-0001.jsonl", len(data) - 3, 10) == data[-3:]
    assert store.get_range("plans/chunk-0001.jsonl", len(data), 10) == b""
    assert store.get_range("plans/chunk-0001.jsonl", len(data) + 99, 10) == b""
    assert store.get_range("plans/chunk-0001.jsonl", 7, 0) == b""
    with pytest.raises(StorageError, match="no such key"):
        store.get_range("plans/absent.jsonl", 0, 10)
    with pytest.raises(StorageError, match="no such key"):
        store.get_range("plans/absent.jsonl", 0, 0)
    with pytest.raises(ValueError, match="byte range"):
        store.get_range("plans/chunk-0001.jsonl", -1, 10)
