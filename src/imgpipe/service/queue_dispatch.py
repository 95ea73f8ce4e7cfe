"""The queue's dispatcher: a plan object per chunk, one small message per creator.

A chunk's covers go into ``processing/<batch>/creators/NNNNN.jsonl`` (one JSON line
per creator); its message names the creator's byte range there, so a message's size
does not depend on URL length and a 10-message ``SendMessageBatch`` stays far under
SQS's 256 KB. The plan object is written in :meth:`QueueDispatcher.prepare`, before
the pending records that keep each message (the sweep can send it again); the
messages go out in :meth:`QueueDispatcher.dispatch`, after them::

    dispatcher = QueueDispatcher(work, queue, csv_key="csv-files/a.csv", keep=105)
    notes = dispatcher.prepare(context, 0, jobs)   # {"Ann": {"message": {...}}, ...}
    dispatcher.dispatch(context, 0, jobs)          # 2 messages sent
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from imgpipe.domain.manifest import CreatorJob
from imgpipe.ports import ObjectStore, WorkQueue
from imgpipe.service.results import BatchContext

__all__ = ["CREATOR_MESSAGE", "QueueDispatcher", "plan_object_key"]

CREATOR_MESSAGE = "imgpipe.creator"


def plan_object_key(batch_id: str, chunk: int) -> str:
    """
    >>> plan_object_key("b1", 3)
    'processing/b1/creators/00003.jsonl'
    """
    return f"processing/{batch_id}/creators/{chunk:05}.jsonl"


class QueueDispatcher:
    """Creators of one planned CSV, sent as per-creator messages on a work queue."""

    durable = True  # the messages outlive the planner: a replay sends what follows

    def __init__(
        self,
        work: ObjectStore,
        queue: WorkQueue,
        *,
        csv_key: str,
        keep: int,
        bucket: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.work, self.queue = work, queue
        self.csv_key, self.bucket = csv_key, bucket
        self.keep = keep  # covers a plan keeps per creator (the grid and its backfill)
        self.overrides = dict(overrides or {})
        self._prepared: tuple[tuple[str, int], dict[str, dict[str, Any]]] | None = None

    def prepare(
        self, context: BatchContext, chunk: int, jobs: Sequence[CreatorJob]
    ) -> dict[str, dict[str, Any]]:
        messages = self._messages(context, chunk, jobs)
        return {key: {"message": message} for key, message in messages.items()}

    def dispatch(self, context: BatchContext, chunk: int, jobs: Sequence[CreatorJob]) -> int:
        messages = self._messages(context, chunk, jobs)
        bodies = [json.dumps(messages[job.key]) for job in jobs]
        self.queue.send(bodies)
        return len(bodies)

    def _messages(
        self, context: BatchContext, chunk: int, jobs: Sequence[CreatorJob]
    ) -> dict[str, dict[str, Any]]:
        """The chunk's messages, made (and its plan object written) once per chunk."""
        at = (context.batch_id, chunk)
        if self._prepared is not None and self._prepared[0] == at:
            prepared = self._prepared[1]
            if all(job.key in prepared for job in jobs):
                return prepared
        plan_object = plan_object_key(context.batch_id, chunk)
        refs = self._write_plan(plan_object, jobs)
        messages = {
            job.key: self._message(job, context, [plan_object, *refs[job.key]]) for job in jobs
        }
        self._prepared = (at, messages)
        return messages

    def _write_plan(self, key: str, jobs: Sequence[CreatorJob]) -> dict[str, tuple[int, int]]:
        """One JSON line per creator; returns each creator's byte range in the object."""
        buffer = io.BytesIO()
        refs: dict[str, tuple[int, int]] = {}
        for job in jobs:
            line = json.dumps(
                {"key": job.key, "covers": [[c.line, c.url] for c in job.covers[: self.keep]]},
                ensure_ascii=False,
            ).encode()
            refs[job.key] = (buffer.tell(), len(line))
            buffer.write(line + b"\n")
        self.work.put(key, buffer.getvalue(), content_type="application/x-ndjson")
        return refs

    def _message(
        self, job: CreatorJob, context: BatchContext, plan_ref: list[Any]
    ) -> dict[str, Any]:
        located = {"csv_bucket": self.bucket} if self.bucket else {}  # absent: the input bucket
        return {
            "type": CREATOR_MESSAGE,
            "batch_id": context.batch_id,
            "processing_date": context.processing_date,
            "ttl": context.ttl,
            "creator": job.creator,
            "key": job.key,
            "csv_key": self.csv_key,
            **located,
            "plan": plan_ref,  # [object key, offset, length] of the creator's covers
            "processing_config": self.overrides,
        }
