"""SnsNotifier against moto's SNS over HTTP, read back from a subscribed SQS queue."""

from __future__ import annotations

import json

from imgpipe.adapters.sns_notifier import SnsNotifier
from imgpipe.settings import Settings
from tests.support.sns import SubscribedTopic

BODY = json.dumps({"batch_id": "b-7", "counts": {"completed": 1}}).encode()


def test_the_digest_is_published_with_its_idempotency_key(aws: Settings) -> None:
    topic = SubscribedTopic.create(aws, "done")
    delivery = SnsNotifier(topic.arn, settings=aws).send(BODY, idempotency_key="b-7")
    assert (delivery.sent, delivery.attempts, delivery.status_code) == (True, 1, 200)
    assert delivery.message_id
    assert topic.received() == [(json.loads(BODY), {"idempotency_key": "b-7"})]


def test_on_a_fifo_topic_the_batch_id_deduplicates(aws: Settings) -> None:
    topic = SubscribedTopic.create(aws, "done", fifo=True)
    notifier = SnsNotifier(topic.arn, settings=aws)
    first = notifier.send(BODY, idempotency_key="b-7")
    again = notifier.send(BODY, idempotency_key="b-7")
    assert first.sent and again.sent
    assert topic.received() == [(json.loads(BODY), {"idempotency_key": "b-7"})]


def test_a_missing_topic_is_a_failed_delivery_naming_it(aws: Settings) -> None:
    arn = "arn:aws:sns:us-east-1:123456789012:nobody-home"
    delivery = SnsNotifier(arn, settings=aws).send(BODY, idempotency_key="b-7")
    assert (delivery.sent, delivery.status_code) == (False, 404)
    assert delivery.error is not None
    assert delivery.error.startswith(f"notice to SNS topic {arn} failed: NotFound: ")
