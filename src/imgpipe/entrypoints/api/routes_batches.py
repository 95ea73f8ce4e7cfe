"""``/v1`` batches, creators and collages."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from imgpipe.domain.keys import creator_key
from imgpipe.domain.records import BatchRecord, CreatorRecord, CreatorStatus
from imgpipe.domain.result_rows import line_kind
from imgpipe.domain.spec import RANGES
from imgpipe.errors import InputError, StorageError, column_role
from imgpipe.ports import ObjectStore
from imgpipe.service.creator_covers import (
    COVERS_KEY_FIELD,
    failed_covers,
    load_covers,
    record_covers,
)

router = APIRouter(tags=["batches"])

_TYPES = {
    ".webp": "image/webp",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".json": "application/json",
}


MAX_PAGE = 500  # batches per page of GET /v1/batches
MAX_OFFSET = 10_000  # deeper pages cost a read of every batch before them
MAX_ROW_PROBLEMS = 500  # skipped CSV rows listed with a batch; the count is always exact


def file_name(source: str) -> str:
    """``/srv/data/uploads/x.csv`` or ``s3://b/api-uploads/x.csv`` -> ``x.csv``: no server paths."""
    return re.split(r"[\\/]", source)[-1]


def batch_view(batch: BatchRecord) -> dict[str, Any]:
    data = asdict(batch)
    data["source"] = file_name(batch.source)
    data["status"] = batch.status.value
    data["done"] = batch.completed + batch.failed + batch.skipped
    return data


def creator_view(record: CreatorRecord, store: ObjectStore | None = None) -> dict[str, Any]:
    """A creator's record for pages. A record whose covers did not fit the state store
    keeps them in its metadata document: read from ``store`` (the outputs) when given,
    else only its failure counts are shown (the batch-wide counts need no more)."""
    if COVERS_KEY_FIELD in record.metadata and store is None:
        failed: list[dict[str, Any]] = []
        failures = Counter(record.metadata.get("failures_by_reason", {}))
    else:
        covers = record_covers(record, store) if store else record.metadata.get("covers", [])
        failed = failed_covers(covers)
        failures = Counter(c.get("reason") for c in failed)
    return {
        "creator": record.metadata.get("display_name", record.creator_name),
        "key": record.creator_name,
        "batch_id": record.batch_id,
        "processing_date": record.processing_date,
        "status": record.status.value,
        "images_processed": record.images_processed,
        "collage_key": record.collage_key,
        # Pages show the preview in grids and lay tiles out at the collage's own shape.
        "preview_key": record.metadata.get("preview_key"),
        "width": record.metadata.get("width"),
        "height": record.metadata.get("height"),
        "processing_duration": record.processing_duration,
        "error_count": record.error_count,
        "error": record.metadata.get("error"),
        "failures": dict(failures),
        "failed_urls": _failed_urls(failed),
        # Set when the covers live in the metadata document rather than in the record.
        "covers_key": record.metadata.get(COVERS_KEY_FIELD),
    }


def _failed_urls(failed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"line": c.get("line"), "url": c.get("url"), "reason": c.get("reason")} for c in failed]


def _load_failed_urls(view: dict[str, Any], store: ObjectStore) -> dict[str, Any]:
    """``view`` with the failed URLs its record keeps in its metadata document."""
    if view["covers_key"]:
        covers = load_covers(view["key"], view["covers_key"], store)
        view["failed_urls"] = _failed_urls(failed_covers(covers))
    return view


