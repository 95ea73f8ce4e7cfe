"""WorkQueue on SQS, plus the dead-letter queue tools behind ``imgpipe dlq``.

``send`` batches by 10 (SendMessageBatch) and retries the entries SQS refused;
``receive`` long-polls; messages are deleted only when their work is done, so a
crash means redelivery (at least once), and after ``maxReceiveCount`` receives
the redrive policy moves a poison message to the dead-letter queue::

    queue = SqsWorkQueue(settings.sqs_queue_url, settings=settings)
    queue.send([json.dumps(message)])
    for message in queue.receive(wait_seconds=20):
        ...; queue.delete(message)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from imgpipe.adapters.aws_clients import make_client
from imgpipe.errors import QueueError
from imgpipe.ports import QueueMessage
from imgpipe.settings import Settings

__all__ = ["SqsWorkQueue"]

BATCH = 10  # SQS's limit per SendMessageBatch / ReceiveMessage
MAX_BATCH_BYTES = 256 * 1024  # one message, or one SendMessageBatch in all
SEND_ATTEMPTS = 3


class SqsWorkQueue:
    """One SQS queue; ``client`` is injectable (tests, custom sessions)."""

    def __init__(
        self, queue_url: str, *, client: Any | None = None, settings: Settings | None = None
    ) -> None:
        if not queue_url:
            raise QueueError("no queue configured (IMGPIPE_SQS_QUEUE_URL)")
        self.url = queue_url
        self._settings = settings
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client("sqs", self._settings)
        return self._client

    def send(self, bodies: Sequence[str]) -> None:
        failed: list[str] = []
        for group in _batches(bodies):
            chunk = {str(i): body for i, body in enumerate(group)}
            for _ in range(SEND_ATTEMPTS):
                if not chunk:
                    break
                entries = [{"Id": i, "MessageBody": body} for i, body in chunk.items()]
                try:
                    response = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
                except Exception as exc:
                    raise QueueError(f"cannot send to {self.url}: {exc}") from exc
                # Only the refused entries are sent again; the rest are on the queue.
                chunk = {f["Id"]: chunk[f["Id"]] for f in response.get("Failed", [])}
            failed.extend(chunk.values())
        if failed:
            preview = "; ".join(body[:80] for body in failed[:3])
            raise QueueError(f"{len(failed)} message(s) not accepted by {self.url}: {preview}")

    def receive(self, *, max_messages: int = 10, wait_seconds: int = 20) -> list[QueueMessage]:
        try:
            response = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(BATCH, max_messages)),
                WaitTimeSeconds=wait_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except Exception as exc:
            raise QueueError(f"cannot receive from {self.url}: {exc}") from exc
        return [
            QueueMessage(
                message_id=m["MessageId"],
                body=m["Body"],
                receipt=m["ReceiptHandle"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
            )
            for m in response.get("Messages", [])
        ]

    def delete(self, message: QueueMessage) -> None:
        try:
            self.client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt)
        except Exception as exc:
            raise QueueError(f"cannot delete message {message.message_id}: {exc}") from exc

    def release(self, message: QueueMessage, *, delay_seconds: int = 0) -> None:
        try:
            self.client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message.receipt, VisibilityTimeout=delay_seconds
            )
        except Exception as exc:
            raise QueueError(f"cannot release message {message.message_id}: {exc}") from exc

    def extend(self, message: QueueMessage, *, seconds: int) -> None:
        """Heartbeat: the same call as release, with the time the work still needs."""
        try:
            self.client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message.receipt, VisibilityTimeout=seconds
            )
        except Exception as exc:
            raise QueueError(f"cannot extend message {message.message_id}: {exc}") from exc

    def depth(self) -> int:
        """Messages waiting (SQS's approximate count): also proves the queue answers."""
        try:
            attributes = self.client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
        except Exception as exc:
            raise QueueError(f"cannot read the attributes of queue {self.url}: {exc}") from exc
        return int(attributes.get("ApproximateNumberOfMessages", 0))

    # -- dead-letter tools -----------------------------------------------------

    def peek(self, max_messages: int = 10) -> list[QueueMessage]:
        """Look at up to ``max_messages`` without consuming them (they are released)."""
        seen: dict[str, QueueMessage] = {}
        while len(seen) < max_messages:
            batch = self.receive(max_messages=max_messages - len(seen), wait_seconds=1)
            fresh = [m for m in batch if m.message_id not in seen]
            if not fresh:
                for message in batch:
                    self.release(message)
                break
            for message in fresh:
                seen[message.message_id] = message
        for message in seen.values():
            self.release(message)
        return list(seen.values())

    def redrive_to(self, target: SqsWorkQueue, max_messages: int | None = None) -> int:
        """Move messages to ``target`` (send first, then delete): returns how many moved."""
        moved = 0
        while max_messages is None or moved < max_messages:
            want = BATCH if max_messages is None else min(BATCH, max_messages - moved)
            batch = self.receive(max_messages=want, wait_seconds=1)
            if not batch:
                break
            target.send([m.body for m in batch])
            for message in batch:
                self.delete(message)
            moved += len(batch)
        return moved


def _batches(bodies: Sequence[str]) -> Iterator[list[str]]:
    """Groups of at most 10 bodies and 256 KiB in all (SendMessageBatch's two limits)."""
    group: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode())
        if length > MAX_BATCH_BYTES:
            raise QueueError(f"a message of {length} bytes exceeds SQS's {MAX_BATCH_BYTES}")
        if group and (len(group) == BATCH or size + length > MAX_BATCH_BYTES):
            yield group
            group, size = [], 0
        group.append(body)
        size += length
    if group:
        yield group
