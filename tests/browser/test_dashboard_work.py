"""The dashboard shows the work: previews, collage shapes, covers as they arrive,
skipped rows, the uploaded file's name, failed batches, and a phone's width."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from imgpipe.entrypoints.api.app import create_app
from tests.browser.conftest import Screenshots
from tests.integration.api.conftest import api_settings
from tests.support.api_server import ApiServer
from tests.support.covers import PORTRAIT
from tests.support.http_server import FaultServer, Gated, Serve, Status
from tests.support.photos import photo_jpeg

COLS = 4  # a collage is 4 cells of 200 px wide: 800 px
SLOW_COVERS = 6


@pytest.fixture
def covers() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ApiServer]:
    # Held covers stay in flight for seconds: a timeout longer than the test holds them.
    settings = api_settings(default_cols=str(COLS), default_timeout=60.0)
    app = create_app(settings, out_dir=tmp_path / "data")
    with ApiServer(app) as running:
        yield running


def upload(page: Page, server: ApiServer, name: str, text: str) -> str:
    page.goto(server.url("/"))
    page.set_input_files(
        "#upload-form input[name=file]",
        files=[{"name": name, "mimeType": "text/csv", "buffer": text.encode()}],
    )
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(re.compile(r"/batches/\d{8}-\d{6}-[0-9a-f]+$"))
    return page.url.rsplit("/", 1)[1]


def test_a_running_batch_shows_each_creators_covers_then_previews_of_its_shape(
    page: Page, server: ApiServer, covers: FaultServer, screenshots: Screenshots
) -> None:
    gates = [threading.Event() for _ in range(SLOW_COVERS)]
    lines = ["creator,cover_url"]
    for index, gate in enumerate(gates):
        cover = Gated(Serve(photo_jpeg(100 + index, PORTRAIT)), gate)
        lines.append(f"Slow Sam,{covers.add(f'/slow{index}.jpg', cover)}")
    for index in range(2):  # two covers: a one-row collage, 800x200
        lines.append(f"One Row,{covers.add(f'/row{index}.jpg', Serve(photo_jpeg(200 + index)))}")
    lines.append("Bad Rows,ftp://example.com/cover.jpg")  # line 10: not http(s)
    lines.append(",http://example.com/nobody.jpg")  # line 11: no creator
    batch_id = upload(page, server, "May creators.csv", "\n".join(lines) + "\n")

    slow = page.locator("#creators tr", has_text="Slow Sam")
    for released in (2, 4):
        for gate in gates[released - 2 : released]:
            gate.set()
        expect(slow.locator("td.status")).to_have_text(
            f"processing · {released}/{SLOW_COVERS} covers", timeout=30_000
        )
    expect(page.locator("p.sub .source")).to_have_text("May creators.csv")
    screenshots.take(page, "dashboard-running")
    for gate in gates:
        gate.set()
    expect(page.locator("h1 .badge")).to_have_text("completed", timeout=60_000)

    # The skipped CSV rows, with their line numbers.
    skipped = page.locator("#row-problems tbody tr")
    expect(skipped).to_have_count(2)
    expect(skipped.nth(0)).to_contain_text("10")
    expect(skipped.nth(0)).to_contain_text("unsupported_scheme")
    expect(skipped.nth(1)).to_contain_text("11")
    expect(skipped.nth(1)).to_contain_text("missing_creator")

    # Tiles load the preview (the collage itself only for 2x screens).
    images = page.locator(".gallery img")
    expect(images).to_have_count(2)
    for image in images.all():
        image.scroll_into_view_if_needed()
        expect(image).to_have_js_property("complete", True)
        srcset = image.get_attribute("srcset") or ""
        assert re.search(r"\.w480\.webp 1x, .+\.jpg 2x$", srcset), srcset
        assert image.evaluate("img => img.currentSrc").endswith(".w480.webp")
        assert image.evaluate("img => img.naturalWidth") == 480

    # A one-row collage is a short tile of its own shape, not a strip in a grey box.
    row_tile = page.locator(".gallery .tile", has_text="One Row")
    box = row_tile.locator(".thumb").bounding_box()
    image_box = row_tile.locator("img").bounding_box()
    assert box is not None and image_box is not None
    assert abs(box["width"] / box["height"] - 800 / 200) / 4 < 0.03, box
    assert abs(image_box["height"] - box["height"]) < 1.5
    full = page.locator(".gallery .tile", has_text="Slow Sam").locator(".thumb").bounding_box()
    assert full is not None and abs(full["width"] / full["height"] - 800 / 400) / 2 < 0.03

    page.evaluate("window.scrollTo(0, 0)")
    screenshots.take(page, "dashboard-batch")

    page.goto(server.url("/"))
    row = page.locator(f'#batches tr[data-batch="{batch_id}"]')
    expect(row.locator("td.url")).to_have_text("May creators.csv")


def test_a_batch_whose_every_creator_failed_is_failed_and_fits_a_phone(
    browser: Browser, server: ApiServer, covers: FaultServer, screenshots: Screenshots
) -> None:
    long_path = "/covers/" + "a-very-long-folder-name-" * 4
    lines = ["creator,cover_url"]
    for index, name in enumerate(["Lost One", "Lost Two"]):
        for n in range(3):
            url = covers.add(f"{long_path}{index}-{n}.jpg", Status(404 if n else 410))
            lines.append(f"{name},{url}")
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    phone.set_default_timeout(30_000)
    try:
        upload(phone, server, "lost.csv", "\n".join(lines) + "\n")
        expect(phone.locator("h1 .badge")).to_have_text("failed", timeout=60_000)
        expect(phone.locator("#creators .badge", has_text="failed")).to_have_count(2)
        for details in phone.locator("#creators td.problems details").all():
            details.locator("summary").click()  # the failed URLs, opened
        cells = phone.locator("#creators td.problems")
        expect(cells).to_have_count(2)
        for cell in cells.all():
            box = cell.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
            for url in cell.locator("td.url").all():
                inner = url.bounding_box()
                assert inner is not None and inner["x"] + inner["width"] <= 390, inner
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the batch page is {width}px wide on a 390px screen"
        screenshots.take(phone, "dashboard-batch-phone")

        phone.goto(server.url("/"))
        expect(phone.locator("#batches tr[data-batch] .badge").first).to_have_text("failed")
    finally:
        context.close()


def test_an_unusable_upload_says_what_is_wrong(
    page: Page, server: ApiServer, screenshots: Screenshots
) -> None:
    page.goto(server.url("/"))
    page.set_input_files(
        "#upload-form input[name=file]",
        files=[{"name": "export.csv", "mimeType": "text/csv", "buffer": b"who,what\nAnn,x\n"}],
    )
    page.click("#upload-form button[type=submit]")
    message = page.locator("#upload-msg")
    expect(message).to_have_class(re.compile("error"))
    expect(message).to_contain_text("creator")
    expect(message).to_contain_text("creator_column")
    screenshots.take(page, "dashboard-upload-error", full_page=False)


def test_the_encoding_field_reads_an_excel_cp1252_export(
    page: Page, server: ApiServer, covers: FaultServer
) -> None:
    # Excel's "CSV" on a Western Windows: cp1252, whose curly quote and euro sign
    # (0x92, 0x80) are not Latin-1's and whose bytes are not UTF-8.
    names = ["Bruno Díaz", "Dara O’Neil", "Zoë €uro"]
    rows = [
        f"{name},{covers.add(f'/e{n}.jpg', Serve(photo_jpeg(n, PORTRAIT)))}"
        for n, name in enumerate(names)
    ]
    export = ("creator,cover_url\r\n" + "\r\n".join(rows) + "\r\n").encode("cp1252")
    page.goto(server.url("/"))
    assert page.locator("#upload-form select[name=encoding]").input_value() == ""  # detect

    def send(encoding: str) -> None:
        page.set_input_files(
            "#upload-form input[name=file]",
            files=[{"name": "excel.csv", "mimeType": "text/csv", "buffer": export}],
        )
        page.select_option("#upload-form select[name=encoding]", encoding)
        page.click("#upload-form button[type=submit]")

    send("utf-8")  # named wrongly: refused, naming the line and the byte
    message = page.locator("#upload-msg")
    expect(message).to_have_class(re.compile("error"))
    expect(message).to_contain_text("line 2: byte 0xed is not utf-8 text")

    send("cp1252")
    page.wait_for_url(re.compile(r"/batches/\d{8}-\d{6}-[0-9a-f]+$"))
    expect(page.locator("h1 .badge")).to_have_text("completed", timeout=60_000)
    shown = page.locator("#creators tbody tr td:first-child")
    expect(shown).to_have_count(len(names))
    assert sorted(shown.all_inner_texts()) == sorted(names)
