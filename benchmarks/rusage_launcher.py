"""Run a command and report its own CPU time and peak RSS.

``python -m benchmarks.rusage_launcher OUT -- CMD...``

Why a launcher: Linux carries a process's RSS high-water mark through fork and
exec, so a child started by a big benchmark process (moto, decoded images...)
reports the parent's peak as its own. Started from this small process instead,
the command's ``ru_maxrss`` is its own. The command inherits stdin/stdout/stderr;
``{"maxrss_kb", "user_s", "sys_s", "exit"}`` goes to the file OUT, and the
launcher exits with the command's exit code.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    out, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: python -m benchmarks.rusage_launcher OUT -- CMD...")
    pid = os.posix_spawnp(command[0], command, dict(os.environ))
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    report = {
        "maxrss_kb": usage.ru_maxrss,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "exit": code,
    }
    with open(out, "w") as stream:
        json.dump(report, stream)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
