"""Compression as an S3 event: ``uploads/x`` -> ``compressed/uploads/x``, and never a loop."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from imgpipe.entrypoints import aws_lambda
from tests.e2e.test_lambda_handler import s3_event
from tests.support.aws import client
from tests.support.aws_deploy import Deployment
from tests.support.covers import html_page
from tests.support.photos import encode_jpeg, photo


def _head(deployed: Deployment, key: str) -> dict[str, Any]:
    s3 = client(deployed.settings, "s3")
    head: dict[str, Any] = s3.head_object(Bucket=deployed.names["IMGPIPE_INPUT_BUCKET"], Key=key)
    return head


def test_an_uploaded_image_is_compressed_with_size_metadata(deployed: Deployment) -> None:
    bucket = deployed.names["IMGPIPE_INPUT_BUCKET"]
    original = encode_jpeg(photo(7, (2000, 1500)), quality=97)
    deployed.inputs.put("uploads/team/cover shot.jpg", original, content_type="image/jpeg")

    result = aws_lambda.handler(s3_event(bucket, "uploads/team/cover+shot.jpg"))

    (done,) = result["results"]
    assert done["compressed_key"] == "compressed/uploads/team/cover shot.jpg"
    compressed = deployed.inputs.get("compressed/uploads/team/cover shot.jpg")
    assert Image.open(io.BytesIO(compressed)).size == (800, 600)
    head = _head(deployed, "compressed/uploads/team/cover shot.jpg")
    assert head["Metadata"] == {
        "original-size": str(len(original)),
        "compressed-size": str(len(compressed)),
    }
    assert head["ContentType"] == "image/jpeg"
    assert len(compressed) < len(original)


def test_a_non_image_upload_is_reported_not_retried(deployed: Deployment) -> None:
    bucket = deployed.names["IMGPIPE_INPUT_BUCKET"]
    deployed.inputs.put("uploads/fake.png", html_page(), content_type="image/png")

    (done,) = aws_lambda.handler(s3_event(bucket, "uploads/fake.png"))["results"]

    assert done["error"].startswith("not_an_image")
    assert not deployed.inputs.exists("compressed/uploads/fake.png")


def test_the_output_never_triggers_another_compression(deployed: Deployment) -> None:
    """Even with every ObjectCreated of the bucket routed to the queue, one upload = one write."""
    s3 = client(deployed.settings, "s3")
    sqs = client(deployed.settings, "sqs")
    queue_arn = sqs.get_queue_attributes(
        QueueUrl=deployed.names["IMGPIPE_SQS_QUEUE_URL"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=deployed.names["IMGPIPE_INPUT_BUCKET"],
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    for message in deployed.queue.receive(wait_seconds=1):  # the s3:TestEvent of the change
        deployed.queue.delete(message)
    deployed.inputs.put("uploads/a.png", _png(photo(8, (1600, 1200))), content_type="image/png")

    worker, _planner = deployed.work()

    written = sorted(deployed.inputs.list("compressed/"))
    assert written == ["compressed/uploads/a.png"]
    # Two events reached the handler: the upload, and our own write (ignored).
    assert (worker.stats.succeeded, worker.stats.failed) == (2, 0)
    assert not list(deployed.inputs.list("compressed/compressed/"))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
