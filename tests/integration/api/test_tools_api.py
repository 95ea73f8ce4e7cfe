"""``/v1/compare`` (the original envelope) and ``/v1/compress`` over HTTP, every error path."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.integration.api.conftest import Api, ApiFactory
from tests.support.covers import bomb_png, html_page, solid_png, truncated_jpeg
from tests.support.fake_openai import FakeModelServer
from tests.support.photos import encode_jpeg, photo, photo_jpeg

VERDICT = {
    "similarity": 0.83,
    "similar": True,
    "aspects": {"visual_similarity": 0.9, "style": 0.8, "content": 0.7},
    "explanation": "Same subject, different crop.",
}


def post_compare(api: Api, *images: bytes) -> httpx.Response:
    files = [("files", (f"image{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    return api.http.post("/v1/compare", files=files)


def test_compare_returns_the_envelope_with_scores(api: ApiFactory) -> None:
    server = api()
    original = photo(1)
    answer = post_compare(server, encode_jpeg(original), encode_jpeg(original, quality=55))

    assert answer.status_code == 200
    body = answer.json()
    assert (body["code"], body["msg"]) == (200, "ok")
    data = body["data"]
    assert data["similarity"] > 0.9 and data["similar"] is True
    assert data["backend"] == "builtin" and data["threshold"] == 0.8
    assert {"ssim", "phash", "dhash", "histogram", "aspect", "size"} <= set(data["scores"])
    assert [i["width"] for i in data["images"]] == [960, 960]


def test_unrelated_images_are_not_similar(api: ApiFactory) -> None:
    data = post_compare(api(), photo_jpeg(1), photo_jpeg(2)).json()["data"]
    assert data["similarity"] < 0.5 and data["similar"] is False


@pytest.mark.parametrize("count", [0, 1, 3])
def test_compare_needs_exactly_two_files(api: ApiFactory, count: int) -> None:
    answer = post_compare(api(), *[photo_jpeg(1)] * count)
    assert answer.status_code == 400
    assert answer.json() == {
        "code": 400,
        "msg": f"exactly two images are needed in the field 'files', got {count}",
        "data": None,
    }


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (html_page(), "not_an_image"),
        (bomb_png(), "too_large"),
        (truncated_jpeg(), "decode_error"),
    ],
    ids=["html", "bomb", "truncated"],
)
def test_compare_names_the_bad_image(api: ApiFactory, second: bytes, reason: str) -> None:
    answer = post_compare(api(), photo_jpeg(1), second)
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == 400 and body["data"] is None
    assert body["msg"].startswith(reason) and "image 2" in body["msg"]


def test_compare_refuses_an_image_over_the_byte_limit(api: ApiFactory) -> None:
    big = photo_jpeg(1, (2000, 1500))
    answer = post_compare(api(max_download_bytes=len(big) - 1), photo_jpeg(2), big)
    assert answer.status_code == 400
    assert answer.json()["msg"].startswith("too_large: image 2")


def test_upload_over_the_request_limit_is_413(api: ApiFactory) -> None:
    big = photo_jpeg(1, (2000, 1500))
    answer = post_compare(api(max_upload_bytes=len(big) // 2), big, big)
    assert answer.status_code == 413


def test_compare_timeout_is_a_500_envelope(api: ApiFactory) -> None:
    big = photo_jpeg(1, (3000, 2000))
    answer = post_compare(api(processing_timeout=0.001), big, big)
    assert answer.status_code == 500
    assert answer.json()["code"] == 500
    assert answer.json()["msg"].startswith("timeout")


def test_vision_language_backend_gets_both_images_and_a_schema(api: ApiFactory) -> None:
    with FakeModelServer(VERDICT) as model:
        server = api(compare_backend="vlm", vlm_url=model.base_url, vlm_model="test-vl")
        answer = post_compare(server, photo_jpeg(1, (2400, 1800)), photo_jpeg(2))

    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["backend"] == "vlm"
    assert data["similarity"] == 0.83 and data["similar"] is True
    assert data["scores"] == VERDICT["aspects"]
    assert data["explanation"] == VERDICT["explanation"]
    payload = model.requests[0]
    schema = payload["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["aspects"]["required"] == ["visual_similarity", "style", "content"]
    assert "subject, composition, colors, text" in payload["messages"][0]["content"]
    parts = [p for p in payload["messages"][1]["content"] if p["type"] == "image_url"]
    sent = [_decode_data_url(p["image_url"]["url"]) for p in parts]
    assert max(sent[0].size) == 800  # capped at max_image_size before it was sent
    assert sent[0].format == "JPEG"


def _decode_data_url(url: str) -> Image.Image:
    header, encoded = url.split(",", 1)
    assert header == "data:image/jpeg;base64"
    return Image.open(io.BytesIO(base64.b64decode(encoded)))


@pytest.mark.parametrize(
    ("mode", "message"),
    [("error", "model_error: HTTP 500"), ("garbage", "model_error: unusable answer")],
)
def test_model_failures_are_500_envelopes(api: ApiFactory, mode: str, message: str) -> None:
    with FakeModelServer(VERDICT) as model:
        model.mode = mode
        server = api(compare_backend="vlm", vlm_url=model.base_url, vlm_model="test-vl")
        answer = post_compare(server, photo_jpeg(1), photo_jpeg(2))
    assert answer.status_code == 500
    assert answer.json()["code"] == 500
    assert answer.json()["msg"].startswith(message)


def test_a_silent_model_times_out(api: ApiFactory) -> None:
    with FakeModelServer(VERDICT, delay=3.0) as model:
        server = api(
            compare_backend="vlm",
            vlm_url=model.base_url,
            vlm_model="test-vl",
            processing_timeout=0.5,
        )
        answer = post_compare(server, photo_jpeg(1), photo_jpeg(2))
    assert answer.status_code == 500
    assert answer.json()["msg"].startswith("timeout")


def test_at_most_one_model_call_is_in_flight(api: ApiFactory) -> None:
    with FakeModelServer(VERDICT, delay=0.3) as model:
        server = api(compare_backend="vlm", vlm_url=model.base_url, vlm_model="test-vl")
        images = photo_jpeg(1), photo_jpeg(2)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post_compare(server, *images), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert len(model.requests) == 4
    assert model.max_in_flight == 1


def _jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return image.size


def test_compress_fits_800_and_reports_sizes(api: ApiFactory) -> None:
    data = encode_jpeg(photo(3, (2400, 1600)), quality=98)
    answer = api().http.post("/v1/compress", files={"file": ("big.jpg", data, "image/jpeg")})

    assert answer.status_code == 200
    assert _jpeg_size(answer.content) == (800, 533)
    headers: dict[str, Any] = answer.headers
    assert int(headers["x-original-size"]) == len(data)
    assert int(headers["x-compressed-size"]) == len(answer.content) < len(data)
    assert float(headers["x-ratio"]) == pytest.approx(len(answer.content) / len(data), abs=1e-4)
    assert headers["x-kept-original"] == "false"


def test_compress_never_returns_a_larger_file(api: ApiFactory) -> None:
    tiny = solid_png(size=(60, 60))  # a few hundred bytes; any JPEG is bigger
    answer = api().http.post("/v1/compress", files={"file": ("t.png", tiny, "image/png")})
    assert answer.status_code == 200
    assert answer.content == tiny
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["x-kept-original"] == "true"
    assert answer.headers["x-ratio"] == "1.0"


@pytest.mark.parametrize(
    ("data", "message"),
    [(html_page(), "not an image"), (bomb_png(), "too_large"), (truncated_jpeg(), "decode_error")],
    ids=["html", "bomb", "truncated"],
)
def test_compress_rejects_bad_input(api: ApiFactory, data: bytes, message: str) -> None:
    answer = api().http.post("/v1/compress", files={"file": ("x.jpg", data, "image/jpeg")})
    assert answer.status_code == 400
    assert message in answer.json()["msg"]


def test_compress_without_a_file_is_400(api: ApiFactory) -> None:
    answer = api().http.post("/v1/compress", data={"nothing": "here"})
    assert answer.status_code == 400
    assert "'file'" in answer.json()["msg"]
