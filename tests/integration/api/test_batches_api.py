"""``/v1/batches``, ``/v1/creators``, ``/v1/collages`` through a real uvicorn server."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
from PIL import Image

from imgpipe.domain.spec import RANGES
from tests.integration.api.conftest import Api, ApiFactory
from tests.support.covers import BLUE, RED, color_close, solid_jpeg
from tests.support.http_server import FaultServer, Serve, Status


def wait_for_batch(api: Api, batch_id: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body: dict[str, Any] = api.http.get(f"/v1/batches/{batch_id}").json()
        if body["status"] not in ("queued", "running"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"batch {batch_id} did not finish: {body}")


def upload(api: Api, csv_text: str, name: str = "covers.csv", **form: str) -> httpx.Response:
    files = {"file": (name, csv_text.encode(), "text/csv")}
    return api.http.post("/v1/batches", files=files, data=form)


def two_creators(covers: FaultServer) -> str:
    red = covers.add("/red.jpg", Serve(solid_jpeg(RED, (300, 400))))
    blue = covers.add("/blue.jpg", Serve(solid_jpeg(BLUE, (300, 400))))
    missing = covers.add("/gone.jpg", Status(404))
    return f"creator,url\nalice,{red}\nalice,{missing}\nbob,{blue}\ncarol,{missing}\n"


def test_upload_runs_the_batch_and_reports_every_creator(
    api: ApiFactory, covers: FaultServer
) -> None:
    server = api()
    answer = upload(server, two_creators(covers), rows="1", cols="2")
    assert answer.status_code == 202
    batch_id = answer.json()["batch_id"]
    assert answer.json()["links"]["self"] == f"/v1/batches/{batch_id}"

    batch = wait_for_batch(server, batch_id)

    assert batch["status"] == "completed_with_failures"
    assert (batch["total_creators"], batch["completed"], batch["failed"]) == (3, 2, 1)
    assert batch["counts"] == {"completed": 2, "failed": 1}
    assert batch["failures_by_reason"] == {"http_404": 2}
    by_name = {c["creator"]: c for c in batch["creators"]}
    assert by_name["alice"]["failed_urls"] == [
        {"line": 3, "url": covers.url("/gone.jpg"), "reason": "http_404"}
    ]
    assert by_name["carol"]["status"] == "failed" and by_name["carol"]["collage_key"] is None
    assert "at least 1" in by_name["carol"]["error"]
    assert batch["settings"]["rows"] == 1 and batch["settings"]["cols"] == 2

    listed = server.http.get("/v1/batches").json()
    assert [b["batch_id"] for b in listed] == [batch_id]
    assert listed[0]["done"] == 3


def test_batch_creators_page_and_filter_and_a_record_only_view(
    api: ApiFactory, covers: FaultServer
) -> None:
    server = api()
    red = covers.add("/red.jpg", Serve(solid_jpeg(RED, (300, 400))))
    gone = covers.add("/gone.jpg", Status(404))
    rows = [f"c{i:02d},{gone if i % 3 == 0 else red}" for i in range(12)]
    batch_id = upload(server, "creator,url\n" + "\n".join(rows) + "\n").json()["batch_id"]
    wait_for_batch(server, batch_id)
    path = f"/v1/batches/{batch_id}"

    record = server.http.get(path, params={"creators": "false"}).json()
    page = server.http.get(path, params={"offset": 5, "limit": 4}).json()
    failed = server.http.get(path, params={"status": "failed"}).json()
    bad = server.http.get(path, params={"status": "exploded"})

    # The record alone: counts from the batch record, no creator list to read.
    assert (record["total_creators"], record["completed"], record["failed"]) == (12, 8, 4)
    assert "creators" not in record and record["done"] == 12
    # A page: the creators in CSV order from the offset; counts still over all of them.
    assert [c["creator"] for c in page["creators"]] == ["c05", "c06", "c07", "c08"]
    assert (page["creators_total"], page["creators_offset"]) == (12, 5)
    assert page["counts"] == {"completed": 8, "failed": 4}
    # A filter: only failed creators, and their total.
    assert [c["creator"] for c in failed["creators"]] == ["c00", "c03", "c06", "c09"]
    assert failed["creators_total"] == 4
    assert failed["failures_by_reason"] == {"http_404": 4}
    assert bad.status_code == 422


def test_collage_is_served_as_the_rendered_jpeg(api: ApiFactory, covers: FaultServer) -> None:
    server = api()
    batch = wait_for_batch(server, upload(server, two_creators(covers)).json()["batch_id"])
    key = next(c["collage_key"] for c in batch["creators"] if c["creator"] == "bob")

    answer = server.http.get(f"/v1/collages/{key}")

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/jpeg"
    assert "immutable" in answer.headers["cache-control"]
    image = Image.open(io.BytesIO(answer.content))
    assert image.size == (7 * 200, 200)  # one cover: one row of the default 7 columns
    assert color_close(image.getpixel((100, 100)), BLUE)
    assert image.getpixel((700, 100)) == (255, 255, 255)  # empty cells stay white


def test_creator_history_spans_batches(api: ApiFactory, covers: FaultServer) -> None:
    server = api()
    csv_text = two_creators(covers)
    first = wait_for_batch(server, upload(server, csv_text).json()["batch_id"])
    second = wait_for_batch(server, upload(server, csv_text).json()["batch_id"])

    history = server.http.get("/v1/creators/alice").json()

    assert [h["batch_id"] for h in history] == [second["batch_id"], first["batch_id"]]
    assert [h["status"] for h in history] == ["skipped_unchanged", "completed"]
    assert history[0]["collage_key"] == history[1]["collage_key"]


def test_not_found_answers_name_what_is_missing(api: ApiFactory) -> None:
    server = api()
    batch = server.http.get("/v1/batches/20990101-000000-deadbeef")
    creator = server.http.get("/v1/creators/nobody")
    collage = server.http.get("/v1/collages/collages/by-creator/nobody/collage.jpg")
    outside = server.http.get("/v1/collages/state.db")
    escape = server.http.get("/v1/collages/collages/..%2F..%2Fstate.db")

    assert batch.status_code == 404 and "20990101-000000-deadbeef" in batch.json()["msg"]
    assert creator.status_code == 404 and "nobody" in creator.json()["msg"]
    assert collage.status_code == 404 and "collage.jpg" in collage.json()["msg"]
    assert outside.status_code == 404 and "only collages/" in outside.json()["msg"]
    assert escape.status_code == 404
    assert escape.headers["content-type"].startswith("application/json")


def test_unusable_csv_is_a_400_and_starts_no_batch(api: ApiFactory) -> None:
    server = api()
    no_columns = upload(server, "name;link\nalice;x\n")
    not_text = server.http.post(
        "/v1/batches", files={"file": ("covers.csv", b"\xff\xd8\xff\x00" * 50, "text/csv")}
    )
    empty = upload(server, "")

    for answer in (no_columns, not_text, empty):
        assert answer.status_code == 400, answer.text
        assert "covers.csv" in answer.json()["msg"] or "column" in answer.json()["msg"]
    assert "column" in no_columns.json()["msg"]
    assert server.http.get("/v1/batches").json() == []


def test_a_cp1252_upload_renders_with_the_right_names(api: ApiFactory, covers: FaultServer) -> None:
    """Excel's "CSV" in the West is cp1252: detected, or named with the encoding field."""
    server = api()
    red = covers.add("/red.jpg", Serve(solid_jpeg(RED, (300, 400))))
    blue = covers.add("/blue.jpg", Serve(solid_jpeg(BLUE, (300, 400))))
    data = f"creator;url\r\nZoë;{red}\r\n€uro Fan;{blue}\r\n".encode("cp1252")
    files = {"file": ("excel.csv", data, "text/csv")}

    detected = server.http.post("/v1/batches", files=files)
    named = server.http.post("/v1/batches", files=files, data={"encoding": "cp1252"})
    wrong = server.http.post("/v1/batches", files=files, data={"encoding": "utf-8"})
    unknown = server.http.post("/v1/batches", files=files, data={"encoding": "klingon"})

    for answer in (detected, named):
        assert answer.status_code == 202, answer.text
        batch = wait_for_batch(server, answer.json()["batch_id"])
        assert batch["status"] == "completed", batch
        assert sorted(c["creator"] for c in batch["creators"]) == ["Zoë", "€uro Fan"]
    assert wrong.status_code == 400 and "line 2: byte 0xeb is not utf-8" in wrong.json()["msg"]
    assert unknown.status_code == 400 and "klingon" in unknown.json()["msg"]


