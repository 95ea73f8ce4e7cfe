"""Health, readiness, metrics, API key, CORS and the dashboard's server-side pages."""

from __future__ import annotations

import re

import pytest

from tests.integration.api.conftest import ApiFactory
from tests.integration.api.test_batches_api import two_creators, upload, wait_for_batch
from tests.support.api_server import free_port
from tests.support.http_server import FaultServer, Serve, Status
from tests.support.photos import photo_jpeg


def test_healthz_is_alive(api: ApiFactory) -> None:
    answer = api().http.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_readyz_names_each_check(api: ApiFactory, covers: FaultServer) -> None:
    ping = covers.add("/ping", Serve(b"pong", content_type="text/plain"))
    answer = api(readiness_url=ping).http.get("/readyz")

    assert answer.status_code == 200
    body = answer.json()
    assert body["ready"] is True
    assert set(body["checks"]) == {"object_store", "state_store", "network"}
    assert all(check["ok"] is True for check in body["checks"].values())
    assert body["checks"]["network"]["status"] == 200
    assert covers.hits("/ping") == 1


def test_readyz_without_a_network_target_skips_that_check(api: ApiFactory) -> None:
    body = api().http.get("/readyz").json()
    assert body["ready"] is True
    assert body["checks"]["network"] == {"ok": None, "skipped": "IMGPIPE_READINESS_URL is not set"}


@pytest.mark.parametrize("failure", ["refused", "http_503"])
def test_readyz_is_503_when_the_network_check_fails(
    api: ApiFactory, covers: FaultServer, failure: str
) -> None:
    if failure == "refused":
        url = f"http://127.0.0.1:{free_port()}/"
    else:
        url = covers.add("/down", Status(503))
    answer = api(readiness_url=url).http.get("/readyz")

    assert answer.status_code == 503
    network = answer.json()["checks"]["network"]
    assert network["ok"] is False
    assert network.get("status") == 503 or "ConnectError" in network["error"]
    assert answer.json()["checks"]["state_store"]["ok"] is True


def test_readyz_reports_a_broken_state_store(api: ApiFactory) -> None:
    server = api()
    server.app.state.backend.state.close()  # a database that went away
    answer = server.http.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["state_store"]["ok"] is False
    assert answer.json()["checks"]["state_store"]["error"]


def _sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample, labels matched in any order."""
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_count_requests_images_failures_and_batches(
    api: ApiFactory, covers: FaultServer
) -> None:
    server = api()
    wait_for_batch(server, upload(server, two_creators(covers)).json()["batch_id"])
    image = photo_jpeg(1)
    files = [("files", ("a.jpg", image)), ("files", ("b.jpg", image))]
    server.http.post("/v1/compare", files=files)
    server.http.post("/v1/compare", files=[files[0], ("files", ("c.jpg", b"<html>"))])
    server.http.get("/v1/batches/nope")

    text = server.http.get("/metrics").text

    assert _sample(text, "imgpipe_images_processed_total", kind="compare") == 2
    assert _sample(text, "imgpipe_images_processed_total", kind="collage") == 2
    assert _sample(text, "imgpipe_failures_total", kind="compare", reason="not_an_image") == 1
    assert _sample(text, "imgpipe_failures_total", kind="collage", reason="http_404") == 2
    assert _sample(text, "imgpipe_batch_duration_seconds_count") == 1
    assert (
        _sample(
            text,
            "imgpipe_http_requests_total",
            method="POST",
            route="/v1/compare",
            status="200",
        )
        == 1
    )
    assert (
        _sample(
            text,
            "imgpipe_http_requests_total",
            method="GET",
            route="/v1/batches/{batch_id}",
            status="404",
        )
        == 1
    )
    assert _sample(text, "imgpipe_http_request_seconds_count", route="/v1/compare") == 2


def test_cors_allows_only_configured_origins(api: ApiFactory) -> None:
    server = api(cors_origins="https://dash.example.com")
    preflight = {"Access-Control-Request-Method": "POST"}
    allowed = server.http.options(
        "/v1/compare", headers={"Origin": "https://dash.example.com", **preflight}
    )
    other = server.http.options(
        "/v1/compare", headers={"Origin": "https://evil.example.com", **preflight}
    )

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://dash.example.com"
    assert "access-control-allow-origin" not in other.headers


def test_dashboard_pages_render_batches_and_creators(api: ApiFactory, covers: FaultServer) -> None:
    server = api()
    batch = wait_for_batch(server, upload(server, two_creators(covers)).json()["batch_id"])
    batch_id = batch["batch_id"]
    collage = next(c["collage_key"] for c in batch["creators"] if c["creator"] == "alice")

    home = server.http.get("/").text
    page = server.http.get(f"/batches/{batch_id}").text
    creator = server.http.get("/creators/alice").text
    missing = server.http.get("/batches/20990101-000000-deadbeef")

    assert f'href="/batches/{batch_id}"' in home
    assert 'data-status="completed_with_failures"' in home
    preview = collage.removesuffix(".jpg") + ".w480.webp"
    assert f'src="/v1/collages/{preview}"' in page and 'loading="lazy"' in page
    assert f'srcset="/v1/collages/{preview} 1x, /v1/collages/{collage} 2x"' in page
    served = server.http.get(f"/v1/collages/{preview}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/webp"
    assert page.count('class="tile"') == 2  # carol failed: no collage tile
    assert "http_404 × 2" in page  # failures by reason
    assert covers.url("/gone.jpg") in page  # the failed URL is named
    assert f'href="/batches/{batch_id}"' in creator and f'src="/v1/collages/{collage}"' in creator
    assert missing.status_code == 404 and "20990101-000000-deadbeef" in missing.text
    assert server.http.get("/creators/nobody").status_code == 404


def test_a_large_batch_page_is_paged_and_filtered_by_status(
    api: ApiFactory, covers: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgpipe.entrypoints.api import dashboard

    monkeypatch.setattr(dashboard, "PAGE_SIZE", 4)
    server = api()
    red = covers.add("/red.jpg", Serve(photo_jpeg(3, (300, 400))))
    gone = covers.add("/gone.jpg", Status(404))
    rows = "".join(f"c{i:02d},{gone if i in (1, 7) else red}\n" for i in range(10))
    batch_id = wait_for_batch(server, upload(server, "creator,url\n" + rows).json()["batch_id"])[
        "batch_id"
    ]

    def creators_on(query: str) -> list[str]:
        page = server.http.get(f"/batches/{batch_id}{query}").text
        return re.findall(r'<tr data-creator="([^"]+)"', page)

    first = server.http.get(f"/batches/{batch_id}").text
    assert creators_on("") == ["c00", "c01", "c02", "c03"]
    assert creators_on("?page=3") == ["c08", "c09"]
    assert creators_on("?status=failed") == ["c01", "c07"]
    assert "creators 1–4 of 10 · page 1 of 3" in first
    assert f'href="/batches/{batch_id}?page=2"' in first and 'rel="next"' in first
    assert 'data-live="0"' in first  # 10 creators do not fit one page: no re-render per creator
    assert server.http.get(f"/batches/{batch_id}?status=bogus").status_code == 422
