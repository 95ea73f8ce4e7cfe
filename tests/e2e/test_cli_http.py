"""The CLI against a real HTTP server with injected faults: every URL ends with its reason.

A real ``imgpipe run`` process fetches from :class:`FaultServer` on 127.0.0.1, which is
reachable only because the run names ``127.0.0.0/8`` with ``--allow-private-networks``;
without it, nothing may reach the server at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from tests.e2e.test_cli_local import imgpipe, write_csv
from tests.support.covers import (
    BLUE,
    GREEN,
    RED,
    YELLOW,
    bomb_png,
    color_close,
    html_page,
    solid_avif,
    solid_heic,
    solid_jpeg,
    solid_png,
    solid_webp,
    tiny_png,
    truncated_jpeg,
)
from tests.support.http_server import (
    FaultServer,
    Reset,
    Sequence,
    Serve,
    SlowBody,
    Status,
    Truncated,
)

FAST = ("--timeout", "1", "--retries", "1", "--json")
ALLOW = ("--allow-private-networks", "127.0.0.0/8")

# path -> (behaviour, expected reason or None when the cover is used)
ALPHA: dict[str, tuple[Any, str | None]] = {
    "/red.jpg": (Serve(solid_jpeg(RED)), None),
    "/missing.jpg": (Status(404), "http_404"),
    "/flaky.png": (Sequence(Status(500), Serve(solid_png(GREEN), "image/png")), None),
    "/busy.webp": (
        Sequence(Status(429, {"Retry-After": "0"}), Serve(solid_webp(BLUE), "image/webp")),
        None,
    ),
    "/reset.jpg": (Reset(), "connection_error"),
    "/slow.jpg": (SlowBody(solid_jpeg(RED), interval=0.2), "timeout"),
    # the header lies but the bytes are a PNG: judged by magic bytes, it is used
    "/mislabelled.png": (Serve(solid_png(YELLOW), "text/plain"), None),
    "/modern.avif": (Serve(solid_avif(RED), "image/avif"), None),
    "/phone.heic": (Serve(solid_heic(GREEN), "image/heic"), None),
    "/login-wall.jpg": (Serve(html_page(), "image/jpeg"), "not_an_image"),
    "/cut.jpg": (Truncated(solid_jpeg(RED), sent=200), "connection_error"),
    "/short-scan.jpg": (Serve(truncated_jpeg()), "decode_error"),
    "/tiny.png": (Serve(tiny_png(), "image/png"), "too_small"),
}
USED_COLOURS = [RED, GREEN, BLUE, YELLOW, RED, GREEN]  # the used covers, in CSV order


def serve_covers(server: FaultServer, csv_path: Path) -> Path:
    rows = [("Alpha", server.add(path, behaviour)) for path, (behaviour, _) in ALPHA.items()]
    rows += [("Bravo", server.add("/gone-1.jpg", Status(410)))]
    rows += [("Bravo", server.add("/gone-2.jpg", Status(404)))]
    return write_csv(csv_path, rows)


def test_every_url_ends_with_its_exact_outcome(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with FaultServer() as server:
        csv_path = serve_covers(server, tmp_path / "covers.csv")
        # The AVIF and HEIC covers repeat the JPEG's and PNG's flat colours, so they look
        # alike: this test is about how each URL ends, not about near-duplicates.
        result = imgpipe("run", csv_path, "--out", out, *FAST, *ALLOW, "--near-duplicates", "0")
        flaky_hits, busy_hits = server.hits("/flaky.png"), server.hits("/busy.webp")
        agent = server.requests("/red.jpg")[0].headers

    assert result.returncode == 3, result.stderr  # Bravo failed, Alpha did not
    summary = json.loads(result.stdout)
    creators = {c["creator"]: c for c in summary["creators"]}
    assert creators["Alpha"]["status"] == "completed"
    assert creators["Bravo"]["status"] == "failed"
    assert (flaky_hits, busy_hits) == (2, 2)  # one retry each, then success
    assert agent.get("Accept") == "image/*" and agent.get("User-Agent", "").startswith("imgpipe/")

    metadata = json.loads(
        (out / "results" / "metadata" / summary["batch_id"] / "Alpha.json").read_text()
    )
    outcomes = {c["url"].rsplit("/", 1)[-1]: c for c in metadata["covers"]}
    for path, (_, reason) in ALPHA.items():
        cover = outcomes[path.lstrip("/")]
        assert cover["reason"] == reason, (path, cover)
        assert cover["ok"] is (reason is None)
    cells = [outcomes[p.lstrip("/")]["cell"] for p, (_, r) in ALPHA.items() if r is None]
    assert cells == [0, 1, 2, 3, 4, 5]

    failed = {
        (f["creator"], f["url"].rsplit("/", 1)[-1], f["reason"]) for f in summary["failed_urls"]
    }
    expected_failures = {("Alpha", p.lstrip("/"), r) for p, (_, r) in ALPHA.items() if r}
    expected_failures |= {("Bravo", "gone-1.jpg", "http_410"), ("Bravo", "gone-2.jpg", "http_404")}
    assert failed == expected_failures
    assert summary["failures_by_reason"]["connection_error"] == 2

    with Image.open(out / creators["Alpha"]["collage_key"]) as collage:
        assert collage.size == (7 * 200, 200)  # six covers: one row of seven cells
        rgb = collage.convert("RGB")
        for index, colour in enumerate(USED_COLOURS):
            assert color_close(rgb.getpixel((index * 200 + 100, 100)), colour), index
        assert rgb.getpixel((6 * 200 + 100, 100)) == (255, 255, 255)  # empty cells stay white

    html = (out / "index.html").read_text(encoding="utf-8")
    assert creators["Alpha"]["collage_key"] in html
    assert "Bravo" in html and "http_410" in html


def test_without_an_allowance_nothing_reaches_a_private_address(tmp_path: Path) -> None:
    with FaultServer() as server:
        csv_path = serve_covers(server, tmp_path / "covers.csv")
        result = imgpipe("run", csv_path, "--out", tmp_path / "out", *FAST)
        hits = server.hits()

    assert hits == 0
    assert result.returncode == 3
    summary = json.loads(result.stdout)
    assert {f["reason"] for f in summary["failed_urls"]} == {"blocked_address"}
    assert len(summary["failed_urls"]) == len(ALPHA) + 2
    assert summary["totals"]["failed"] == 2


def test_a_cover_over_the_default_pixel_cap_is_too_large(tmp_path: Path) -> None:
    # 9000 x 9000 = 81 MP in a 2 KB PNG: over the 64 MP default, and under Pillow's
    # own bomb check (89 MP), so a pipeline that skipped our cap would try to decode
    # it (and fail on its few rows as decode_error) instead of refusing it unread.
    big = bomb_png(9_000, 9_000)
    assert len(big) < 20 * 1024 * 1024  # the byte cap cannot be what refuses it
    with FaultServer() as server:
        rows = [("Ann", server.add("/big.png", Serve(big, "image/png")))]
        rows += [("Ann", server.add("/ok.png", Serve(solid_png(GREEN), "image/png")))]
        result = imgpipe(
            "run", write_csv(tmp_path / "c.csv", rows), "--out", tmp_path, *FAST, *ALLOW
        )

    assert result.returncode == 0, result.stderr  # one good cover: Ann is rendered
    summary = json.loads(result.stdout)
    [failed] = summary["failed_urls"]
    assert (failed["url"].rsplit("/", 1)[-1], failed["reason"]) == ("big.png", "too_large")
    assert summary["creators"][0]["images_used"] == 1