def test_form_validation_and_missing_file_are_422(api: ApiFactory) -> None:
    server = api()
    no_file = server.http.post("/v1/batches", data={"rows": "2"})
    bad_rows = upload(server, "creator,url\na,https://example.com/a.jpg\n", rows="0")
    bad_crop = upload(server, "creator,url\na,https://example.com/a.jpg\n", crop="sideways")

    assert bad_crop.status_code == 422
    assert any(e["loc"][-1] == "crop" for e in bad_crop.json()["data"])
    assert no_file.status_code == 422
    assert any(e["loc"][-1] == "file" for e in no_file.json()["data"])
    assert bad_rows.status_code == 422
    assert any(e["loc"][-1] == "rows" for e in bad_rows.json()["data"])


def test_upload_over_the_limit_is_413(api: ApiFactory) -> None:
    server = api(max_upload_bytes=2048)
    big = "creator,url\n" + "alice,https://example.com/a.jpg\n" * 200

    answer = upload(server, big)

    assert answer.status_code == 413
    assert "2048" in answer.json()["msg"]
    assert server.http.get("/v1/batches").json() == []


def test_uploaded_csv_cannot_read_server_files(
    api: ApiFactory, covers: FaultServer, tmp_path: Any
) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(solid_jpeg(RED))
    server = api()
    csv_text = f"creator,url\nmallory,{secret}\nmallory,file://{secret}\n"

    batch = wait_for_batch(server, upload(server, csv_text).json()["batch_id"])

    mallory = batch["creators"][0]
    assert mallory["status"] == "failed"
    assert {f["reason"] for f in mallory["failed_urls"]} == {"unsupported_scheme"}


