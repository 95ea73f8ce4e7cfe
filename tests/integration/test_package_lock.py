"""The Lambda zip for Lambda itself: installed from the lock of its architecture, the
same bytes on every build.

``make lock`` resolves ``deploy/lambda-requirements-<arch>.txt`` with uv for Python
3.12 on manylinux; ``deploy/build_package.py`` installs exactly that (hashes checked)
and writes the zip with sorted entries, fixed dates and modes, and no bytecode. The
builds here fetch the locked wheels from PyPI (pip's cache makes reruns fast).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "build_package.py"
ARCHES = ("x86_64", "arm64")

pytestmark = pytest.mark.slow


def build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_package", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(arch: str, out: Path) -> Path:
    subprocess.run(
        [sys.executable, str(SCRIPT), "--arch", arch, "--out", str(out)],
        check=True,
        timeout=900,
        capture_output=True,
    )
    return out / "imgpipe-lambda.zip"


@pytest.fixture(scope="module")
def zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """x86_64 built twice (in different folders), arm64 once."""
    return {
        "x86_64": build("x86_64", tmp_path_factory.mktemp("x86-first")),
        "x86_64 again": build("x86_64", tmp_path_factory.mktemp("x86-second")),
        "arm64": build("arm64", tmp_path_factory.mktemp("arm")),
    }


@pytest.mark.parametrize("arch", ARCHES)
def test_the_lock_pins_everything_the_package_needs_with_hashes(arch: str) -> None:
    module = build_module()
    lock = module.lock_file(arch)
    pinned = module.locked_versions(lock)
    boto3 = tuple(int(p) for p in re.findall(r"\d+", pinned["boto3"])[:2])
    assert boto3 >= (1, 35)  # S3 conditional writes (PutObject IfNoneMatch)
    assert pinned["botocore"].split(".")[:2] == pinned["boto3"].split(".")[:2]
    assert {"aws-lambda-powertools", "aws-xray-sdk", "mangum", "pillow", "pydantic"} <= set(pinned)
    for requirement in module.runtime_requirements():  # pyproject + lambda-requirements.in
        name = module.normalize(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        assert name in pinned, f"{requirement} is not in {lock.name}: run `make lock`"
    # --require-hashes: every pinned distribution carries at least one hash
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    unhashed = [b.split(" ", 1)[0] for b in blocks if "==" in b and "--hash=sha256:" not in b]
    assert unhashed == []


def test_two_builds_are_byte_identical(zips: dict[str, Path]) -> None:
    first, again = zips["x86_64"].read_bytes(), zips["x86_64 again"].read_bytes()
    assert first == again


@pytest.mark.parametrize("arch", ARCHES)
def test_each_zip_holds_the_locked_wheels_of_its_architecture(
    zips: dict[str, Path], arch: str
) -> None:
    module = build_module()
    pinned = module.locked_versions(module.lock_file(arch))
    bundle = zipfile.ZipFile(zips[arch])
    entries = bundle.infolist()
    names = [e.filename for e in entries]
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[arch]
    other = {"x86_64": "aarch64", "arm64": "x86_64"}[arch]
    libraries = [n for n in names if re.search(r"\.cpython-312-[^/]*\.so$", n)]
    assert libraries and all(machine in n for n in libraries)
    assert not [n for n in libraries if other in n]
    for dist in ("boto3", "aws_xray_sdk", "aws_lambda_powertools"):
        (metadata,) = [n for n in names if re.fullmatch(rf"{dist}-[^/]+\.dist-info/METADATA", n)]
        bundled = re.search(r"^Version: (\S+)$", bundle.read(metadata).decode(), re.M)
        assert bundled is not None and bundled.group(1) == pinned[module.normalize(dist)]
    assert names == sorted(names)
    assert {e.date_time for e in entries} == {(1980, 1, 1, 0, 0, 0)}
    assert {e.external_attr >> 16 for e in entries} <= {0o100644, 0o100755}
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert not [n for n in names if n.startswith("bin/")]
    # RECORD names only what the zip holds (the console scripts' lines are gone)
    records = [n for n in names if n.endswith(".dist-info/RECORD")]
    listed = {
        line.split(",", 1)[0]
        for record in records
        for line in bundle.read(record).decode().splitlines()
        if line
    }
    assert not [p for p in listed if p.startswith("../")], "RECORD lists files outside"
    assert sum(e.file_size for e in entries) < 250 * 1024 * 1024  # Lambda's unzipped limit
