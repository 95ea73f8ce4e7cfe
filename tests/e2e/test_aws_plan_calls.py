"""Planning's AWS calls per chunk are constant, whatever the size of the batch.

Planning a million-row CSV on moto slowed down faster than the input grew; py-spy
put it in moto's SQS (every stored message walks the whole queue), not in the
planner. This test keeps it that way on our side: the calls the planner makes,
counted on the wire with a botocore event hook, are the same for every chunk of a
small and of a three times larger batch, and none of them reads (a Query or Scan of
the pending records, a re-read of plan objects or of the checkpoint per chunk would
make planning O(chunks^2) on real AWS too).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from imgpipe.entrypoints import lambda_runtime
from imgpipe.service import fanout as fanout_module
from imgpipe.service.fanout import FanOut
from tests.support.aws_deploy import Deployment

CHUNK = 12  # creators per chunk: one BatchWriteItem (<= 25), two SendMessageBatch (<= 10)
# Calls that only read: none belongs in the loop over chunks.
READS = {"GetObject", "HeadObject", "ListObjectsV2", "Query", "Scan", "GetItem",
         "BatchGetItem", "ReceiveMessage", "GetQueueAttributes"}  # fmt: skip


class WireLog:
    """Every AWS operation the planner's clients send, with the S3 key it names."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, str(params.get("Key", ""))))

    def attach(self, fanout: FanOut) -> None:
        ports = fanout.ports
        for client in {id(c): c for c in _clients(ports)}.values():
            client.meta.events.register("before-parameter-build", self)


def _clients(ports: Any) -> Iterator[Any]:
    for port in (ports.inputs, ports.work, ports.state, ports.queue):
        yield port.client


def split(calls: list[tuple[str, str]]) -> tuple[list[str], list[list[str]]]:
    """The calls before the first plan object (the batch's setup), then each chunk's
    calls: from its plan object to its checkpoint."""
    names = [name for name, _ in calls]
    puts = [(i, key) for i, (name, key) in enumerate(calls) if name == "PutObject"]
    first = next(i for i, key in puts if "/creators/" in key)
    ends = [i for i, key in puts if key.endswith("/checkpoint.json")]
    assert ends and ends[-1] == len(calls) - 1, f"planning did not end on a checkpoint: {calls}"
    starts = [first, *(end + 1 for end in ends[:-1])]
    return names[:first], [names[a : b + 1] for a, b in zip(starts, ends, strict=True)]


def plan(deployed: Deployment, creators: int) -> tuple[list[str], list[list[str]]]:
    key = f"manual-uploads/calls-{creators}.csv"  # outside csv-files/: no S3 event
    rows = [(f"creator {i:04d}", f"https://img.test/{i}/{n}.jpg") for i in range(creators)
            for n in range(3)]  # fmt: skip
    deployed.upload_csv(key, rows)
    lambda_runtime.runtime.cache_clear()
    _, fanout = lambda_runtime.runtime()
    assert isinstance(fanout, FanOut)
    wire = WireLog()
    wire.attach(fanout)
    outcome = fanout.plan(key)
    assert outcome.error is None and outcome.messages_sent == creators
    return split(wire.calls)


@pytest.mark.slow
def test_every_chunk_costs_the_same_calls_whatever_the_batch_size(
    deployed: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout_module, "PLAN_CHUNK", CHUNK)
    small_setup, small = plan(deployed, 3 * CHUNK)
    large_setup, large = plan(deployed, 9 * CHUNK)

    assert (len(small), len(large)) == (3, 9)
    expected = ["PutObject", "BatchWriteItem", "SendMessageBatch", "SendMessageBatch", "PutObject"]
    assert small == [expected] * 3
    assert large == [expected] * 9
    assert small_setup == large_setup  # the batch's own setup does not grow either
    assert not READS.intersection(name for chunk in large for name in chunk)