def test_every_error_is_the_envelope_and_an_outage_is_503(api: ApiFactory) -> None:
    server = api()
    unknown = server.http.get("/v1/nothing-here")
    wrong_method = server.http.delete("/v1/batches")
    invalid = server.http.get("/v1/batches", params={"limit": "many"})
    server.app.state.backend.state.close()  # the state store went away
    outage = server.http.get("/v1/batches/20990101-000000-deadbeef")

    for answer, status in ((unknown, 404), (wrong_method, 405), (invalid, 422), (outage, 503)):
        body = answer.json()
        assert answer.status_code == status and set(body) == {"code", "msg", "data"}
        assert body["code"] == status and body["msg"]
    assert invalid.json()["msg"].startswith("limit: ")


def test_columns_are_named_by_form_fields_and_errors_name_no_cli_flag(
    api: ApiFactory, covers: FaultServer
) -> None:
    server = api()
    red = covers.add("/red.jpg", Serve(solid_jpeg(RED, (300, 400))))
    csv_text = f"who,what\nalice,{red}\n"

    unnamed = upload(server, csv_text)
    named = upload(server, csv_text, creator_column="who", url_column="what")

    assert unnamed.status_code == 400
    assert "--" not in unnamed.json()["msg"] and "creator_column" in unnamed.json()["msg"]
    assert named.status_code == 202, named.text
    batch = wait_for_batch(server, named.json()["batch_id"])
    assert batch["completed"] == 1
    # The batch names its file, never the server's folder it was stored in.
    assert batch["source"].endswith("covers.csv") and "/" not in batch["source"]
    assert server.http.get("/v1/batches").json()[0]["source"] == batch["source"]


def test_a_creator_is_found_by_display_name_or_key(api: ApiFactory, covers: FaultServer) -> None:
    server = api()
    red = covers.add("/red.jpg", Serve(solid_jpeg(RED, (300, 400))))
    csv_text = f"creator,url\nDIY Dave,{red}\n"
    first = wait_for_batch(server, upload(server, csv_text).json()["batch_id"])
    second = wait_for_batch(server, upload(server, csv_text).json()["batch_id"])

    by_name = server.http.get("/v1/creators/DIY Dave")
    key = by_name.json()[0]["key"]
    by_key = server.http.get(f"/v1/creators/{key}")

    assert by_name.status_code == 200 and key != "DIY Dave"
    assert [h["batch_id"] for h in by_name.json()] == [second["batch_id"], first["batch_id"]]
    assert by_key.json() == by_name.json()
    assert server.http.get("/v1/creators/DIY Dan").status_code == 404


