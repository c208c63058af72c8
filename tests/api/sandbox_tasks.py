"""Tasks the sandbox tests run in worker processes (standard library only: a worker imports this module
at idle priority, so it must be light)."""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time


def dispatch(name: str, args: tuple) -> object:
    """The sandbox task of the tests: one of this module's functions by name."""
    return globals()[name](*args)


def echo(value: object) -> object:
    return value


def get_confinement() -> dict:
    try:
        with open("/proc/self/autogroup") as f:
            autogroup = f.read().strip()
    except OSError:
        autogroup = None
    return {"pid": os.getpid(), "ppid": os.getppid(), "rlimit_as": resource.getrlimit(resource.RLIMIT_AS)[0],
            "niceness": os.nice(0), "recursion_limit": sys.getrecursionlimit(), "session": os.getsid(0),
            "idle": os.sched_getscheduler(0) == os.SCHED_IDLE,
            "autogroup": autogroup, "sigint": signal.getsignal(signal.SIGINT) is signal.SIG_IGN}


def sleep(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def allocate(mib: int) -> int:
    block = bytearray(mib << 20)
    return len(block)


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def overflow_c_stack(depth: int) -> None:
    """The reproduction inside a worker: py_ecc's recursion limit, then json.loads of deep nesting."""
    sys.setrecursionlimit(100_000)
    json.loads("[" * depth)


def fail() -> None:
    raise ValueError("bad input 42")