@router.post("/batches", status_code=202, summary="Upload a CSV and start its batch")
async def create_batch(
    request: Request,
    file: Annotated[UploadFile, File(description="CSV of creators and cover URLs")],
    rows: Annotated[int | None, Form(**RANGES["rows"].bounds())] = None,
    cols: Annotated[int | None, Form(**RANGES["cols"].bounds())] = None,
    quality: Annotated[int | None, Form(**RANGES["quality"].bounds())] = None,
    max_images: Annotated[int | None, Form(**RANGES["max_images"].bounds())] = None,
    min_images: Annotated[int | None, Form(**RANGES["min_images"].bounds())] = None,
    near_duplicates: Annotated[int | None, Form(**RANGES["near_duplicates"].bounds())] = None,
    force: Annotated[bool | None, Form()] = None,
    crop: Annotated[
        Literal["center", "smart"] | None,
        Form(description="center, or smart: the square over the faces (else what stands out)"),
    ] = None,
    creator_column: Annotated[
        str | None, Form(max_length=200, description="the creator column's header")
    ] = None,
    url_column: Annotated[
        str | None, Form(max_length=200, description="the cover URL column's header")
    ] = None,
    encoding: Annotated[
        str | None,
        Form(
            max_length=40,
            description="the CSV's text encoding (utf-8, cp1252, latin-1, utf-16...); "
            "omitted: detected",
        ),
    ] = None,
) -> dict[str, Any]:
    # The guard middleware has capped the body at IMGPIPE_MAX_UPLOAD_BYTES already.
    data = await file.read()
    overrides = {
        k: v
        for k, v in {
            "rows": rows, "cols": cols, "quality": quality, "max_images": max_images,
            "min_images": min_images, "near_duplicates": near_duplicates, "force": force,
            "creator_column": creator_column, "url_column": url_column, "encoding": encoding,
            "crop": crop,
        }.items()
        if v is not None
    }  # fmt: skip
    try:
        batch_id = request.app.state.launcher.launch(data, file.filename or "upload.csv", overrides)
    except InputError as exc:
        role = column_role(exc)
        hint = f" (choose it with the form field {role}_column)" if role else ""
        raise HTTPException(400, f"{exc}{hint}") from exc
    return {"batch_id": batch_id, "status": "queued", "links": {"self": f"/v1/batches/{batch_id}"}}


