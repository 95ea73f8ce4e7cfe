"""A batch uploaded to the HTTP service sends its completion notice (``IMGPIPE_NOTIFY_URL``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from imgpipe.domain.keys import notice_key
from tests.integration.api.conftest import ApiFactory
from tests.integration.api.test_batches_api import two_creators, upload, wait_for_batch
from tests.support.http_server import FaultServer
from tests.support.webhook import Receiver


def notice_when_done(path: Path, seconds: float = 30) -> dict[str, Any]:
    """The notice record once written (the notice follows the summary by a moment)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            record: dict[str, Any] = json.loads(path.read_text())
            if record["state"] == "done":
                return record
        time.sleep(0.05)
    raise AssertionError(f"no notice record at {path}")


def test_a_batch_run_by_the_api_notifies_once(api: ApiFactory, covers: FaultServer) -> None:
    receiver = Receiver("api-secret")
    hook = covers.add("/hooks/imgpipe", receiver)
    server = api(notify_url=hook, notify_secret="api-secret")
    batch_id = upload(server, two_creators(covers)).json()["batch_id"]
    batch = wait_for_batch(server, batch_id)

    assert batch["status"] == "completed_with_failures"
    recorded = notice_when_done(server.data_dir / notice_key(batch_id))
    assert [d["status"] for d in recorded["deliveries"]] == ["sent"]
    assert [d["batch_id"] for d in receiver.accepted] == [batch_id]
    assert receiver.accepted[0]["counts"]["failed"] == 1 and receiver.rejected == 0
