"""An SNS topic on moto with an SQS queue subscribed to it: what a team's consumer reads.

Raw message delivery hands the queue the published body as is, with the message
attributes; without it the queue would get SNS's JSON envelope::

    topic = SubscribedTopic.create(settings, "imgpipe-done")
    ...                                         # something publishes to topic.arn
    [(body, attributes)] = topic.received()
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from imgpipe.settings import Settings
from tests.support.aws import client


@dataclass
class SubscribedTopic:
    arn: str
    queue_url: str
    sqs: Any

    @classmethod
    def create(cls, settings: Settings, name: str, *, fifo: bool = False) -> SubscribedTopic:
        sns, sqs = client(settings, "sns"), client(settings, "sqs")
        suffix = ".fifo" if fifo else ""
        topic_attributes = {"FifoTopic": "true"} if fifo else {}
        arn = sns.create_topic(Name=name + suffix, Attributes=topic_attributes)["TopicArn"]
        queue_attributes = {"FifoQueue": "true"} if fifo else {}
        url = sqs.create_queue(QueueName=f"{name}-inbox{suffix}", Attributes=queue_attributes)
        queue_url = url["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        sns.subscribe(
            TopicArn=arn,
            Protocol="sqs",
            Endpoint=queue_arn["Attributes"]["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )
        return cls(arn, queue_url, sqs)

    def received(
        self, *, quiet_seconds: float = 1.0
    ) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """Every message until the queue stayed empty ``quiet_seconds``: (body, attributes)."""
        out: list[tuple[dict[str, Any], dict[str, str]]] = []
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < quiet_seconds:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            )
            messages = answer.get("Messages", [])
            if not messages:
                time.sleep(0.1)
                continue
            idle_since = time.monotonic()
            for message in messages:
                attributes = {
                    name: value["StringValue"]
                    for name, value in message.get("MessageAttributes", {}).items()
                }
                out.append((json.loads(message["Body"]), attributes))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        return out
