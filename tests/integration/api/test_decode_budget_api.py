"""``/v1/compress`` and ``/v1/compare`` under a real server share one budget of decoded pixels.

The budget's own counters say how many pixels were ever in flight at once, so these
tests need no timing: the peak never passes the budget, and a request that cannot
get room waits in the budget's queue, where the test can see it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image

from imgpipe.imaging.budget import DecodeBudget
from tests.integration.api.conftest import Api, ApiFactory
from tests.support.images import encode
from tests.support.photos import photo_jpeg

SIDE = 1200  # a PNG decodes at full size: 1.44 MP each
PIXELS = SIDE * SIDE


def rgba_png(seed: int) -> bytes:
    return encode(Image.new("RGBA", (SIDE, SIDE), (seed * 20 % 256, 90, 200, 160)), "PNG")


def post_compress(api: Api, data: bytes) -> httpx.Response:
    return api.http.post("/v1/compress", files={"file": ("x.png", data, "image/png")})


def post_compare(api: Api, a: bytes, b: bytes) -> httpx.Response:
    files = [("files", ("a.jpg", a, "image/jpeg")), ("files", ("b.jpg", b, "image/jpeg"))]
    return api.http.post("/v1/compare", files=files)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.005)


def test_concurrent_compresses_never_hold_more_pixels_than_the_budget(api: ApiFactory) -> None:
    server = api(decode_budget_pixels=2 * PIXELS + PIXELS // 2)  # room for two at a time
    budget: DecodeBudget = server.app.state.decode_budget
    images = [rgba_png(seed) for seed in range(12)]

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda data: post_compress(server, data), images))

    assert [a.status_code for a in answers] == [200] * 12
    assert PIXELS <= budget.peak <= budget.limit  # every decode was charged, never over
    assert (budget.in_flight, budget.waiting) == (0, 0)


def test_compress_and_compare_wait_for_the_same_budget(api: ApiFactory) -> None:
    server = api(decode_budget_pixels=4 * PIXELS)
    budget: DecodeBudget = server.app.state.decode_budget
    cost = budget.acquire(budget.limit)  # the test holds the whole budget

    with ThreadPoolExecutor(2) as pool:
        compressed = pool.submit(post_compress, server, rgba_png(1))
        compared = pool.submit(post_compare, server, photo_jpeg(1), photo_jpeg(2))
        wait_until(lambda: budget.waiting == 2, "both endpoints queue on the one budget")
        assert not compressed.done() and not compared.done()
        budget.release(cost)
        assert compressed.result(timeout=30).status_code == 200
        assert compared.result(timeout=30).status_code == 200

    assert budget.in_flight == 0


def test_an_image_over_the_whole_budget_is_compressed_alone(api: ApiFactory) -> None:
    server = api(decode_budget_pixels=PIXELS // 4)
    budget: DecodeBudget = server.app.state.decode_budget

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda seed: post_compress(server, rgba_png(seed)), range(3)))

    assert [a.status_code for a in answers] == [200] * 3
    assert budget.peak == budget.limit  # each ran alone, charged the whole budget
    assert budget.in_flight == 0


def test_compare_decodes_jpegs_at_the_working_size(api: ApiFactory) -> None:
    server = api()
    budget: DecodeBudget = server.app.state.decode_budget

    answer = post_compare(server, photo_jpeg(1, (1600, 1600)), photo_jpeg(2, (1600, 1600)))

    assert answer.status_code == 200
    assert [i["width"] for i in answer.json()["data"]["images"]] == [1600, 1600]
    assert budget.peak == 400 * 400  # 1/4 scale: 0.16 MP per image, not 1600^2 or 800^2
