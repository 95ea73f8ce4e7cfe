"""Commands whose optional extra is missing say which one and how to add it (exit 2).

The dev environment has every extra, so each run hides the module the command
needs (``sys.modules[name] = None`` makes its import fail as a missing package).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def run_without(
    hidden: list[str], *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys\n"
        f"for name in {hidden!r}: sys.modules[name] = None\n"
        "from imgpipe.entrypoints.cli import main\n"
        f"sys.argv = ['imgpipe', *{list(args)!r}]\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", **(env or {})},
    )


@pytest.mark.parametrize(
    ("hidden", "args", "extra"),
    [
        (["uvicorn"], ["serve", "--port", "0"], "api"),
        (["boto3"], ["aws-init"], "aws"),
        (["boto3"], ["aws-open-batches"], "aws"),
        (["boto3"], ["dlq", "list"], "aws"),
        (["boto3"], ["worker", "--exit-when-idle", "0"], "aws"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    hidden: list[str], args: list[str], extra: str
) -> None:
    done = run_without(hidden, *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"needs the '{extra}' extra" in done.stderr
    assert f"[{extra}]" in done.stderr and "install" in done.stderr


def test_aws_open_batches_without_its_table_names_the_setting() -> None:
    done = run_without([], "aws-open-batches", env={"IMGPIPE_DYNAMODB_TABLE_NAME": ""})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "IMGPIPE_DYNAMODB_TABLE_NAME is not set" in done.stderr


def test_dlq_without_its_setting_names_the_setting() -> None:
    done = run_without([], "dlq", "list", env={"SQS_DLQ_URL": ""})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "SQS_DLQ_URL is not set" in done.stderr
