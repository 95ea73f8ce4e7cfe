"""Two images in, a similarity report out: built-in metrics or a vision-language model.

Memory stays bounded whatever arrives: the byte size is checked before decoding,
the pixel count from the header, each decode waits for room in the process's
:class:`~imgpipe.imaging.budget.DecodeBudget` (shared with compression), JPEGs
decode at reduced scale, and each image becomes an RGB preview before anything
else happens: within ``max_image_size`` for the model, within 256 px for the
built-in metrics (which look at 128 px at most)::

    comparator = make_comparator(ComparisonConfig.from_settings(settings), budget=budget)
    report = await comparator.compare(data_a, data_b)
    report.similarity, report.similar, report.scores
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

from PIL import Image

from imgpipe.domain.records import Reason
from imgpipe.errors import ComparisonError, ImageError
from imgpipe.imaging.budget import DecodeBudget
from imgpipe.imaging.decode import load_fitted
from imgpipe.imaging.formats import SNIFF_BYTES, sniff_format
from imgpipe.settings import Settings

__all__ = [
    "BuiltinComparator",
    "Comparator",
    "ComparisonConfig",
    "ComparisonReport",
    "Prepared",
    "VisionLanguageComparator",
    "make_comparator",
    "prepare",
]

_T = TypeVar("_T")

BUILTIN_PREVIEW_SIZE = 256


@dataclass(frozen=True)
class ComparisonConfig:
    """The original system's comparison settings."""

    focus_elements: tuple[str, ...] = ("subject", "composition", "colors", "text")
    comparison_aspects: tuple[str, ...] = ("visual_similarity", "style", "content")
    similarity_threshold: float = 0.8
    max_image_size: int = 800
    image_quality: int = 85
    processing_timeout: float = 60.0
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 64_000_000
    workers: int = 0  # comparisons decoding at once; 0 = one per CPU

    @classmethod
    def from_settings(cls, settings: Settings) -> ComparisonConfig:
        def items(text: str) -> tuple[str, ...]:
            return tuple(part.strip() for part in text.split(",") if part.strip())

        return cls(
            focus_elements=items(settings.focus_elements),
            comparison_aspects=items(settings.comparison_aspects),
            similarity_threshold=settings.similarity_threshold,
            max_image_size=settings.max_image_size,
            image_quality=settings.image_quality,
            processing_timeout=settings.processing_timeout,
            max_bytes=settings.max_download_bytes,
            max_pixels=settings.max_image_pixels,
            workers=settings.compare_workers,
        )


@dataclass
class Prepared:
    """One input after preprocessing: a bounded RGB preview and its JPEG."""

    preview: Image.Image
    jpeg: bytes
    format: str
    bytes: int
    width: int  # of the preview; the original's size is in original_*
    height: int
    original_width: int
    original_height: int


@dataclass
class ComparisonReport:
    similarity: float
    similar: bool
    scores: dict[str, float]
    images: list[dict[str, Any]]
    backend: str
    elapsed_ms: float
    threshold: float
    explanation: str = ""
    focus_elements: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prepare(
    data: bytes,
    config: ComparisonConfig,
    label: str,
    size: int | None = None,
    budget: DecodeBudget | None = None,
) -> Prepared:
    """Size check, safe decode to a preview, JPEG re-encode; ImageError names ``label``.

    The preview fits in ``size`` (default ``config.max_image_size``); with a
    ``budget`` the decode waits for room for its pixels.
    """
    if len(data) > config.max_bytes:
        raise ImageError(
            Reason.TOO_LARGE, f"{label}: {len(data)} bytes, over {config.max_bytes} allowed"
        )
    fmt = sniff_format(data[:SNIFF_BYTES])
    if fmt is None:
        raise ImageError(Reason.NOT_AN_IMAGE, f"{label}: not an image (JPEG, PNG, WebP, GIF...)")
    try:
        # load_fitted checks bytes and pixels before decoding; only then read the header again.
        preview = load_fitted(
            data, size or config.max_image_size, max_pixels=config.max_pixels, budget=budget
        )
        with Image.open(io.BytesIO(data)) as header:
            original = header.size
    except ImageError as exc:
        raise ImageError(exc.reason, f"{label}: {exc.detail}") from exc
    except Exception as exc:
        raise ImageError(Reason.DECODE_ERROR, f"{label}: {type(exc).__name__}: {exc}") from exc
    buffer = io.BytesIO()
    preview.save(buffer, "JPEG", quality=config.image_quality)
    return Prepared(preview, buffer.getvalue(), fmt, len(data), *preview.size, *original)


class Comparator(Protocol):
    async def compare(self, a: bytes, b: bytes) -> ComparisonReport: ...


