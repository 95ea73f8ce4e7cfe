"""``deploy/build_package.py``: the Lambda zip works on its own, its own boto3 included.

The package is built for this interpreter (``--platform host``; ``make package``
builds the same thing for Python 3.12 on manylinux), unzipped, and imported by a
``python -I -S`` process that sees the standard library and the unzipped folder
only. It needs PyPI (pip's cache makes reruns fast).

The zip bundles a pinned boto3 (>= 1.35, for S3's ``IfNoneMatch``) instead of
relying on the runtime's; importing the handlers still loads none of it (boto3
loads on the first event, not at import).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "build_package.py"

pytestmark = pytest.mark.slow

# Runs in the isolated interpreter: imports, then three requests through the API
# handler (Mangum -> FastAPI -> the local backend), pages and static files included,
# then the bundled SDK: where it comes from and whether S3 PutObject takes IfNoneMatch.
PROBE = textwrap.dedent(
    """
    import importlib.util, json, sys
    sys.path.insert(0, sys.argv[1])
    import imgpipe.entrypoints.aws_lambda as functions
    import imgpipe.entrypoints.api_lambda as api
    handlers = ("handler", "planner_handler", "worker_handler", "compress_handler",
                "sweep_handler")
    assert all(callable(getattr(functions, h)) for h in handlers) and callable(api.handler)
    import aws_lambda_powertools.utilities.batch, imgpipe.bootstrap, imgpipe.service.fanout
    import imgpipe.adapters.emf_metrics, imgpipe.settings, mangum, PIL.Image, numpy

    def get(path):
        http = {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1"}
        event = {
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"host": "api.example"}, "isBase64Encoded": False,
            "requestContext": {"http": http, "stage": "$default", "requestId": "r1"},
        }
        response = api.handler(event, None)
        return response["statusCode"], response["headers"].get("content-type", "")

    report = {
        "aws_modules": sorted(m for m in sys.modules if m.startswith(("boto3", "botocore"))),
        "responses": [get("/healthz"), get("/"), get("/static/app.css")],
    }
    import boto3, botocore
    s3 = boto3.session.Session().client("s3", region_name="us-east-1")
    put = s3.meta.service_model.operation_model("PutObject").input_shape.members
    report.update({
        "files": {
            m: getattr(sys.modules[m], "__file__", "")
            for m in ("imgpipe", "pydantic", "boto3", "botocore", "s3transfer")
            if m in sys.modules or importlib.import_module(m)
        },
        "boto3": boto3.__version__,
        "imgpipe": __import__("imgpipe").__version__,
        "botocore": botocore.__version__,
        "if_none_match": "IfNoneMatch" in put,
    })
    print(json.dumps(report))
    """
)


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("package")
    subprocess.run(
        [sys.executable, str(SCRIPT), "--platform", "host", "--out", str(out)],
        check=True,
        timeout=600,
    )
    return out / "imgpipe-lambda.zip"


def test_zip_holds_the_code_its_data_and_a_pinned_sdk(package: Path) -> None:
    names = zipfile.ZipFile(package).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert "imgpipe/entrypoints/aws_lambda.py" in names
    assert "imgpipe/templates/gallery.html" in names
    assert "imgpipe/templates/dashboard/base.html" in names
    assert "imgpipe/static/app.css" in names
    assert {"pydantic", "PIL", "mangum", "fastapi", "aws_lambda_powertools"} <= tops
    assert {"boto3", "botocore", "s3transfer"} <= tops
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith("bin/")]
    # OpenCV (the [smart] extra, 218 MB with NumPy) stays out: smart crop runs on
    # saliency alone there (README, "Smart crop").
    assert not tops & {"cv2", "opencv_python_headless.libs"}


def test_zip_is_deterministic(package: Path, tmp_path: Path) -> None:
    entries = zipfile.ZipFile(package).infolist()
    assert [e.filename for e in entries] == sorted(e.filename for e in entries)
    assert {e.date_time for e in entries} == {(1980, 1, 1, 0, 0, 0)}
    spec = importlib.util.spec_from_file_location("build_package", SCRIPT)
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    (package.parent / "lambda" / "imgpipe" / "py.typed").touch()  # a newer mtime changes nothing
    again = tmp_path / "again.zip"
    build.write_zip(package.parent / "lambda", again)
    assert again.read_bytes() == package.read_bytes()


def test_bundled_boto3_has_s3_conditional_writes(package: Path) -> None:
    """boto3 >= 1.35 (PutObject IfNoneMatch), as pinned by the build and required by [aws]."""
    spec = importlib.util.spec_from_file_location("build_package", SCRIPT)
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    names = zipfile.ZipFile(package).namelist()
    for dist in ("boto3", "botocore"):
        (metadata,) = [n for n in names if re.fullmatch(rf"{dist}-[^/]+\.dist-info/METADATA", n)]
        text = zipfile.ZipFile(package).read(metadata).decode()
        bundled = re.search(r"^Version: (\S+)$", text, re.M)
        assert bundled is not None
        assert version(bundled.group(1)) >= (1, 35)
        # exactly the lock's pin, in a host build too
        assert build.locked_versions(build.lock_file("x86_64"))[dist] == bundled.group(1)


def test_unzipped_package_fits_lambda(package: Path) -> None:
    """Lambda refuses a function whose unzipped package exceeds 250 MB."""
    unzipped = sum(entry.file_size for entry in zipfile.ZipFile(package).infolist())
    print(f"unzipped {unzipped / 2**20:.1f} MiB, zipped {package.stat().st_size / 2**20:.1f} MiB")
    assert unzipped < 250 * 1024 * 1024


def test_handlers_import_and_serve_from_the_unzipped_package_alone(
    package: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "task"
    zipfile.ZipFile(package).extractall(folder)
    env = {"IMGPIPE_BACKEND": "local", "IMGPIPE_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(folder)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for module, path in report["files"].items():
        assert Path(path).is_relative_to(folder), f"{module} came from {path}"
    # Importing the handlers loads no SDK (cold start). Powertools' user-agent module
    # probes `import botocore` (the package's __init__ only, no client or loader), as it
    # does against the runtime's copy on Lambda.
    assert set(report["aws_modules"]) <= {"botocore"}
    assert version(report["boto3"]) >= (1, 35)
    assert version(report["botocore"]) >= (1, 35)
    assert report["if_none_match"] is True
    # The version the User-Agent and the OpenAPI document show: pyproject's, not a fallback.
    assert (
        report["imgpipe"]
        == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    )
    assert report["responses"] == [
        [200, "application/json"],
        [200, "text/html; charset=utf-8"],
        [200, "text/css; charset=utf-8"],
    ]
