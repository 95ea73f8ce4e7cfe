"""What importing imgpipe costs a process: libraries it must not drag in.

Each check runs in a fresh interpreter, as a run or a worker starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


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
