"""Runs the Lambda functions in this process as the Lambda runtime would, for one test.

``python -m tests.support.lambda_invoke`` reads ``{"bucket": ..., "key": ...}`` on
stdin, then calls the planner with the S3 event of that CSV, the worker with each
per-creator message it sent (as an SQS event), and the sweep, each with a Lambda
context object. stdout is left to the functions (Powertools' JSON logs, EMF); the
handlers' results go to stderr as one JSON list.

Run in a fresh process by the test: Powertools and the X-Ray SDK configure
process-wide state (a handler on the ``imgpipe`` logger, patched botocore/httpx).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from imgpipe.entrypoints import aws_lambda, lambda_runtime


@dataclass
class LambdaContext:
    """The attributes of the runtime's context object that Powertools reads."""

    function_name: str = "imgpipe-worker"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:imgpipe-worker"
    aws_request_id: str = "req-obs"


def sqs_event(queue_arn: str, messages: list[Any]) -> dict[str, Any]:
    records = [
        {
            "messageId": m.message_id,
            "receiptHandle": m.receipt,
            "body": m.body,
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": "us-east-1",
        }  # fmt: skip
        for m in messages
    ]
    return {"Records": records}


def main() -> None:
    from imgpipe.adapters.sqs_queue import SqsWorkQueue

    request = json.load(sys.stdin)
    settings, _ = lambda_runtime.runtime()
    context = LambdaContext()
    where = {"bucket": {"name": request["bucket"]}, "object": {"key": request["key"]}}
    s3 = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": where}
    results = [aws_lambda.planner_handler({"Records": [s3]}, context)]
    queue = SqsWorkQueue(settings.sqs_queue_url, settings=settings)
    messages = list(queue.receive(max_messages=10, wait_seconds=1))
    arn = "arn:aws:sqs:us-east-1:123456789012:" + settings.sqs_queue_url.rsplit("/", 1)[-1]
    results.append(aws_lambda.worker_handler(sqs_event(arn, messages), context))
    results.append(aws_lambda.sweep_handler({}, context))
    sys.stderr.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    main()
