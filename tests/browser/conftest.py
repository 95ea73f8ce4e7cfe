"""Headless Chromium (Debian's ``chromium``) driven by Playwright for the dashboard tests.

`make test` installs Chromium when it is missing; a missing browser fails the
tests with a clear message rather than skipping them. Screenshots go to the
test's temp folder, and also to ``$IMGPIPE_SCREENSHOTS_DIR`` when it is set
(``make screenshots`` uses that to refresh ``docs/``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    path = os.environ.get("IMGPIPE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("Chromium is not installed: run `make test` (it installs Debian's chromium)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API keeps an event loop running in
    # this thread while it is open, and every later asyncio.run() would refuse to start.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_FLAGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    yield opened
    context.close()


class Screenshots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.extra = (
            Path(os.environ["IMGPIPE_SCREENSHOTS_DIR"])
            if os.environ.get("IMGPIPE_SCREENSHOTS_DIR")
            else None
        )
        self.saved: list[Path] = []

    def take(self, page: Page, name: str, *, full_page: bool = True) -> Path:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        self.saved.append(path)
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self.extra / path.name)
        return path


@pytest.fixture
def screenshots(tmp_path: Path) -> Screenshots:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return Screenshots(folder)
