"""The :class:`~imgpipe.ports.Notifier` that publishes the digest to an SNS topic.

``IMGPIPE_NOTIFY_TOPIC_ARN`` names the topic (the SAM and Terraform stacks create it).
The batch id travels as the ``idempotency_key`` message attribute; on a FIFO topic
(``.fifo``) it is also the deduplication id, so SNS itself drops a duplicate within
its five-minute window. boto3 retries throttling and 5xx answers itself (standard
mode, :func:`~imgpipe.adapters.aws_clients.make_client`); what is left after that is
a failed delivery, never an exception::

    notifier = SnsNotifier("arn:aws:sns:eu-west-1:123456789012:imgpipe-done", settings=s)
    notifier.send(b'{"batch_id": "b1"}', idempotency_key="b1").message_id
"""

from __future__ import annotations

from typing import Any

from imgpipe.adapters.aws_clients import aws_error_code, make_client
from imgpipe.ports import Delivery
from imgpipe.settings import Settings

__all__ = ["SnsNotifier"]

# SNS subjects: ASCII, no line breaks, under 100 characters (batch ids are [A-Za-z0-9_-]).
_SUBJECT_LIMIT = 99


class SnsNotifier:
    """Publishes notices to one topic; ``send`` returns a :class:`Delivery`, never raises."""

    channel = "sns"

    def __init__(
        self, topic_arn: str, *, client: Any = None, settings: Settings | None = None
    ) -> None:
        self.topic_arn = topic_arn
        self._client = client
        self._settings = settings

    @property
    def client(self) -> Any:
        if self._client is None:  # boto3 only once a notice is due
            self._client = make_client("sns", self._settings)
        return self._client

    def send(self, body: bytes, *, idempotency_key: str) -> Delivery:
        params: dict[str, Any] = {
            "TopicArn": self.topic_arn,
            "Message": body.decode(),
            "Subject": f"imgpipe batch {idempotency_key} finished"[:_SUBJECT_LIMIT],
            "MessageAttributes": {
                "idempotency_key": {"DataType": "String", "StringValue": idempotency_key}
            },
        }
        if self.topic_arn.endswith(".fifo"):
            params["MessageGroupId"] = idempotency_key
            params["MessageDeduplicationId"] = idempotency_key
        try:
            answer = self.client.publish(**params)
        except Exception as exc:  # botocore's errors, a missing extra: a result, not a raise
            response = getattr(exc, "response", None)
            meta = response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}
            code = aws_error_code(exc) or type(exc).__name__
            return Delivery(
                False,
                attempts=1 + int(meta.get("RetryAttempts", 0)),
                status_code=meta.get("HTTPStatusCode"),
                error=f"notice to SNS topic {self.topic_arn} failed: {code}: {exc}",
            )
        meta = answer.get("ResponseMetadata", {})
        return Delivery(
            True,
            attempts=1 + int(meta.get("RetryAttempts", 0)),
            status_code=meta.get("HTTPStatusCode"),
            message_id=answer.get("MessageId"),
        )
