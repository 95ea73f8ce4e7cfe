"""The dashboard shows covers as they arrive for a batch that another process runs:
``imgpipe run`` in a subprocess, ``imgpipe serve`` (the app under uvicorn) reading the
same output folder. The counts reach the page through the creator's record only."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from imgpipe.domain.keys import creator_key
from imgpipe.entrypoints.api.app import create_app
from tests.browser.conftest import Screenshots
from tests.integration.api.conftest import api_settings
from tests.support.api_server import ApiServer
from tests.support.covers import PORTRAIT
from tests.support.http_server import FaultServer, Gated, Serve
from tests.support.photos import photo_jpeg

SRC = Path(__file__).resolve().parents[2] / "src"
SLOW_COVERS = 6

pytestmark = pytest.mark.slow


@pytest.fixture
def covers() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


def start_run(csv_path: Path, out: Path, log: Path) -> subprocess.Popen[bytes]:
    """``imgpipe run`` as a user starts it, loopback covers allowed; output to ``log``."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(SRC),  # this worktree's code, not the venv's editable install
        "IMGPIPE_DATA_DIR": str(out),
        "IMGPIPE_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8",
        "IMGPIPE_DEFAULT_TIMEOUT": "60",  # the test holds covers for seconds
        "IMGPIPE_DEFAULT_MAX_RETRIES": "0",
        "IMGPIPE_DEFAULT_COLS": "4",
    }
    with log.open("wb") as sink:  # a file, not a pipe: nothing to block on
        return subprocess.Popen(
            [sys.executable, "-m", "imgpipe", "run", str(csv_path), "--out", str(out)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=csv_path.parent,
        )


def wait_for(what: str, probe: Any, run: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        if run.poll() is not None:
            pytest.fail(f"imgpipe run exited ({run.returncode}) before {what}: {log.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"no {what} within 60 s: {log.read_text()}")


def test_a_batch_run_by_another_process_shows_its_covers_as_they_arrive(
    page: Page, covers: FaultServer, tmp_path: Path, screenshots: Screenshots
) -> None:
    out = tmp_path / "data"
    gates = [threading.Event() for _ in range(SLOW_COVERS)]
    lines = ["creator,cover_url"]
    for index, gate in enumerate(gates):
        cover = Gated(Serve(photo_jpeg(300 + index, PORTRAIT)), gate)
        lines.append(f"Slow Sam,{covers.add(f'/held{index}.jpg', cover)}")
    csv_path = tmp_path / "elsewhere.csv"
    csv_path.write_text("\n".join(lines) + "\n")

    run = start_run(csv_path, out, tmp_path / "run.log")
    try:
        app = create_app(api_settings(), out_dir=out)  # serve: the same folder, no batch of its own
        with ApiServer(app) as server, httpx.Client(base_url=server.base_url) as http:

            def sam_processing() -> str | None:
                for batch in http.get("/v1/batches").json():
                    detail = http.get(f"/v1/batches/{batch['batch_id']}").json()
                    statuses = {c["creator"]: c["status"] for c in detail["creators"]}
                    if statuses.get("Slow Sam") == "processing":
                        return str(batch["batch_id"])
                return None

            batch_id = wait_for("Slow Sam processing", sam_processing, run, tmp_path / "run.log")
            page.goto(server.url(f"/batches/{batch_id}"))
            slow = page.locator("#creators tr", has_text="Slow Sam")
            for released in (2, 4):
                for gate in gates[released - 2 : released]:
                    gate.set()
                # Between 0 and all: the page shows the covers before the creator is done.
                expect(slow.locator("td.status")).to_have_text(
                    f"processing · {released}/{SLOW_COVERS} covers", timeout=30_000
                )
            # The cheap poll (the batch record and the creators in flight) carries them too.
            polled = http.get(f"/v1/batches/{batch_id}", params={"creators": "false"}).json()
            assert polled["live"] == {
                creator_key("Slow Sam"): {
                    "covers_ok": 4,
                    "covers_failed": 0,
                    "covers_total": SLOW_COVERS,
                }
            }
            screenshots.take(page, "dashboard-running-elsewhere")
            for gate in gates:
                gate.set()
            assert run.wait(60) == 0, (tmp_path / "run.log").read_text()
            expect(page.locator("h1 .badge")).to_have_text("completed", timeout=30_000)
            expect(slow.locator("td.status")).to_have_text("completed")
            final = http.get(f"/v1/batches/{batch_id}", params={"creators": "false"}).json()
            assert final["live"] == {}
    finally:
        for gate in gates:
            gate.set()
        if run.poll() is None:
            run.kill()
            run.wait(10)
