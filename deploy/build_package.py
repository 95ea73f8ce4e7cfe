"""Build the Lambda package: ``build/lambda/`` (the SAM CodeUri) and ``build/imgpipe-lambda.zip``.

For Lambda (the default) the dependencies come from the lock of the architecture,
``deploy/lambda-requirements-<arch>.txt`` (``make lock`` writes both with uv):
exact versions, every file's hash checked (``--require-hashes``), wheels only,
for Python 3.12 on manylinux. The lock holds the core, the ``[aws]`` and ``[api]``
extras (Mangum too), aws-xray-sdk and a pinned boto3/botocore: the code needs
S3's conditional put (``IfNoneMatch``, boto3 1.35), and the runtime's own copy is
whatever AWS last shipped with the Python runtime, so the package brings the
version the tests ran against; /var/task comes first on the function's path, so
it shadows the runtime's set. The imgpipe package (templates and static files
included) is copied in, and the zip is the same bytes on every machine: sorted
entries, fixed timestamps and modes, no bytecode, no console scripts::

    python deploy/build_package.py                  # python3.12, x86_64 (make package)
    python deploy/build_package.py --arch arm64
    python deploy/build_package.py --platform host  # this interpreter (tests)

``--platform host`` resolves the same requirements for this interpreter instead
(its own wheels, so the lock's hashes do not apply), with the lock's SDK versions.
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
# Bundled besides the extras; the lock pins them (deploy/lambda-requirements.in).
EXTRA_REQUIREMENTS = ROOT / "deploy" / "lambda-requirements.in"
# Pinned from the lock in a host build too: the SDK the tests ran against.
SDK = ("boto3", "botocore")
# At least 1.35: S3 conditional writes (PutObject IfNoneMatch) arrived in 1.35.
MIN_BOTO3 = (1, 35)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.M)
# Python 3.12 on Lambda runs on Amazon Linux 2023 (glibc 2.34). pip does not widen a
# manylinux_2_X platform to older ones by itself, so every tag from 2.28 down is named.
GLIBC_MINORS = range(28, 16, -1)
UNZIPPED_LIMIT = 250 * 1024 * 1024  # Lambda's limit for an unzipped package
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_file(arch: str) -> Path:
    """``deploy/lambda-requirements-x86_64.txt`` or ``-arm64.txt`` (``make lock``)."""
    return ROOT / "deploy" / f"lambda-requirements-{arch}.txt"


def locked_versions(lock: Path) -> dict[str, str]:
    """``{"boto3": "1.44.8", ...}``: the exact pins of a lock file."""
    try:
        text = lock.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SystemExit(f"{lock} is missing: run `make lock`") from exc
    return {normalize(name): version for name, version in PIN.findall(text)}


def runtime_requirements() -> list[str]:
    """The project's dependencies, the extras the Lambda functions use, and the rest of
    what the package bundles (a host build; the lock is made from the same list)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in EXTRAS:
        requirements += project["optional-dependencies"][extra]
    for line in EXTRA_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        if line.split("#", 1)[0].strip():
            requirements.append(line.split("#", 1)[0].strip())
    return requirements


def pip_install(arguments: list[str], target: Path, platform: str, arch: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    command += ["--target", str(target), "--only-binary=:all:", "--no-compile"]
    if platform == "lambda":
        for minor in GLIBC_MINORS:
            command += ["--platform", f"manylinux_2_{minor}_{arch}"]
        command += ["--platform", f"manylinux2014_{arch}", "--implementation", "cp"]
        command += ["--python-version", "3.12"]
    subprocess.run([*command, *arguments], check=True)


def install(target: Path, platform: str, arch: str) -> None:
    """Lambda: exactly the lock (no resolution, hashes checked); host: the same
    requirements for this interpreter, with the lock's SDK versions."""
    lock = lock_file(arch)
    locked = locked_versions(lock)
    if platform == "lambda":
        # --no-deps: the lock is complete, and pip must not pull anything it lacks.
        arguments = ["--require-hashes", "--no-deps", "-r", str(lock)]
    else:
        arguments = [*runtime_requirements(), *(f"{n}=={locked[n]}" for n in SDK)]
    wheel_arch = "aarch64" if arch == "arm64" else "x86_64"
    pip_install(arguments, target, platform, wheel_arch)


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
    """Drop what Lambda never uses: bytecode caches and console scripts of dependencies.

    Their lines go from the dist-infos' RECORD too: a console script starts with the
    build machine's interpreter path, so its hash there would differ between machines.
    """
    for cache in sorted(target.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache)
    for compiled in sorted(target.rglob("*.py[co]")):
        compiled.unlink()
    shutil.rmtree(target / "bin", ignore_errors=True)
    for folder in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):  # left empty once the caches are gone
            folder.rmdir()
    root = target.resolve()
    for record in sorted(target.glob("*.dist-info/RECORD")):
        kept = []
        for line in record.read_text(encoding="utf-8").splitlines(keepends=True):
            path = (root / line.split(",", 1)[0]).resolve()
            if path.is_relative_to(root) and path.is_file():
                kept.append(line)
        record.write_text("".join(kept), encoding="utf-8")


def write_zip(source: Path, archive: Path) -> None:
    """Same files, same bytes: sorted entries, fixed dates and permissions."""
    archive.unlink(missing_ok=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        files = {p.relative_to(source).as_posix(): p for p in source.rglob("*") if p.is_file()}
        for name, path in sorted(files.items()):
            entry = zipfile.ZipInfo(name, ZIP_DATE)
            entry.create_system = 3  # Unix, wherever the build runs, so the modes count
            entry.external_attr = (0o100755 if path.stat().st_mode & 0o111 else 0o100644) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(entry, path.read_bytes(), compresslevel=6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--arch", choices=("x86_64", "arm64"), default="x86_64")
    parser.add_argument(
        "--platform",
        choices=("lambda", "host"),
        default="lambda",
        help="lambda: the lock's manylinux wheels for Python 3.12; host: this interpreter's own",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    args = parser.parse_args(argv)

    target = args.out / "lambda"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    install(target, args.platform, args.arch)
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
