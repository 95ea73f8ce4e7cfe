"""A batch's plan document: its source, its CSV statistics and its resolved spec.

Written once when the batch opens (:meth:`BatchLedger.open_batch
<imgpipe.service.ledger.BatchLedger.open_batch>`) and only read after that: by
every worker, for the spec it renders with; by the summary, for the statistics
and the source; by pages, for the statistics. It lives in the work store, not in
the state records, because its size grows with the CSV's row problems::

    plans = BatchPlans(work_store)
    plans.write("b1", source="x.csv", stats=stats, spec=spec.to_spec())
    plans.spec("b1")          # read once per process, then kept
    plans.stats("b1")         # None when the plan cannot be read

Plans of earlier versions have no spec: they read as ``{}``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from imgpipe.errors import StorageError
from imgpipe.service.results import PlanStats

if TYPE_CHECKING:
    from imgpipe.ports import ObjectStore

__all__ = ["BatchPlans", "plan_key"]

log = logging.getLogger(__name__)

# Specs kept per process: a worker serves few batches at a time.
KEPT_SPECS = 64


def plan_key(batch_id: str) -> str:
    """Where a batch's plan (source, CSV statistics, spec) lives in the work store."""
    return f"processing/{batch_id}/plan.json"


class BatchPlans:
    """The plan documents of every batch, in one object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._specs: dict[str, dict[str, Any]] = {}

    def write(self, batch_id: str, *, source: str, stats: PlanStats, spec: dict[str, Any]) -> None:
        plan = {"source": source, "stats": asdict(stats), "spec": spec}
        self.store.put(
            plan_key(batch_id),
            json.dumps(plan, ensure_ascii=False).encode(),
            content_type="application/json",
        )

    def spec(self, batch_id: str) -> dict[str, Any]:
        """The options the batch was planned with ({} for plans of earlier versions).

        Kept per process for the last few batches: a worker reads its batch's plan
        once, not once per creator.
        """
        cached = self._specs.get(batch_id)
        if cached is not None:
            return cached
        return self._remember_spec(batch_id, self._read(batch_id))

    def stats(self, batch_id: str) -> PlanStats | None:
        """The CSV statistics (rows read, skipped rows) of a planned batch, if readable."""
        plan = self._read(batch_id)
        try:
            return None if plan is None else PlanStats(**plan["stats"])
        except (KeyError, TypeError):
            return None

    def for_summary(self, batch_id: str, source: str) -> tuple[PlanStats, str, str]:
        """What the summary takes from the plan, read once: the CSV statistics, the
        source (``source`` when the plan has none) and the batch's output prefix."""
        plan = self._read(batch_id)
        prefix = str(self._remember_spec(batch_id, plan).get("output_prefix") or "")
        if plan is None:
            log.warning("batch %s has no readable plan; CSV statistics left out", batch_id)
            return PlanStats(0, 0, []), source, prefix
        return PlanStats(**plan["stats"]), plan.get("source", source), prefix

    def _remember_spec(self, batch_id: str, plan: dict[str, Any] | None) -> dict[str, Any]:
        spec = dict((plan or {}).get("spec") or {})
        if len(self._specs) >= KEPT_SPECS:
            self._specs.pop(next(iter(self._specs)))
        self._specs[batch_id] = spec
        return spec

    def _read(self, batch_id: str) -> dict[str, Any] | None:
        """The plan as written, or None when it is missing or unreadable."""
        try:
            plan = json.loads(self.store.get(plan_key(batch_id)))
        except (StorageError, ValueError):
            return None
        return plan if isinstance(plan, dict) else None
