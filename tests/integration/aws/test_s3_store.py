"""S3ObjectStore against moto's S3 over HTTP: same contract as the local folder."""

from __future__ import annotations

import urllib.request

import pytest

from imgpipe.adapters.s3_store import CACHE_CONTROL, S3ObjectStore
from imgpipe.errors import KeyCollisionError, StorageError
from imgpipe.settings import Settings
from tests.support.aws import client
from tests.support.stream_contract import check_get_range, check_open_streams_a_csv


@pytest.fixture
def store(aws: Settings) -> S3ObjectStore:
    client(aws, "s3").create_bucket(Bucket="out")
    return S3ObjectStore("out", settings=aws, multipart_threshold=5 * 1024 * 1024)


def test_put_get_with_headers_encryption_and_metadata(store: S3ObjectStore) -> None:
    stored = store.put(
        "collages/by-creator/Ann/a.jpg", b"\xff\xd8data", content_type="image/jpeg",
        metadata={"original-size": "10"},
    )  # fmt: skip
    assert stored.size == 6 and stored.url == "s3://out/collages/by-creator/Ann/a.jpg"
    assert store.get("collages/by-creator/Ann/a.jpg") == b"\xff\xd8data"
    head = store.client.head_object(Bucket="out", Key="collages/by-creator/Ann/a.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == CACHE_CONTROL
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"] == {"original-size": "10"}


def test_if_absent_is_a_conditional_put(store: S3ObjectStore) -> None:
    store.put("k.jpg", b"first", if_absent=True)
    with pytest.raises(KeyCollisionError, match="already exists"):
        store.put("k.jpg", b"second", if_absent=True)
    assert store.get("k.jpg") == b"first"
    store.put("k.jpg", b"third")  # an ordinary put overwrites
    assert store.get("k.jpg") == b"third"


def test_large_bodies_go_multipart(store: S3ObjectStore) -> None:
    data = bytes(range(256)) * (6 * 1024 * 4 + 1)  # just over 6 MB, above the threshold
    store.put("big.bin", data)
    head = store.client.head_object(Bucket="out", Key="big.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-2")  # a multipart ETag names its parts
    assert head["ServerSideEncryption"] == "AES256"
    assert store.get("big.bin") == data


def test_missing_keys_exists_delete_list_move(store: S3ObjectStore) -> None:
    with pytest.raises(StorageError, match="no such key"):
        store.get("nope.jpg")
    assert not store.exists("nope.jpg")
    for key in ["csv-files/b.csv", "csv-files/a.csv", "other/c.csv"]:
        store.put(key, b"x")
    assert list(store.list("csv-files/")) == ["csv-files/a.csv", "csv-files/b.csv"]
    store.move("csv-files/a.csv", "archived/processed/a.csv")
    assert not store.exists("csv-files/a.csv") and store.get("archived/processed/a.csv") == b"x"
    store.delete("other/c.csv")
    assert list(store.list()) == ["archived/processed/a.csv", "csv-files/b.csv"]


def test_keys_that_could_escape_are_refused(store: S3ObjectStore) -> None:
    for key in ["../x", "a//b", "", "a/./b"]:
        with pytest.raises(StorageError, match="invalid object key"):
            store.put(key, b"x")


def test_presigned_url_serves_the_object(store: S3ObjectStore) -> None:
    store.put("collages/x.jpg", b"jpeg-bytes", content_type="image/jpeg")
    url = store.url_for("collages/x.jpg")
    assert "X-Amz-Expires=3600" in url and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"jpeg-bytes"


def test_missing_bucket_is_a_storage_error(aws: Settings) -> None:
    with pytest.raises(StorageError, match="s3://absent/k"):
        S3ObjectStore("absent", settings=aws).put("k", b"x")


def test_open_streams_the_body(store: S3ObjectStore) -> None:
    check_open_streams_a_csv(store)


def test_get_range_asks_for_a_byte_range(store: S3ObjectStore) -> None:
    check_get_range(store)


def test_a_body_that_breaks_mid_read_is_a_storage_error(store: S3ObjectStore) -> None:
    store.put("csv-files/a.csv", b"creator,url\n" * 1000)
    with store.open("csv-files/a.csv") as stream:
        assert stream.read(7) == b"creator"
        # What botocore raises when the connection drops mid-body, without a real drop.
        stream.raw._body.read = _broken_read  # type: ignore[attr-defined]
        with pytest.raises(StorageError, match="cannot read s3://out/csv-files/a.csv"):
            stream.read()


def _broken_read(amount: int | None = None) -> bytes:
    from botocore.exceptions import ResponseStreamingError

    raise ResponseStreamingError(error="connection reset")