@router.get(
    "/batches",
    summary="Recent batches, newest first, a page at a time",
    description=(
        f"`limit` batches (1 to {MAX_PAGE}) from `offset` (0 to {MAX_OFFSET}), newest first. "
        'A full page carries a `Link: <...>; rel="next"` header to the next one.'
    ),
)
def list_batches(
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[dict[str, Any]]:
    # The state port lists newest first without a cursor; reading offset + limit is
    # bounded by MAX_OFFSET + MAX_PAGE records.
    batches = request.app.state.backend.state.list_batches(offset + limit)[offset:]
    if len(batches) == limit:
        response.headers["Link"] = (
            f'</v1/batches?offset={offset + limit}&limit={limit}>; rel="next"'
        )
    return [batch_view(b) for b in batches]


def batch_detail(
    request: Request,
    batch_id: str,
    *,
    include_creators: bool = True,
    status: CreatorStatus | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> dict[str, Any] | None:
    """The batch with counts and failures over all its creators, and one page of them.

    ``include_creators=False`` reads the batch record alone (one lookup, what a
    progress poll needs, however large the batch); otherwise ``creators`` holds
    the creators of ``status`` (all when None) from ``offset``, at most ``limit``.
    """
    backend = request.app.state.backend
    state = backend.state
    batch = state.get_batch(batch_id)
    if batch is None:
        pending = request.app.state.launcher.pending(batch_id)
        if pending is None:
            return None
        empty: dict[str, Any] = {
            "creators": [],
            "creators_total": 0,
            "counts": {},
            "live": {},
            "row_problems": [],
        }
        source = file_name(str(pending.get("source", "")))
        return {**pending, **empty, "source": source, "failures_by_reason": {}}
    # Cover counts of the creators fetching right now, whichever process runs them.
    live = request.app.state.launcher.live(batch)
    if not include_creators:
        return {**batch_view(batch), "live": live}
    creators = [creator_view(r) for r in state.creators_in_batch(batch_id)]
    for creator in creators:
        if creator["status"] == CreatorStatus.PROCESSING.value:
            creator["live"] = live.get(creator["key"])
    stats = backend.ledger().plan_stats(batch_id)
    reasons: Counter[str] = Counter()
    for creator in creators:
        reasons.update(creator["failures"])
    statuses = Counter(c["status"] for c in creators)
    if status is not None:
        creators = [c for c in creators if c["status"] == status.value]
    end = None if limit is None else offset + limit
    return {
        **batch_view(batch),
        "counts": dict(statuses),
        "failures_by_reason": dict(reasons.most_common()),
        "creators_total": len(creators),
        "creators_offset": offset,
        # Only the page shown reads the documents of records that keep covers there.
        "creators": [_load_failed_urls(c, backend.store) for c in creators[offset:end]],
        "live": live,
        "row_problems": stats.row_problems[:MAX_ROW_PROBLEMS] if stats else [],
        "row_problems_total": stats.problems_total if stats else 0,
        "line_kind": line_kind(batch.source),  # what each "line" counts, as in the summary
    }


@router.get("/batches/{batch_id}", summary="A batch: counts, creators, failures by reason")
def get_batch(
    request: Request,
    batch_id: str,
    creators: Annotated[
        bool, Query(description="false: the batch record only (cheap, for progress polls)")
    ] = True,
    status: Annotated[
        CreatorStatus | None, Query(description="only creators of this status")
    ] = None,
    offset: Annotated[int, Query(ge=0, description="first creator to include")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="creators to include")] = 1000,
) -> dict[str, Any]:
    detail = batch_detail(
        request, batch_id, include_creators=creators, status=status, offset=offset, limit=limit
    )
    if detail is None:
        raise HTTPException(404, f"no batch {batch_id!r}")
    return detail


@router.get(
    "/creators/{name}",
    summary="A creator's records across batches, newest first",
    description="`name` is the creator's key (as in `key`) or display name (as in the CSV).",
)
def creator_history(
    request: Request, name: str, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict[str, Any]]:
    records = find_creator(request.app.state.backend.state, name, limit)
    if not records:
        raise HTTPException(404, f"no records for creator {name!r}")
    store = request.app.state.backend.store
    return [creator_view(r, store) for r in records]


def find_creator(state: Any, name: str, limit: int) -> list[CreatorRecord]:
    """Records under the key ``name``, else those whose display name is ``name``.

    A display name maps to its sanitised key, or (after a collision within a batch)
    to the key with the full hash; both are read and filtered on the name itself.
    """
    records: list[CreatorRecord] = state.creator_history(name, limit)
    if records:
        return records
    found: list[CreatorRecord] = []
    for key in dict.fromkeys([creator_key(name), creator_key(name, full_hash=True)]):
        if key != name:
            found += state.creator_history(key, limit)
    named = [r for r in found if r.metadata.get("display_name") == name]
    named.sort(key=lambda r: r.processing_date, reverse=True)
    return named[:limit]


@router.get(
    "/collages/{key:path}",
    summary="A stored collage (or a redirect to a presigned URL)",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 307: {"description": "presigned URL"}},
)
def get_collage(request: Request, key: str) -> Response:
    if not key.startswith(("collages/", "results/")):
        raise HTTPException(404, "only collages/ and results/ are served")
    store = request.app.state.backend.store
    try:
        url = store.url_for(key)
        if url.startswith(("http://", "https://")):
            return RedirectResponse(url, status_code=307)
        present = store.exists(key)
    except StorageError as exc:  # a key the store refuses (``..``, reserved names)
        raise HTTPException(404, f"no object {key!r}") from exc
    if not present:
        raise HTTPException(404, f"no object {key!r}")
    data = store.get(key)  # a StorageError now is an outage: 503
    suffix = key[key.rfind(".") :].lower() if "." in key else ""
    return Response(
        data,
        media_type=_TYPES.get(suffix, "application/octet-stream"),
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
