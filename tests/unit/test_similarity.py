"""The built-in comparator: identical, re-encoded, resized, cropped and unrelated images."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image

from imgpipe.errors import ComparisonError, ImageError
from imgpipe.imaging.similarity import WEIGHTS, dhash, phash, similarity_scores, ssim
from imgpipe.service.compare import BuiltinComparator, ComparisonConfig, prepare
from tests.support.covers import bomb_png, html_page, truncated_jpeg
from tests.support.photos import encode_jpeg, photo, photo_jpeg


def compare(a: bytes, b: bytes, **config: object) -> dict[str, object]:
    report = asyncio.run(BuiltinComparator(ComparisonConfig(**config)).compare(a, b))  # type: ignore[arg-type]
    return report.to_dict()


def test_identical_images_score_one() -> None:
    data = photo_jpeg(1)
    report = compare(data, data)
    assert report["similarity"] == 1.0
    assert report["similar"] is True
    assert set(report["scores"]) == {*WEIGHTS, "size"}  # type: ignore[arg-type]
    assert all(v == 1.0 for v in report["scores"].values())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "variant",
    [
        lambda im: encode_jpeg(im, quality=60),
        lambda im: encode_jpeg(im.resize((im.width // 2, im.height // 2))),
        lambda im: encode_jpeg(im.resize((im.width * 3 // 2, im.height * 3 // 2))),
    ],
    ids=["reencoded-q60", "half-size", "upscaled"],
)
def test_reencoded_or_resized_copies_score_above_point_nine(variant: object) -> None:
    original = photo(1)
    report = compare(encode_jpeg(original), variant(original))  # type: ignore[operator]
    assert report["similarity"] > 0.9  # type: ignore[operator]
    assert report["similar"] is True


@pytest.mark.parametrize("seed", [2, 3, 4, 5])
def test_unrelated_photos_score_clearly_lower(seed: int) -> None:
    report = compare(photo_jpeg(1), photo_jpeg(seed))
    assert report["similarity"] < 0.5  # type: ignore[operator]
    assert report["similar"] is False


def test_a_crop_sits_between_copies_and_strangers() -> None:
    original = photo(1)
    cropped = original.crop((96, 72, 864, 648)).resize(original.size)
    score = compare(encode_jpeg(original), encode_jpeg(cropped))["similarity"]
    assert 0.5 < score < 0.95  # type: ignore[operator]


def test_threshold_decides_similar() -> None:
    a, b = photo_jpeg(1), photo_jpeg(1, quality=40)
    strict = compare(a, b, similarity_threshold=0.999)
    lenient = compare(a, b, similarity_threshold=0.5)
    assert strict["similarity"] == lenient["similarity"]
    assert strict["similar"] is False and lenient["similar"] is True


def test_size_and_aspect_scores_follow_the_originals() -> None:
    image = photo(1, (1000, 500))
    squeezed = image.resize((500, 500))
    report = compare(encode_jpeg(image), encode_jpeg(squeezed))
    assert report["scores"]["size"] == 0.5  # type: ignore[index]
    assert report["scores"]["aspect"] == pytest.approx(0.5, abs=0.01)  # type: ignore[index]


def test_hashes_are_stable_and_discriminating() -> None:
    a = photo(1)
    assert phash(a) == phash(a.copy())
    assert dhash(a) == dhash(a.copy())
    differing = bin(phash(a) ^ phash(photo(2))).count("1")
    assert differing > 16  # unrelated images differ in many of the 64 bits
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, photo(2)) < 0.5


def test_scores_are_in_range_for_flat_images() -> None:
    white = Image.new("RGB", (200, 200), "white")
    black = Image.new("RGB", (200, 200), "black")
    scores = similarity_scores(white, black)
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert scores["overall"] < 0.6
    assert scores["histogram"] == 0.0


def test_preparation_bounds_the_preview_and_keeps_the_original_size() -> None:
    prepared = prepare(photo_jpeg(1, (4000, 3000)), ComparisonConfig(max_image_size=800), "a")
    assert (prepared.original_width, prepared.original_height) == (4000, 3000)
    assert max(prepared.preview.size) == 800
    assert prepared.preview.mode == "RGB"
    assert prepared.jpeg[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (html_page(), "not_an_image"),
        (bomb_png(), "too_large"),
        (truncated_jpeg(), "decode_error"),
        (b"\xff\xd8\xff" + b"\0" * 64, "not_an_image"),
    ],
    ids=["html", "bomb", "truncated", "garbage-jpeg"],
)
def test_bad_inputs_name_the_image_and_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageError) as caught:
        prepare(data, ComparisonConfig(), "image 2")
    assert caught.value.reason == reason
    assert "image 2" in caught.value.detail


def test_oversized_bytes_are_refused_before_decoding() -> None:
    data = photo_jpeg(1)
    with pytest.raises(ImageError) as caught:
        prepare(data, ComparisonConfig(max_bytes=len(data) - 1), "image 1")
    assert caught.value.reason == "too_large"
    assert str(len(data)) in caught.value.detail


def test_a_comparison_past_its_timeout_is_a_comparison_error() -> None:
    big = photo_jpeg(1, (3000, 2000))
    comparator = BuiltinComparator(ComparisonConfig(processing_timeout=0.001))
    with pytest.raises(ComparisonError, match="timeout"):
        asyncio.run(comparator.compare(big, big))


def test_concurrent_comparisons_decode_no_more_images_than_the_pool_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    import imgpipe.service.compare as compare_module

    in_flight, peak, lock = 0, 0, threading.Lock()
    real_prepare = compare_module.prepare

    def counting_prepare(*args: object, **kwargs: object) -> object:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        try:
            return real_prepare(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            with lock:
                in_flight -= 1

    monkeypatch.setattr(compare_module, "prepare", counting_prepare)
    comparator = BuiltinComparator(ComparisonConfig(workers=2))
    images = [photo_jpeg(seed) for seed in range(6)]

    async def run_all() -> list[float]:
        reports = await asyncio.gather(*(comparator.compare(d, d) for d in images))
        return [r.similarity for r in reports]

    assert asyncio.run(run_all()) == [1.0] * 6
    assert 1 <= peak <= 2  # two workers, each preparing one image at a time; never more
