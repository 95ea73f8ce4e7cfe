"""Built-in image similarity: perceptual hashes, SSIM, colour histograms, size and aspect.

Pure functions on decoded RGB previews (numpy; imported only by comparison, never
on the collage path). Every score is in [0, 1], 1 meaning "the same":

    scores = similarity_scores(preview_a, preview_b)
    scores["ssim"], scores["phash"], scores["overall"]

Hash scores are rescaled so that unrelated pictures (about half the bits equal
by chance) score near 0 instead of near 0.5.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["WEIGHTS", "dhash", "phash", "similarity_scores", "ssim"]

# How much each aspect counts toward the overall score.
WEIGHTS = {"ssim": 0.3, "phash": 0.25, "dhash": 0.15, "histogram": 0.2, "aspect": 0.1}
_SSIM_SIDE = 128
_SSIM_WINDOW = 7


def _gray(image: Image.Image, size: tuple[int, int]) -> NDArray[np.float64]:
    import numpy as np

    small = image.convert("L").resize(size, Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.float64)


def phash(image: Image.Image) -> int:
    """64-bit DCT hash: low frequencies of a 32x32 grayscale, against their median."""
    import numpy as np

    pixels = _gray(image, (32, 32))
    n = 32
    k = np.arange(n)
    basis = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))  # DCT-II rows
    dct = basis @ pixels @ basis.T
    low = dct[:8, :8].flatten()[1:]  # without the DC term, which is just brightness
    bits = low > np.median(low)
    return int("".join("1" if b else "0" for b in bits), 2)


def dhash(image: Image.Image) -> int:
    """64-bit gradient hash: is each pixel brighter than its right neighbour (9x8)."""
    pixels = _gray(image, (9, 8))
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def _hash_score(a: int, b: int, bits: int) -> float:
    agree = 1 - bin(a ^ b).count("1") / bits
    return max(0.0, (agree - 0.5) / 0.5)


def ssim(a: Image.Image, b: Image.Image) -> float:
    """Mean SSIM of grayscale previews aligned to 128x128 (7x7 uniform windows)."""
    import numpy as np

    x = _gray(a, (_SSIM_SIDE, _SSIM_SIDE))
    y = _gray(b, (_SSIM_SIDE, _SSIM_SIDE))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def mean(values: NDArray[np.float64]) -> NDArray[np.float64]:
        # Sliding-window mean through an integral image: O(pixels), no scipy.
        w = _SSIM_WINDOW
        total = np.pad(values, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        windows = total[w:, w:] - total[:-w, w:] - total[w:, :-w] + total[:-w, :-w]
        result: NDArray[np.float64] = windows / (w * w)
        return result

    mx, my = mean(x), mean(y)
    vx = mean(x * x) - mx * mx
    vy = mean(y * y) - my * my
    cov = mean(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(np.clip(index.mean(), 0.0, 1.0))


def _histogram(image: Image.Image) -> NDArray[np.float64]:
    import numpy as np

    pixels = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.int64) // 32
    codes = pixels[..., 0] * 64 + pixels[..., 1] * 8 + pixels[..., 2]
    counts = np.bincount(codes.flatten(), minlength=512).astype(np.float64)
    result: NDArray[np.float64] = counts / counts.sum()
    return result


def similarity_scores(a: Image.Image, b: Image.Image) -> dict[str, float]:
    """Per-aspect scores and their weighted ``overall``."""
    import numpy as np

    (wa, ha), (wb, hb) = a.size, b.size
    scores = {
        "ssim": ssim(a, b),
        "phash": _hash_score(phash(a), phash(b), 63),
        "dhash": _hash_score(dhash(a), dhash(b), 64),
        "histogram": float(np.minimum(_histogram(a), _histogram(b)).sum()),
        "aspect": min(wa / ha, wb / hb) / max(wa / ha, wb / hb),
    }
    overall = sum(scores[name] * weight for name, weight in WEIGHTS.items())
    scores["overall"] = round(min(1.0, max(0.0, overall)), 4)
    return {name: round(value, 4) for name, value in scores.items()}
