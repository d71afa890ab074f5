"""Crash-isolating execution for the fuzz suite and the robustness tests.

run_isolated(code) runs a snippet in a fresh interpreter (a crash or a hang costs one child, not
the test run). Pool runs many generated cases in long-lived child processes that are replaced
when one dies: each case is sent as a small picklable description, the child executes it and
reports "ok" (the call returned, or raised an exception of an accepted kind naming the argument)
or a failure with the exception; a child that dies (a signal, an abort) or stops answering within
the timeout is a "crash" / "hang" failure carrying the case, so the reproducer can be printed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

_REPO = str(Path(__file__).resolve().parents[2])


def _hipgrad_dir() -> str:
    """Where the parent's hipgrad lives (the source tree's python/ or an installed copy): the
    children import the same one."""
    import hipgrad
    return str(Path(hipgrad.__file__).resolve().parents[1])


@dataclass
class Result:
    status: str  # "ok", "fail" (wrong answer / wrong exception), "crash", "hang"
    detail: str = ""
    stdout: str = ""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_hipgrad_dir(), _REPO, env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_isolated(code: str, timeout: float = 60.0) -> Result:
    """`code` in a new interpreter: "ok" when it exits 0, "fail" on an exception (exit 1),
    "crash" on a signal or another exit status, "hang" past `timeout` seconds."""
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=timeout, env=_child_env())
    except subprocess.TimeoutExpired:
        return Result("hang", f"no answer within {timeout} s")
    if r.returncode == 0:
        return Result("ok", stdout=r.stdout)
    status = "fail" if r.returncode == 1 else "crash"
    return Result(status, f"exit status {r.returncode}\n{r.stderr[-3000:]}", r.stdout)


# ---- a pool of long-lived workers ---------------------------------------------------------------
def _serve(conn: Any, runner_path: str, paths: list[str]) -> None:
    sys.path[:0] = paths
    import importlib
    module, name = runner_path.rsplit(":", 1)
    runner: Callable[[Any], str | None] = getattr(importlib.import_module(module), name)
    while True:
        case = conn.recv()
        if case is None:
            return
        try:
            problem = runner(case)
        except BaseException:  # the runner itself failed: report, keep serving
            problem = "runner error:\n" + traceback.format_exc(limit=6)
        conn.send(problem)


class Pool:
    """Runs cases through `runner` ("module:function", called in the child with the case,
    returning None when the behaviour was right or a description of what was wrong)."""

    def __init__(self, runner: str, timeout: float = 20.0) -> None:
        self.runner, self.timeout = runner, timeout
        self._ctx = mp.get_context("spawn")
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        paths = [_hipgrad_dir(), _REPO]
        env_pp = os.environ.get("PYTHONPATH", "")
        os.environ["PYTHONPATH"] = os.pathsep.join(paths + [env_pp])  # for the spawned interpreter
        try:
            self._proc = self._ctx.Process(target=_serve, args=(child, self.runner, paths),
                                           daemon=True)
            self._proc.start()
        finally:
            os.environ["PYTHONPATH"] = env_pp
        child.close()
        self._conn = parent

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
        self._proc = self._conn = None

    def run(self, case: Any) -> Result:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        try:
            self._conn.send(case)
            if not self._conn.poll(self.timeout):
                self._stop()
                return Result("hang", f"no answer within {self.timeout} s")
            problem = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            code = self._proc.exitcode if self._proc is not None else None
            if self._proc is not None:
                self._proc.join(5)
                code = self._proc.exitcode
            self._stop()
            return Result("crash", f"the worker died (exit status {code})")
        return Result("ok") if problem is None else Result("fail", problem)

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        if self._proc is not None:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
        self._proc = self._conn = None