class _Base:
    """Preparation on a bounded pool, the timeout and the report; subclasses judge."""

    backend = "builtin"

    def __init__(self, config: ComparisonConfig, budget: DecodeBudget | None = None) -> None:
        self.config = config
        self.budget = budget or DecodeBudget(0)
        # Decoding is CPU-bound: more threads than cores add no speed, only decoded
        # images held at once. Requests beyond the pool wait holding just their bytes.
        workers = config.workers or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compare")

    async def _on_pool(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def compare(self, a: bytes, b: bytes) -> ComparisonReport:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.processing_timeout):
                first, second = await self._on_pool(self._prepare_pair, a, b)
                report = await self._judge(first, second)
        except TimeoutError as exc:
            limit = self.config.processing_timeout
            raise ComparisonError(f"timeout: comparison took longer than {limit:g} s") from exc
        report.elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        report.images = [_describe(first), _describe(second)]
        return report

    @property
    def preview_size(self) -> int:
        """Longest side of the previews this backend judges."""
        return self.config.max_image_size

    def _prepare_pair(self, a: bytes, b: bytes) -> tuple[Prepared, Prepared]:
        size, budget = self.preview_size, self.budget
        return (
            prepare(a, self.config, "image 1", size, budget),
            prepare(b, self.config, "image 2", size, budget),
        )

    async def _judge(self, a: Prepared, b: Prepared) -> ComparisonReport:
        raise NotImplementedError

    def _report(self, similarity: float, scores: dict[str, float], why: str) -> ComparisonReport:
        return ComparisonReport(
            similarity=similarity,
            similar=similarity >= self.config.similarity_threshold,
            scores=scores,
            images=[],
            backend=self.backend,
            elapsed_ms=0.0,
            threshold=self.config.similarity_threshold,
            explanation=why,
            focus_elements=list(self.config.focus_elements),
        )


class BuiltinComparator(_Base):
    """pHash, dHash, SSIM, colour histograms, size and aspect; no model needed."""

    @property
    def preview_size(self) -> int:
        # The metrics resize to 128 px at most; 2x that keeps LANCZOS honest, and lets
        # a 1600x1600 JPEG decode at 1/4 scale (0.16 MP) instead of 1/2 (0.64 MP).
        return min(self.config.max_image_size, BUILTIN_PREVIEW_SIZE)

    async def _judge(self, a: Prepared, b: Prepared) -> ComparisonReport:
        from imgpipe.imaging.similarity import similarity_scores

        scores = await self._on_pool(similarity_scores, a.preview, b.preview)
        pixels_a = a.original_width * a.original_height
        pixels_b = b.original_width * b.original_height
        scores["size"] = round(min(pixels_a, pixels_b) / max(pixels_a, pixels_b), 4)
        similarity = scores.pop("overall")
        return self._report(similarity, scores, "")


class VisionLanguageComparator(_Base):
    """Asks a vision-language model behind an OpenAI-compatible API."""

    backend = "vlm"

    def __init__(
        self, config: ComparisonConfig, client: Any, budget: DecodeBudget | None = None
    ) -> None:
        super().__init__(config, budget)
        self.client = client

    async def _judge(self, a: Prepared, b: Prepared) -> ComparisonReport:
        verdict = await self.client.compare(
            a.jpeg, b.jpeg, prompt=self.prompt(), aspects=list(self.config.comparison_aspects)
        )
        return self._report(round(verdict.similarity, 4), verdict.aspects, verdict.explanation)

    def prompt(self) -> str:
        return (
            "You compare two images for a creator-analytics team. Focus on: "
            + ", ".join(self.config.focus_elements)
            + ". Score each aspect from 0 (unrelated) to 1 (identical): "
            + ", ".join(self.config.comparison_aspects)
            + ". Give an overall similarity from 0 to 1, whether the images are similar, "
            "and a one-sentence explanation. Answer only with JSON matching the schema."
        )


def _describe(p: Prepared) -> dict[str, Any]:
    return {
        "format": p.format,
        "bytes": p.bytes,
        "width": p.original_width,
        "height": p.original_height,
        "preview": [p.width, p.height],
    }


def make_comparator(
    config: ComparisonConfig,
    settings: Settings | None = None,
    *,
    budget: DecodeBudget | None = None,
) -> Comparator:
    """The configured backend: built-in metrics, or the model when IMGPIPE_COMPARE_BACKEND=vlm.

    ``budget`` bounds the pixels its decodes hold (unbounded when None).
    """
    if settings is not None and settings.compare_backend == "vlm":
        from imgpipe.adapters.vl_client import VisionLanguageClient

        client = VisionLanguageClient(
            settings.vlm_url,
            settings.vlm_model,
            api_key=settings.vlm_api_key,
            timeout=config.processing_timeout,
            max_in_flight=settings.vlm_max_in_flight,
        )
        return VisionLanguageComparator(config, client, budget)
    return BuiltinComparator(config, budget)
