"""``/v1/compare`` (the original system's envelope) and ``/v1/compress``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from imgpipe.entrypoints.api.envelope import ErrorEnvelope, envelope
from imgpipe.errors import ComparisonError, ImageError
from imgpipe.imaging.formats import SNIFF_BYTES, media_type, sniff_format

router = APIRouter(tags=["images"])

ENVELOPE_EXAMPLE = {"code": 200, "msg": "ok", "data": {"similarity": 0.97, "similar": True}}


@router.post(
    "/compare",
    summary="Compare exactly two images",
    responses={
        200: {"content": {"application/json": {"example": ENVELOPE_EXAMPLE}}},
        400: {
            "model": ErrorEnvelope,
            "description": "wrong number of files, not an image, oversized or a bomb",
        },
        500: {"model": ErrorEnvelope, "description": "timeout or model failure"},
    },
)
async def compare(
    request: Request,
    files: Annotated[
        list[UploadFile] | None, File(description="two images, field given twice")
    ] = None,
) -> JSONResponse:
    given = files or []
    if len(given) != 2:
        return envelope(
            400, f"exactly two images are needed in the field 'files', got {len(given)}"
        )
    datas = [await f.read() for f in given]  # the guard capped the body
    metrics = request.app.state.metrics
    try:
        report = await request.app.state.comparator.compare(*datas)
    except ImageError as exc:
        metrics.incr("failures", kind="compare", reason=exc.reason)
        return envelope(400, f"{exc.reason}: {exc.detail}")
    except ComparisonError as exc:
        metrics.incr("failures", kind="compare", reason=str(exc).split(":", 1)[0])
        return envelope(500, str(exc))
    metrics.incr("images_processed", 2, kind="compare")
    return envelope(200, "ok", report.to_dict())


@router.post(
    "/compress",
    summary="Compress one image to a JPEG within 800x800 (never larger than the input)",
    response_class=Response,
    responses={
        200: {
            "content": {"image/jpeg": {}},
            "description": "the image; sizes in X-Original-Size / X-Compressed-Size / X-Ratio",
        },
        400: {"model": ErrorEnvelope, "description": "not an image, or unusable"},
    },
)
async def compress(
    request: Request, file: Annotated[UploadFile | None, File(description="one image")] = None
) -> Response:
    if file is None:
        raise HTTPException(400, "one image is needed in the field 'file'")
    data = await file.read()  # the guard capped the body
    if sniff_format(data[:SNIFF_BYTES]) is None:
        raise HTTPException(400, f"{file.filename or 'file'}: not an image")
    try:
        result = await request.app.state.compressor.compress(data)
    except ImageError as exc:
        request.app.state.metrics.incr("failures", kind="compress", reason=exc.reason)
        raise HTTPException(400, f"{exc.reason}: {exc.detail}") from exc
    request.app.state.metrics.incr("images_processed", kind="compress")
    return Response(
        result.data,
        media_type=media_type(result.data),
        headers={
            "X-Original-Size": str(result.original_size),
            "X-Compressed-Size": str(result.compressed_size),
            "X-Ratio": str(result.ratio),
            "X-Kept-Original": "true" if result.kept_original else "false",
        },
    )
