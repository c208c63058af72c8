"""The what-if sandbox: real worker processes (spawn), confined (memory, priority, recursion, SIGINT,
parent death), replaced after a timeout, a crash (SIGSEGV, a C-stack overflow) or a memory error,
bounded admission, and a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from node.api.sandbox import (
    Sandbox,
    SandboxBusy,
    SandboxConfig,
    SandboxCrashed,
    SandboxError,
    SandboxOutOfMemory,
    SandboxStopped,
    SandboxTaskFailed,
    SandboxTimeout,
)
from node.api.sandbox_worker import RECURSION_LIMIT

REPO = Path(__file__).resolve().parents[2]
TASK = "tests.api.sandbox_tasks:dispatch"
STARTUP_S = 120.0  # a spawned worker imports numpy/scipy: slow on a loaded machine


def call(name: str, *args: Any) -> tuple:
    return (name, args)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie still answers kill(0): look at its state
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def run_when_ready(sandbox: Sandbox, name: str, *args: Any) -> Any:
    """The first call after a (re)start waits for a worker that may still be importing."""
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            return sandbox.run(name, args)
        except SandboxTimeout:
            if time.monotonic() > deadline:
                raise


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    made: list[Sandbox] = []

    def make(**kw: Any) -> Sandbox:  # normal priority unless asked: a loaded test host starves idle workers
        config = {"workers": 1, "queue": 0, "timeout_s": 30.0, "nice": 0, "idle": False, **kw}
        sandbox = Sandbox(TASK, SandboxConfig(**config)).start()
        made.append(sandbox)
        return sandbox

    yield make
    for s in made:
        s.stop()


def test_worker_is_a_confined_child_process(make_sandbox: Callable[..., Sandbox]) -> None:
    defaults = SandboxConfig()
    sandbox = make_sandbox(memory_mb=768, nice=defaults.nice, idle=defaults.idle)
    seen = run_when_ready(sandbox, "get_confinement")
    assert seen["pid"] != os.getpid() and seen["ppid"] == os.getpid()
    assert seen["rlimit_as"] == 768 << 20 and seen["niceness"] == min(19, os.nice(0) + defaults.nice)
    assert seen["recursion_limit"] == RECURSION_LIMIT and seen["sigint"] is True
    assert seen["idle"] is True  # SCHED_IDLE: only CPU time nothing else wants
    assert seen["session"] == seen["pid"] != os.getsid(0)  # its own session...
    if seen["autogroup"] is not None:  # ...whose scheduling weight is lowered too (Linux autogroup)
        assert seen["autogroup"].endswith(f"nice {defaults.nice}")
    assert sandbox.get_pids() == [seen["pid"]]


def test_timeout_kills_the_worker_and_a_new_one_serves(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(timeout_s=2.0)
    old = run_when_ready(sandbox, "sleep", 0)
    started = time.monotonic()
    with pytest.raises(SandboxTimeout):
        sandbox.run("sleep", (60,))
    assert time.monotonic() - started < 10
    wait_for(lambda: not is_alive(old), 10, "the timed-out worker to be killed")
    assert run_when_ready(sandbox, "echo", "again") == "again"
    assert sandbox.replacements == 1 and old not in sandbox.get_pids()


def test_a_short_caller_deadline_does_not_kill_the_worker(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(timeout_s=60.0)
    pid = run_when_ready(sandbox, "sleep", 0)
    with pytest.raises(SandboxTimeout):
        sandbox.run("sleep", (1.0,), timeout_s=0.1)
    assert run_when_ready(sandbox, "sleep", 0) == pid  # the same worker, reused once it finished
    assert sandbox.replacements == 0


@pytest.mark.parametrize("task", [call("segfault"), call("overflow_c_stack", 200_000)],
                         ids=["sigsegv", "c-stack-overflow"])
def test_a_crashing_worker_is_replaced(make_sandbox: Callable[..., Sandbox], task: tuple) -> None:
    sandbox = make_sandbox()
    old = run_when_ready(sandbox, "sleep", 0)
    with pytest.raises(SandboxCrashed):
        sandbox.run(*task)
    assert run_when_ready(sandbox, "echo", 7) == 7
    assert sandbox.replacements == 1 and not is_alive(old)


def test_memory_limit_refuses_and_replaces(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(memory_mb=512)
    old = run_when_ready(sandbox, "sleep", 0)
    assert sandbox.run("allocate", (16,)) == 16 << 20
    with pytest.raises(SandboxOutOfMemory):
        sandbox.run("allocate", (1024,))
    wait_for(lambda: not is_alive(old), 10, "the worker to exit")
    assert run_when_ready(sandbox, "echo", "ok") == "ok" and sandbox.replacements == 1


def test_a_failing_task_reports_and_keeps_the_worker(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox()
    pid = run_when_ready(sandbox, "sleep", 0)
    with pytest.raises(SandboxTaskFailed, match="ValueError: bad input 42"):
        sandbox.run("fail", ())
    assert sandbox.run("sleep", (0,)) == pid and sandbox.replacements == 0


def test_admission_beyond_workers_and_queue_is_busy(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(workers=1, queue=1)
    run_when_ready(sandbox, "echo", 0)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(sandbox.run("sleep", (3,)))) for _ in range(2)]
    for t in threads:
        t.start()
    wait_for(lambda: sandbox.in_flight == 2, 10, "both callers admitted (one computing, one queued)")
    with pytest.raises(SandboxBusy):
        sandbox.run("echo", (1,))
    for t in threads:
        t.join(30)
    assert len(results) == 2  # both admitted calls finished


def test_invalid_task_name_is_refused_at_construction() -> None:
    for name in ("tests.api.sandbox_tasks", "tests.api.sandbox_tasks:nothing", "no_such_module:f"):
        with pytest.raises(SandboxError):
            Sandbox(name)


def test_stop_ends_every_worker_and_refuses_new_tasks(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(workers=2)
    run_when_ready(sandbox, "echo", 0)
    wait_for(lambda: len(sandbox.get_pids()) == 2, STARTUP_S, "two workers")
    pids = sandbox.get_pids()
    sandbox.stop()
    wait_for(lambda: not any(is_alive(p) for p in pids), 10, "the workers to exit")
    with pytest.raises(SandboxStopped):
        sandbox.run("echo", (1,))


ORPHAN_SCRIPT = """
import sys, time
from node.api.sandbox import Sandbox, SandboxConfig
sandbox = Sandbox("tests.api.sandbox_tasks:dispatch", SandboxConfig(workers=2, queue=0, timeout_s=120)).start()
while len(sandbox.get_pids()) < 2:
    time.sleep(0.1)
sandbox.run("echo", (0,))
print(" ".join(map(str, sandbox.get_pids())), flush=True)
time.sleep(600)
"""


def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the serving process (no clean stop): its workers notice and exit."""
    proc = subprocess.Popen([sys.executable, "-c", ORPHAN_SCRIPT], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2 and all(is_alive(p) for p in pids)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    # idle-priority workers on a loaded host: their watchdog may wait a while for a time slice
    wait_for(lambda: not any(is_alive(p) for p in pids), 60, "the orphaned workers to exit")
