"""Run `regmix` commands where a crash below Python must be seen, without paying a fresh interpreter per case.

`ForkRunner` starts one child interpreter that imports regmix (and LightGBM) once; for each case that child
forks a grandchild that runs `regmix.cli.main(argv)` with its stderr captured. A grandchild killed by a
signal (SIGSEGV, SIGABRT) comes back as a negative return code, as `subprocess` reports it, and a case that
runs past its time limit is killed by SIGALRM. The server itself never runs user input, so one case's
crash cannot affect the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVER = r"""
import json, os, signal, sys, tempfile
import regmix.cli, regmix.regress, lightgbm  # imported once, shared by every forked case
regmix.cli.build_parser()
out = sys.stdout
for line in sys.stdin:
    case = json.loads(line)
    err = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(err.fileno(), 2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.chdir(case["cwd"])
            signal.alarm(case["timeout"])
            try:
                code = regmix.cli.main(case["argv"])
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    err.seek(0)
    out.write(json.dumps({"rc": rc, "stderr": err.read().decode("utf-8", "replace")}) + "\n")
    out.flush()
    err.close()
"""


class ForkRunner:
    """`run(argv, cwd)` -> (returncode, stderr) of `regmix ARGV` in a forked child of one warm interpreter."""

    def __init__(self):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)

    def run(self, argv, cwd, timeout: int = 60) -> tuple[int, str]:
        self.proc.stdin.write(json.dumps({"argv": [str(a) for a in argv], "cwd": str(cwd), "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the fork server died"
        reply = json.loads(line)
        return reply["rc"], reply["stderr"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
