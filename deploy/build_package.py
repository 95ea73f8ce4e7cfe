"""Build the Lambda package: ``build/lambda/`` (the SAM CodeUri) and ``build/imgpipe-lambda.zip``.

The runtime dependencies (core, ``[aws]`` and ``[api]`` extras, so Mangum too) are
installed from wheels for the Lambda platform, with boto3 and botocore pinned
(``SDK_PINS``): the code needs S3's conditional put (``IfNoneMatch``, boto3 1.35),
and the runtime's own copy is whatever AWS last shipped with the Python runtime,
so the package brings the version the tests ran against; /var/task comes first
on the function's path, so it shadows the runtime's set. The imgpipe package
(templates and static files included) is copied in, and the zip is deterministic
(sorted entries, fixed timestamps and modes)::

    python deploy/build_package.py                  # python3.12, x86_64 (make package)
    python deploy/build_package.py --arch arm64
    python deploy/build_package.py --platform host  # this interpreter (tests)
"""

from __future__ import annotations

import argparse
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
# The SDK in the package, pinned together (boto3 requires its own botocore series).
# At least 1.35: S3 conditional writes (PutObject IfNoneMatch) arrived in 1.35.
SDK_PINS = ("boto3==1.44.8", "botocore==1.44.8")
MIN_BOTO3 = (1, 35)
# Python 3.12 on Lambda runs on Amazon Linux 2023 (glibc 2.34). pip does not widen a
# manylinux_2_X platform to older ones by itself, so every tag from 2.28 down is named.
GLIBC_MINORS = range(28, 16, -1)
UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda's limit for an unzipped package
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


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


def write_metadata(target: Path) -> None:
    """imgpipe's own dist-info, so that ``importlib.metadata`` finds its version on
    Lambda too (User-Agent, OpenAPI): the package is copied in, not pip-installed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    info = target / f"imgpipe-{project['version']}.dist-info"
    info.mkdir()
    metadata = f"Metadata-Version: 2.1\nName: imgpipe\nVersion: {project['version']}\n"
    (info / "METADATA").write_text(metadata, encoding="utf-8")


def installed_version(target: Path, name: str) -> tuple[int, ...]:
    """The version of ``name`` installed in ``target`` (from its dist-info)."""
    for info in target.glob("*.dist-info"):
        metadata = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        if normalize(metadata["Name"]) == normalize(name):
            return tuple(int(part) for part in re.findall(r"\d+", metadata["Version"])[:3])
    raise SystemExit(f"{name} is not in {target}")


def tidy(target: Path) -> None:
    """Drop what Lambda never uses: bytecode caches and console scripts of dependencies."""
    for cache in sorted(target.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    shutil.rmtree(target / "bin", ignore_errors=True)
    for folder in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):  # left empty once the caches are gone
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
    requirements = [*runtime_requirements(), *SDK_PINS]
    arch = "aarch64" if args.arch == "arm64" else "x86_64"
    pip_install(requirements, target, args.platform, arch)
    boto3 = installed_version(target, "boto3")
    if boto3[:2] < MIN_BOTO3:
        raise SystemExit(f"boto3 {boto3} is older than {MIN_BOTO3} (no S3 IfNoneMatch)")
    shutil.copytree(
        ROOT / "src" / "imgpipe",
        target / "imgpipe",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    write_metadata(target)
    tidy(target)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    if size > UNZIPPED_LIMIT:
        raise SystemExit(f"{target} is {size / 2**20:.0f} MiB, over Lambda's 250 MiB")
    archive = args.out / "imgpipe-lambda.zip"
    write_zip(target, archive)
    print(f"boto3 {'.'.join(map(str, boto3))} bundled")
    print(f"{target}: {size / 2**20:.1f} MiB unzipped")
    print(f"{archive}: {archive.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
