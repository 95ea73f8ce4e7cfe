"""The HTTP service on the AWS backend (moto): upload -> S3 + SQS fan-out -> workers -> API."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
from PIL import Image

from imgpipe.entrypoints.api.app import create_app
from imgpipe.settings import Settings
from tests.support.api_server import ApiServer
from tests.support.aws_deploy import Deployment
from tests.support.covers import GREEN, color_close, solid_jpeg
from tests.support.http_server import FaultServer, Serve


def test_upload_fans_out_and_collages_redirect_to_presigned_urls(deployed: Deployment) -> None:
    with FaultServer() as covers, ApiServer(create_app(Settings())) as server:
        green = covers.add("/green.jpg", Serve(solid_jpeg(GREEN, (300, 400))))
        csv_text = f"creator,url\nZoë,{green}\nYann,{green}\n"
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            answer = http.post(
                "/v1/batches", files={"file": ("wall.csv", csv_text.encode(), "text/csv")}
            )
            assert answer.status_code == 202, answer.text
            batch_id = answer.json()["batch_id"]
            queued = http.get(f"/v1/batches/{batch_id}").json()
            assert queued["status"] == "queued"  # the planner has not run yet

            loops = deployed.work()  # the planning message, then the two creators
            batch = _finished(http, batch_id)
            ready = http.get("/readyz").json()
            key = batch["creators"][0]["collage_key"]
            redirect = http.get(f"/v1/collages/{key}")

    assert batch["status"] == "completed" and batch["completed"] == 2
    assert {c["creator"] for c in batch["creators"]} == {"Zoë", "Yann"}
    # planned once: one planning message and one message per creator, nothing replayed
    assert sum(w.stats.succeeded for w in loops) == 3
    assert sum(w.stats.failed + w.stats.deferred for w in loops) == 0
    assert len(deployed.summaries()) == 1
    (upload,) = deployed.inputs.list("api-uploads/")  # outside the CSV prefix: no S3 event
    assert upload.endswith("wall.csv") and list(deployed.inputs.list("csv-files/")) == []
    assert ready["ready"] is True and ready["checks"]["queue"]["ok"] is True
    assert redirect.status_code == 307
    location = redirect.headers["location"]
    assert "X-Amz-Signature=" in location and deployed.names["IMGPIPE_OUTPUT_BUCKET"] in location
    image = Image.open(io.BytesIO(httpx.get(location).content))
    assert color_close(image.getpixel((100, 100)), GREEN)


def _finished(http: httpx.Client, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        batch: dict[str, Any] = http.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] != "running":
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} still running: {batch}")
