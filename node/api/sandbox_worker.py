"""The worker side of `node.api.sandbox`: what a spawned worker process runs.

Standard library only, so that a starting worker does next to nothing before it has lowered its own
priority. Confinement, in order: ignore SIGINT (the operator's Ctrl-C is for the node, which stops
the workers itself); lower the CPU priority (`nice`; a session of its own whose autogroup niceness is
lowered too, because with Linux autogroup scheduling a nice value only counts inside a session; and
SCHED_IDLE when asked, so the worker runs only on CPU time that consensus and the chains do not
want); a watchdog thread that ends the worker when its parent is gone; recursion limit
`RECURSION_LIMIT`; then the task's import, then the address-space limit (`RLIMIT_AS`).
Protocol on the pipe: the worker sends `("ready", pid)`, then for each message `args` (a tuple;
None ends it) one reply `("ok", result)`, `("memory", "")` (and exits) or `("error", text)`.
Nothing is persisted.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

RECURSION_LIMIT = 1_000
PARENT_CHECK_S = 0.5


def describe_error(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"[:500]
    except Exception:  # str() of the exception itself failed (e.g. a huge int in its message)
        return type(exc).__name__


def resolve_task(name: str) -> Callable[..., Any]:
    """The function named `"module:function"` (`ValueError` or `ImportError` otherwise)."""
    module, sep, attr = name.partition(":")
    function = getattr(importlib.import_module(module), attr, None) if sep else None
    if not callable(function):
        raise ValueError(f"sandbox task {name!r}: expected 'module:function'")
    return function


def _exit_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(3)


def _lower_priority(nice: int, idle: bool) -> None:
    if nice:
        os.nice(nice)
        with contextlib.suppress(OSError):
            os.setsid()
        with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as f:  # absent without autogroup
            f.write(str(nice))
    if idle and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _limit_memory(memory_bytes: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def serve_tasks(conn: Connection, task_name: str, memory_bytes: int, nice: int, idle: bool, parent: int) -> None:
    """A worker's main loop: confine itself, import the task, say ready, then run one task per
    message until told to stop (None) or the pipe closes. Never raises (nothing to print into the
    node's log)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _lower_priority(nice, idle)
        threading.Thread(target=_exit_when_orphaned, args=(parent,), name="orphan-watch", daemon=True).start()
        sys.setrecursionlimit(RECURSION_LIMIT)
        task = resolve_task(task_name)
        _limit_memory(memory_bytes)
        conn.send(("ready", os.getpid()))
        while True:
            args = conn.recv()
            if args is None:
                return
            try:
                reply: tuple[str, Any] = ("ok", task(*args))
            except MemoryError:
                reply = ("memory", "")
            except Exception as exc:
                reply = ("error", describe_error(exc))
            conn.send(reply)
            if reply[0] == "memory":
                return  # a fresh worker replaces this one
    except (EOFError, OSError, MemoryError):
        return
    except Exception:  # e.g. an unpicklable result: the parent sees the pipe close and replaces us
        return
