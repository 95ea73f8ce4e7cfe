"""Build the Lambda package: ``build/lambda/`` (the SAM CodeUri) and ``build/imgpipe-lambda.zip``.

The runtime dependencies (core, ``[aws]`` and ``[api]`` extras, so Mangum too) are
installed from wheels for the Lambda platform, then boto3, botocore and s3transfer
are removed with the packages only they needed: the Lambda runtime provides them,
and a second copy would shadow the runtime's matching set. The imgpipe package
(templates and static files included) is copied in, and the zip is deterministic
(sorted entries, fixed timestamps and modes)::

    python deploy/build_package.py                  # python3.12, x86_64 (make package)
    python deploy/build_package.py --arch arm64
    python deploy/build_package.py --platform host  # this interpreter (tests)
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("aws", "api")
PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore", "s3transfer"})
# Python 3.12 on Lambda runs on Amazon Linux 2023 (glibc 2.34). pip does not widen a
# manylinux_2_X platform to older ones by itself, so every tag from 2.28 down is named.
GLIBC_MINORS = range(28, 16, -1)
UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda's limit for an unzipped package
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise SystemExit(f"cannot read requirement {requirement!r}")
    return normalize(match.group(1))


def runtime_requirements() -> list[str]:
    """The project's dependencies plus the extras the Lambda functions use."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in EXTRAS:
        requirements += project["optional-dependencies"][extra]
    return requirements


def pip_install(requirements: list[str], target: Path, platform: str, arch: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--target", str(target), "--only-binary=:all:", "--no-compile"]
    if platform == "lambda":
        for minor in GLIBC_MINORS:
            command += ["--platform", f"manylinux_2_{minor}_{arch}"]
        command += ["--platform", f"manylinux2014_{arch}", "--implementation", "cp"]
        command += ["--python-version", "3.12"]
    subprocess.run([*command, *requirements], check=True)


def installed(target: Path) -> dict[str, tuple[Path, set[str]]]:
    """name -> (dist-info folder, names it requires outside of its own extras)."""
    found: dict[str, tuple[Path, set[str]]] = {}
    for info in target.glob("*.dist-info"):
        metadata = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        requires = {
            requirement_name(line)
            for line in metadata.get_all("Requires-Dist") or []
            if "extra" not in line.partition(";")[2]
        }
        found[normalize(metadata["Name"])] = (info, requires)
    return found


def uninstall(target: Path, info: Path) -> None:
    record = (info / "RECORD").read_text(encoding="utf-8").splitlines()
    for row in csv.reader(record):
        path = (target / row[0]).resolve()
        if path.is_relative_to(target.resolve()) and path.is_file():
            path.unlink()
    shutil.rmtree(info, ignore_errors=True)


def remove_runtime_provided(target: Path, roots: set[str]) -> list[str]:
    """Remove boto3 & co, then whatever only they required; returns the removed names."""
    dists = installed(target)
    removed = sorted(PROVIDED_BY_RUNTIME & dists.keys())
    candidates: set[str] = set()
    for name in removed:
        candidates |= dists[name][1]
        uninstall(target, dists[name][0])
    while True:
        dists = installed(target)
        required = roots | {r for _, requires in dists.values() for r in requires}
        orphans = sorted(n for n in candidates if n in dists and n not in required)
        if not orphans:
            return removed
        for name in orphans:
            candidates |= dists[name][1]
            uninstall(target, dists[name][0])
            removed.append(name)


def tidy(target: Path) -> None:
    """Drop what Lambda never uses: bytecode caches and console scripts of dependencies."""
    for cache in sorted(target.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    shutil.rmtree(target / "bin", ignore_errors=True)
    for folder in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):  # left empty by an uninstall
            folder.rmdir()


def write_zip(source: Path, archive: Path) -> None:
    """Same files, same bytes: sorted entries, fixed dates and permissions."""
    archive.unlink(missing_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        files = {p.relative_to(source).as_posix(): p for p in source.rglob("*") if p.is_file()}
        for name, path in sorted(files.items()):
            entry = zipfile.ZipInfo(name, ZIP_DATE)
            entry.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(entry, path.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--arch", choices=("x86_64", "arm64"), default="x86_64")
    parser.add_argument(
        "--platform",
        choices=("lambda", "host"),
        default="lambda",
        help="lambda: manylinux wheels for Python 3.12; host: this interpreter's own",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    args = parser.parse_args(argv)

    target = args.out / "lambda"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    requirements = runtime_requirements()
    arch = "aarch64" if args.arch == "arm64" else "x86_64"
    pip_install(requirements, target, args.platform, arch)
    roots = {requirement_name(r) for r in requirements} - PROVIDED_BY_RUNTIME
    removed = remove_runtime_provided(target, roots)
    shutil.copytree(
        ROOT / "src" / "imgpipe",
        target / "imgpipe",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    tidy(target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    if size > UNZIPPED_LIMIT:
        raise SystemExit(f"{target} is {size / 2**20:.0f} MiB, over Lambda's 250 MiB")
    archive = args.out / "imgpipe-lambda.zip"
    write_zip(target, archive)
    print(f"removed (provided by the Lambda runtime): {', '.join(removed)}")
    print(f"{target}: {size / 2**20:.1f} MiB unzipped")
    print(f"{archive}: {archive.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
