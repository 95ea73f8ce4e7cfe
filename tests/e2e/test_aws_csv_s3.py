"""``csv_s3`` messages and CSV uploads on moto: output prefixes, readable buckets, ``.CSV``.

The original system's planning message names a bucket, a key and an output
prefix; the prefix now places that batch's collages and results, and a bucket
other than the input bucket is read only when ``IMGPIPE_READABLE_BUCKETS`` lists
it. Covers come from a FaultServer on 127.0.0.1 (allowed explicitly) and from
objects beside the CSV.
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from imgpipe.adapters.s3_store import S3ObjectStore
from imgpipe.entrypoints import aws_lambda, lambda_runtime
from imgpipe.errors import MessageError
from tests.support.aws import client
from tests.support.aws_deploy import Deployment, csv_bytes
from tests.support.covers import BLUE, GREEN, RED, color_close, solid_jpeg
from tests.support.http_server import FaultServer, Serve

PARTNER = "flow-partner-exports"


def planning(key: str, **fields: str) -> str:
    return json.dumps({"processing_type": "csv_s3", "s3_key": key, **fields})


def test_an_upper_case_csv_upload_is_planned_and_rendered(deployed: Deployment) -> None:
    with FaultServer() as server:
        url = server.add("/r.jpg", Serve(solid_jpeg(RED)))
        deployed.upload_csv("csv-files/EXPORT FROM EXCEL.CSV", [("Caps", url)])
        deployed.work()
    (summary,) = deployed.summaries()
    assert summary["source"] == "csv-files/EXPORT FROM EXCEL.CSV"
    assert summary["totals"]["completed"] == 1
    assert deployed.inputs.exists("archived/processed/EXPORT FROM EXCEL.CSV")


def test_output_prefix_places_the_batch_collages_and_results(deployed: Deployment) -> None:
    with FaultServer() as server:
        red = server.add("/r.jpg", Serve(solid_jpeg(RED)))
        green = server.add("/g.jpg", Serve(solid_jpeg(GREEN)))
        # Outside the watched prefix: only the message plans it.
        deployed.inputs.put("manual-uploads/batch.csv", csv_bytes([("Ann", red), ("Bo", green)]))
        deployed.plan_queue.send(
            [planning("manual-uploads/batch.csv", output_prefix="sqs-trigger")]
        )
        deployed.work()

    everything = sorted(deployed.outputs.list(""))
    assert everything and all(k.startswith("sqs-trigger/") for k in everything), everything
    (summary_key,) = deployed.outputs.list("sqs-trigger/results/processing-summaries/")
    summary = json.loads(deployed.outputs.get(summary_key))
    assert summary["totals"]["completed"] == 2
    assert summary["summary_key"] == summary_key
    assert summary["gallery_key"] == "sqs-trigger/index.html"
    batch = deployed.state.get_batch(summary["batch_id"])
    assert batch is not None and batch.summary_key == summary_key
    creators = {c["creator"]: c for c in summary["creators"]}
    assert creators["Ann"]["collage_key"].startswith("sqs-trigger/collages/by-creator/Ann/")
    with Image.open(io.BytesIO(deployed.outputs.get(creators["Bo"]["collage_key"]))) as im:
        assert color_close(im.convert("RGB").getpixel((100, 100)), GREEN)
    metadata = sorted(deployed.outputs.list(f"sqs-trigger/results/metadata/{batch.batch_id}/"))
    assert [k.rsplit("/", 1)[-1] for k in metadata] == ["Ann.json", "Bo.json"]
    # The gallery beside them links relative to its own folder.
    gallery = deployed.outputs.get("sqs-trigger/index.html").decode()
    assert 'src="collages/by-creator/Ann/' in gallery


def test_a_csv_in_a_readable_bucket_is_read_there_and_left_in_place(
    deployed: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    client(deployed.settings, "s3").create_bucket(Bucket=PARTNER)
    partner = S3ObjectStore(PARTNER, settings=deployed.settings)
    partner.put("exports/img/blue.jpg", solid_jpeg(BLUE))  # beside the CSV, in that bucket
    monkeypatch.setenv("IMGPIPE_READABLE_BUCKETS", f"some-other-bucket, {PARTNER}")
    lambda_runtime.runtime.cache_clear()
    with FaultServer() as server:
        red = server.add("/r.jpg", Serve(solid_jpeg(RED)))
        partner.put("exports/spring.csv", csv_bytes([("Mix", red), ("Mix", "img/blue.jpg")]))
        deployed.plan_queue.send([planning("exports/spring.csv", s3_bucket=PARTNER)])
        deployed.work()

    (summary,) = deployed.summaries()
    assert summary["source"] == f"s3://{PARTNER}/exports/spring.csv"
    assert summary["totals"]["completed"] == 1 and summary["totals"]["images_used"] == 2
    (creator,) = summary["creators"]
    with Image.open(io.BytesIO(deployed.outputs.get(creator["collage_key"]))) as im:
        rgb = im.convert("RGB")
        assert color_close(rgb.getpixel((100, 100)), RED)
        assert color_close(rgb.getpixel((300, 100)), BLUE)
    assert partner.exists("exports/spring.csv")  # read only: never archived
    assert deployed.dlq.receive(wait_seconds=0) == []


def test_a_bucket_not_listed_as_readable_is_refused_and_nothing_is_planned(
    deployed: Deployment,
) -> None:
    client(deployed.settings, "s3").create_bucket(Bucket=PARTNER)
    S3ObjectStore(PARTNER, settings=deployed.settings).put(
        "exports/spring.csv", csv_bytes([("Nope", "https://img.example/a.jpg")])
    )
    with pytest.raises(MessageError, match=f"s3_bucket '{PARTNER}'.*IMGPIPE_READABLE_BUCKETS"):
        aws_lambda.handle_record_body(planning("exports/spring.csv", s3_bucket=PARTNER))
    assert deployed.state.list_batches(limit=10) == []
    assert list(deployed.plans.list("processing/")) == []
    assert deployed.queue.receive(wait_seconds=0) == []


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"output_prefix": "../escape"}, "output_prefix '../escape'"),
        ({"output_prefix": "a//b"}, "output_prefix 'a//b'"),
        ({"s3_bucket": 7}, "s3_bucket must be a string"),
    ],
)
def test_a_bad_output_prefix_or_bucket_field_is_named(
    deployed: Deployment, fields: dict[str, object], named: str
) -> None:
    deployed.inputs.put("manual-uploads/x.csv", csv_bytes([("A", "https://img.example/a.jpg")]))
    body = json.dumps({"processing_type": "csv_s3", "s3_key": "manual-uploads/x.csv", **fields})
    with pytest.raises(MessageError, match=named):
        aws_lambda.handle_record_body(body)
    assert deployed.state.list_batches(limit=10) == []
