"""The dashboard in headless Chromium: upload a CSV, watch it run, see collages, compare."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from imgpipe.entrypoints.api.app import create_app
from tests.browser.conftest import Screenshots
from tests.integration.api.conftest import api_settings
from tests.support.api_server import ApiServer
from tests.support.covers import PORTRAIT
from tests.support.http_server import Behaviour, FaultServer, Gated, Serve, Status
from tests.support.photos import encode_jpeg, photo, photo_jpeg

CREATORS = ["Ava Stone", "Bruno Díaz", "Chen Wei", "Dara O'Neil", "Emeka Obi", "Farah Haddad"]


@pytest.fixture
def covers() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    app = create_app(api_settings(default_cols="4"), out_dir=tmp_path / "data")
    with ApiServer(app) as running:
        yield running


def write_csv(tmp_path: Path, covers: FaultServer, gate: threading.Event | None = None) -> Path:
    """Six creators with 3-8 covers each; with ``gate``, covers answer once it is set,
    so the run can be watched while it runs."""
    lines = ["creator,cover_url"]
    seed = 0
    for index, name in enumerate(CREATORS):
        for _ in range(3 + index):
            seed += 1
            cover = photo_jpeg(seed, PORTRAIT)
            served: Behaviour = Serve(cover) if gate is None else Gated(Serve(cover), gate)
            lines.append(f'"{name}",{covers.add(f"/c{seed}.jpg", served)}')
    lines.append(f"Ava Stone,{covers.add('/missing.jpg', Status(404))}")
    lines.append(f"Ghost,{covers.add('/gone.jpg', Status(410))}")
    path = tmp_path / "creators.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_upload_watch_and_browse_a_batch(
    page: Page, server: ApiServer, covers: FaultServer, tmp_path: Path, screenshots: Screenshots
) -> None:
    gate = threading.Event()
    csv_path = write_csv(tmp_path, covers, gate)
    page.goto(server.url("/"))
    expect(page.get_by_text("No batches yet")).to_be_visible()
    screenshots.take(page, "dashboard-empty")

    page.set_input_files("#upload-form input[name=file]", str(csv_path))
    page.fill("#upload-form input[name=rows]", "2")
    page.click("#upload-form button[type=submit]")

    page.wait_for_url(re.compile(r"/batches/\d{8}-\d{6}-[0-9a-f]+$"))
    batch_id = page.url.rsplit("/", 1)[1]
    badge = page.locator("h1 .badge")
    expect(badge).to_have_text(re.compile("queued|running"))  # covers are held: it runs
    gate.set()
    expect(badge).to_have_text("completed with failures", timeout=60_000)  # seen live

    tiles = page.locator(".gallery .tile")
    expect(tiles).to_have_count(6)
    images = page.locator(".gallery img")
    for index in range(images.count()):
        images.nth(index).scroll_into_view_if_needed()
        expect(images.nth(index)).to_have_js_property("complete", True)
        # The 480 px preview, not the 800 px collage (which is for 2x screens).
        assert images.nth(index).evaluate("img => img.naturalWidth") == 480
    expect(page.locator(".chip", has_text="http_404 × 1")).to_be_visible()
    expect(page.locator(".chip", has_text="http_410 × 1")).to_be_visible()
    ghost = page.locator("#creators tr", has_text="Ghost")
    expect(ghost.locator(".badge")).to_have_text("failed")

    page.goto(server.url("/"))
    row = page.locator(f'#batches tr[data-batch="{batch_id}"]')
    expect(row.locator('[data-field="done"]')).to_have_text("7")
    expect(row.locator('[data-field="completed"]')).to_have_text("6")
    screenshots.take(page, "dashboard-batches")

    page.goto(server.url(f"/batches/{batch_id}"))
    page.locator(".gallery .tile a.name", has_text="Bruno Díaz").click()
    expect(page.locator("h1")).to_have_text("Bruno Díaz")
    expect(page.locator("#history tbody tr")).to_have_count(1)
    screenshots.take(page, "dashboard-creator")


def test_phone_width_has_no_horizontal_scroll(
    browser: object, server: ApiServer, covers: FaultServer, tmp_path: Path,
) -> None:  # fmt: skip
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    try:
        phone.goto(server.url("/"))
        phone.set_input_files("#upload-form input[name=file]", str(write_csv(tmp_path, covers)))
        phone.click("#upload-form button[type=submit]")
        phone.wait_for_url(re.compile(r"/batches/"))
        expect(phone.locator("h1 .badge")).to_have_text(re.compile("completed"), timeout=60_000)
        batch_url = phone.url
        for url in (server.url("/"), server.url("/compare"), batch_url):
            phone.goto(url)
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{url} is {width}px wide on a 390px screen"
        for image in phone.locator(".gallery img").all():  # lazy images load when seen
            image.scroll_into_view_if_needed()
            expect(image).to_have_js_property("complete", True)
    finally:
        context.close()


def test_compare_shows_both_images_and_the_scores(
    page: Page, server: ApiServer, tmp_path: Path, screenshots: Screenshots
) -> None:
    original = photo(11, (1200, 900))
    first, second = tmp_path / "original.jpg", tmp_path / "reencoded.jpg"
    first.write_bytes(encode_jpeg(original, quality=95))
    second.write_bytes(encode_jpeg(original.resize((600, 450)), quality=60))
    page.goto(server.url("/compare"))

    inputs = page.locator("#compare-form input[type=file]")
    inputs.nth(0).set_input_files(str(first))
    inputs.nth(1).set_input_files(str(second))
    expect(page.locator("#preview-1 img")).to_be_visible()
    expect(page.locator("#preview-2 img")).to_be_visible()
    page.click("#compare-form button[type=submit]")

    expect(page.locator("#verdict")).to_have_text("Similar")
    score = float(page.locator("#score").inner_text())
    assert 0.9 < score <= 1.0
    aspects = page.locator("#bars .bar")
    expect(aspects).to_have_count(6)
    expect(page.locator('#bars .bar[data-aspect="ssim"]')).to_be_visible()
    screenshots.take(page, "dashboard-compare")

    inputs.nth(1).set_input_files(
        files=[{"name": "page.jpg", "mimeType": "image/jpeg", "buffer": b"<html>oops</html>"}]
    )
    page.click("#compare-form button[type=submit]")
    expect(page.locator("#compare-msg")).to_have_text(re.compile("not_an_image: image 2"))


def test_signing_in_keeps_a_session_not_the_key(page: Page, tmp_path: Path) -> None:
    key = "browser-s3cret"
    app = create_app(api_settings(api_key=key), out_dir=tmp_path / "keyed")
    with ApiServer(app) as keyed:
        first = page.goto(keyed.url("/compare"))
        assert first is not None and first.status == 401  # the page itself is not served
        page.fill("#key", key)
        page.click("form.login button[type=submit]")
        page.wait_for_url(keyed.url("/compare"))
        (cookie,) = page.context.cookies()
        # the page's own fetch() calls ride on the same cookie
        listed = page.evaluate("fetch('/v1/batches').then((r) => r.status)")

    assert cookie["name"] == "imgpipe_session" and key not in cookie["value"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert 0 < cookie["expires"] - time.time() <= 12 * 3600 + 60
    assert listed == 200
