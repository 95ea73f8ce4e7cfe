"""What importing imgpipe costs a process: libraries it must not drag in.

Each check runs in a fresh interpreter, as a run or a worker starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _in_fresh_python(code: str, env: dict[str, str] | None = None) -> object:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_download_path_leaves_out_httpx_command_line_client() -> None:
    # httpx imports its CLI (click, rich, pygments: ~90 ms) when they are installed,
    # as they are here; the downloader's transport must work without it.
    loaded = _in_fresh_python(
        "import json, sys, imgpipe.fetch.transport as t, httpx\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules if sys.modules[m] is not None}"
        " & {'pygments', 'click', 'rich'})\n"
        "print(json.dumps([heavy, callable(httpx.AsyncClient), callable(httpx.main)]))"
    )
    assert loaded == [[], True, True]


def test_numpy_gets_one_blas_thread_unless_the_user_chose() -> None:
    code = "import json, os, imgpipe.imaging\nprint(json.dumps(os.environ['OPENBLAS_NUM_THREADS']))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    assert _in_fresh_python(code, env) == "1"
    assert _in_fresh_python(code, {**env, "OPENBLAS_NUM_THREADS": "4"}) == "4"


# What `imgpipe run` must not load: the other commands' dependencies (AWS, the HTTP
# service, SQL, compression and comparison), rich (nothing is drawn for --json), and
# what loads only once a batch works (psutil for the memory monitor, jinja2 for the
# gallery). Each costs start-up on every run; a top-level import would bring it back.
NOT_FOR_RUN = {
    "boto3", "botocore", "fastapi", "uvicorn", "sqlalchemy", "rich", "psutil", "jinja2",
    "imgpipe.entrypoints.aws_lambda", "imgpipe.entrypoints.worker",
    "imgpipe.entrypoints.progress_bar", "imgpipe.entrypoints.report",
    "imgpipe.service.compare", "imgpipe.service.compress", "imgpipe.service.fanout",
    "imgpipe.service.sweep", "imgpipe.adapters.sqs_queue", "imgpipe.adapters.sql_rows",
}  # fmt: skip

_LOADED = (
    "def loaded():\n"
    "    names = {m for m in sys.modules if sys.modules[m] is not None}\n"
    "    return sorted(names | {m.split('.')[0] for m in names})\n"
)


def test_the_cli_and_what_run_imports_leave_out_other_commands_and_later_work() -> None:
    # The modules `run` imports before its batch starts (see cli.run), then the check.
    loaded = _in_fresh_python(
        "import json, sys\n" + _LOADED + "import imgpipe.entrypoints.cli\n"
        "import imgpipe.bootstrap, imgpipe.bootstrap_local, imgpipe.service.batch\n"
        "print(json.dumps(loaded()))"
    )
    assert isinstance(loaded, list)
    assert "imgpipe.bootstrap_local" in loaded  # the probe sees what was imported
    assert sorted(NOT_FOR_RUN & set(loaded)) == []


def test_a_json_run_never_imports_rich_or_other_commands(tmp_path: Path) -> None:
    csv = tmp_path / "empty.csv"
    csv.write_text("creator,cover_url\n")
    out = tmp_path / "out"
    # The whole command, as `imgpipe run` runs it; the modules loaded are read at exit.
    code = (
        "import atexit, json, sys\n"
        + _LOADED
        + "atexit.register(lambda: print(json.dumps(loaded())))\n"
        f"sys.argv = ['imgpipe', 'run', {str(csv)!r}, '--out', {str(out)!r}, '--json']\n"
        "from imgpipe.entrypoints.cli import main\n"
        "main()\n"
    )
    loaded = _in_fresh_python(code)
    assert isinstance(loaded, list)
    assert (out / "state.db").is_file()  # the run happened: it recorded its batch
    assert "imgpipe.service.closing" in loaded  # ... and finished it
    # jinja2 renders the gallery at the batch's end: this run may load it, no other.
    assert sorted((NOT_FOR_RUN - {"jinja2"}) & set(loaded)) == []


def test_help_loads_no_settings_engine_or_image_library() -> None:
    loaded = _in_fresh_python(
        "import contextlib, io, json, sys\n" + _LOADED + "from imgpipe.entrypoints.cli import app\n"
        "sys.argv = ['imgpipe', '--help']\n"
        "with contextlib.redirect_stdout(io.StringIO()) as shown:\n"
        "    with contextlib.suppress(SystemExit):\n"
        "        app()\n"
        "print(json.dumps([loaded(), 'export-csv' in shown.getvalue()]))"
    )
    assert isinstance(loaded, list)
    modules, lists_every_command = loaded
    assert lists_every_command  # every command is registered, with its help
    heavy = {"pydantic", "pydantic_settings", "PIL", "imgpipe.settings", "imgpipe.bootstrap"}
    assert sorted((NOT_FOR_RUN | heavy) & set(modules)) == []
