"""The sdist and wheel build, and the wheel alone, in a clean virtualenv, runs the example.

What ``pipx install .`` and ``pip install imgpipe`` do, minus pipx: ``python -m build``
(sdist, then the wheel from the sdist), then a fresh venv without the dev extras,
the wheel installed (its dependencies from the package index), and that venv's
``imgpipe`` renders ``examples/covers.csv`` from outside the checkout. Templates
and static files must be in the wheel, or the gallery and the dashboard break.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
PACKAGE_DATA = (
    "imgpipe/py.typed",
    "imgpipe/templates/gallery.html",
    "imgpipe/templates/dashboard/base.html",
    "imgpipe/static/app.css",
)


def outside_env(**extra: str) -> dict[str, str]:
    """This environment without what points at the checkout or the shared venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"
    return {**env, **extra}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=900,
        env=outside_env(),
    )
    return out


def test_the_wheel_carries_package_data_license_and_metadata(dist: Path) -> None:
    (wheel,) = dist.glob(f"imgpipe-{VERSION}-py3-none-any.whl")
    assert len(list(dist.glob(f"imgpipe-{VERSION}.tar.gz"))) == 1
    names = zipfile.ZipFile(wheel).namelist()
    for path in PACKAGE_DATA:
        assert path in names, path
    info = f"imgpipe-{VERSION}.dist-info"
    assert f"{info}/licenses/LICENSE" in names
    assert "the imgpipe authors" in zipfile.ZipFile(wheel).read(f"{info}/licenses/LICENSE").decode()
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert "License-Expression: MIT" in metadata
    assert "Classifier: Programming Language :: Python :: 3.11" in metadata
    assert "Keywords: collage" in metadata
    assert (
        "imgpipe = imgpipe.entrypoints.cli:main"
        in zipfile.ZipFile(wheel).read(f"{info}/entry_points.txt").decode()
    )


def test_the_wheel_in_a_clean_venv_runs_the_example(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("imgpipe-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=900,
        env=outside_env(),
    )
    imgpipe = env_dir / "bin" / "imgpipe"
    # The venv has only the core: no test tools, no extras.
    freeze = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "freeze"],
        capture_output=True, text=True, check=True, env=outside_env(),
    ).stdout.lower()  # fmt: skip
    installed = {line.split("==")[0].split(" @ ")[0] for line in freeze.splitlines()}
    assert "imgpipe" in installed and "charset-normalizer" in installed
    assert not installed & {"pytest", "fastapi", "boto3", "moto"}

    version = subprocess.run(
        [str(imgpipe), "--version"], capture_output=True, text=True, env=outside_env()
    )
    assert version.stdout.strip() == f"imgpipe {VERSION}", version.stderr

    out = tmp_path / "out"
    run = subprocess.run(
        [str(imgpipe), "run", str(ROOT / "examples" / "covers.csv"), "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: nothing may come from src/
        timeout=300,
        env=outside_env(),
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    rendered = [c for c in summary["creators"] if c["collage_key"]]
    assert len(rendered) >= 5
    for creator in rendered:
        assert (out / creator["collage_key"]).is_file()
    assert len(list((out / "collages" / "by-creator").glob("*/collage_*.jpg"))) == len(rendered)
    gallery = (out / summary["gallery_key"]).read_text()  # rendered from the wheel's template
    assert "<html" in gallery.lower()