def test_batches_are_paged_with_a_stated_cap(api: ApiFactory, covers: FaultServer) -> None:
    server = api()
    red = covers.add("/red.jpg", Serve(solid_jpeg(RED, (300, 400))))
    ids = [
        wait_for_batch(server, upload(server, f"creator,url\nc{i},{red}\n").json()["batch_id"])[
            "batch_id"
        ]
        for i in range(3)
    ]
    first = server.http.get("/v1/batches", params={"limit": 2})
    rest = server.http.get("/v1/batches", params={"limit": 2, "offset": 2})
    over = server.http.get("/v1/batches", params={"limit": 501})

    listed = [b["batch_id"] for b in server.http.get("/v1/batches").json()]
    assert sorted(listed) == sorted(ids)
    assert [b["batch_id"] for b in first.json()] == listed[:2]
    assert first.headers["link"] == '</v1/batches?offset=2&limit=2>; rel="next"'
    assert [b["batch_id"] for b in rest.json()] == listed[2:] and "link" not in rest.headers
    assert over.status_code == 422  # refused, no longer silently capped


def test_a_malformed_csv_is_a_400_naming_its_line(api: ApiFactory) -> None:
    # Issue 10, finding 3: a header over the csv module's field limit was a 500.
    server = api()
    answer = upload(server, "\ncreator,url," + "x" * 140_000 + "\nalice,a.jpg\n")
    assert answer.status_code == 400, answer.text[:500]
    assert "line 2: unreadable CSV header" in answer.text
    assert len(answer.text) < 2_000  # the error names the header, it does not echo it
    assert server.http.get("/v1/batches").json() == []


def form_ranges(server: Api) -> dict[str, dict[str, Any]]:
    """The upload form's fields that are spec options with a range -> their schema."""
    schema = server.http.get("/openapi.json").json()
    body = schema["paths"]["/v1/batches"]["post"]["requestBody"]["content"]
    ref = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][ref]["properties"]
    return {
        name: next(s for s in field["anyOf"] if s.get("type") == "integer")
        for name, field in fields.items()
        if name in RANGES
    }


def test_form_limits_are_the_spec_ranges_and_the_edges_are_accepted(
    api: ApiFactory, covers: FaultServer
) -> None:
    server = api()
    red = covers.add("/red.jpg", Serve(solid_jpeg(RED)))
    ranges = form_ranges(server)
    assert set(ranges) == {"rows", "cols", "quality", "max_images", "min_images", "near_duplicates"}
    for name, schema in ranges.items():
        assert (schema.get("minimum"), schema.get("maximum")) == (
            RANGES[name].low,
            RANGES[name].high,
        )
    highest = {name: str(RANGES[name].high) for name in ranges}
    answer = upload(server, f"creator,url\nalice,{red}\n", **{**highest, "min_images": "1"})
    assert answer.status_code == 202, answer.text
    assert wait_for_batch(server, answer.json()["batch_id"])["status"] == "completed"


def test_a_form_value_outside_its_range_is_a_422_envelope_naming_the_field(
    api: ApiFactory,
) -> None:
    server = api()
    csv_text = "creator,url\na,https://example.com/a.jpg\n"
    for name in form_ranges(server):
        low, high = RANGES[name].low, RANGES[name].high
        assert low is not None and high is not None
        for value in (low - 1, high + 1):
            answer = upload(server, csv_text, **{name: str(value)})
            body = answer.json()
            assert answer.status_code == 422 and set(body) == {"code", "msg", "data"}, answer.text
            assert body["msg"].startswith(f"{name}: "), body
            assert [e["loc"][-1] for e in body["data"]] == [name]
    assert server.http.get("/v1/batches").json() == []  # nothing was started
