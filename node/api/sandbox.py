"""A small pool of worker processes for the public API's untrusted computations (the what-if margin
of `SimulateMargin`): whatever a request makes a worker do, it does not happen in the validator's own
interpreter (trio consensus thread, gRPC threads, store).

Workers are fresh interpreters started with the multiprocessing `spawn` context (never `fork`: the
serving process runs trio and grpc threads); what a worker does is `node.api.sandbox_worker`
(confinement: priority, memory, recursion, SIGINT, parent watch). A worker runs one task at a time,
`function(*args)` of the `"module:function"` named at construction, and sends the result back
pickled.

Bounds: at most `workers + queue` requests are admitted at once (beyond: `SandboxBusy`); a caller
waits for a free worker and for its result at most `timeout_s` or its own shorter deadline, queue
included (`SandboxTimeout`); a worker computes one task at most `timeout_s`: one still computing
then is killed and replaced in the background (with a growing delay while starts fail), as is one
that dies (`SandboxCrashed`) or runs out of memory (`SandboxOutOfMemory`). A worker whose caller left
early finishes within its own limit and is reused, so short client deadlines cannot force respawns.
Nothing is persisted.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from node.api.errors import ApiError
from node.api.sandbox_worker import describe_error, resolve_task, serve_tasks

LOG = logging.getLogger(__name__)
RESPAWN_DELAY_S = (0.5, 30.0)  # first and longest wait between failed starts
READY_POLL_S = 0.1


@dataclass(frozen=True)
class SandboxConfig:
    workers: int = 2  # worker processes
    queue: int = 2  # requests admitted beyond the busy workers (they wait for one)
    timeout_s: float = 10.0  # a caller waits at most this (queue included); a task computes at most this
    memory_mb: int = 1024  # RLIMIT_AS of a worker (an idle what-if worker maps ~300 MiB)
    nice: int = 19  # added to the worker's niceness, and its own session's (autogroup) niceness
    idle: bool = True  # SCHED_IDLE: the worker runs only on CPU time nothing else wants
    start_timeout_s: float = 300.0  # a worker not ready by then is replaced (idle imports are slow on a busy host)


class SandboxError(ApiError):
    """Base of the sandbox's refusals and failures."""


class SandboxBusy(SandboxError):
    """Every worker and queue slot is taken."""


class SandboxTimeout(SandboxError):
    """No worker was free, or the task did not finish, within the timeout."""


class SandboxCrashed(SandboxError):
    """The worker died while running the task (it has been replaced)."""


class SandboxOutOfMemory(SandboxError):
    """The task exceeded the worker's memory limit (the worker has been replaced)."""


class SandboxTaskFailed(SandboxError):
    """The task raised an exception (its type and message are in the error)."""


class SandboxStopped(SandboxError):
    """The sandbox is stopping."""


# ---------------------------------------------------------------------------------------------
# parent side


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    closed: bool = False


class Sandbox:
    """The pool of `task` (`"module:function"`); `start()` it once, `run(*args)` from any thread,
    `stop()` once."""

    def __init__(self, task: str, config: SandboxConfig = SandboxConfig()) -> None:
        try:
            resolve_task(task)  # a wrong name fails here, not in every worker
        except (ValueError, ImportError) as exc:
            raise SandboxError(str(exc)) from exc
        self.task = task
        self.config = config
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        self._admission = threading.BoundedSemaphore(config.workers + config.queue)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._threads: set[threading.Thread] = set()
        self._spawn_lock = threading.Lock()  # one Process.start() at a time
        self.replacements = 0  # workers replaced after a timeout, death or memory error
        self.in_flight = 0  # admitted calls (computing or waiting for a worker)

    # -- life cycle -------------------------------------------------------------------------------
    def start(self) -> Sandbox:
        for _ in range(self.config.workers):
            self._in_background(self._start_worker, "sandbox-start")
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Refuse new tasks, wake every waiting caller, end every worker (idle ones by request)."""
        self._stopping.set()
        for _ in range(self.config.workers + self.config.queue):
            self._idle.put(None)
        with self._lock:
            workers, threads = list(self._workers), list(self._threads)
        for w in workers:
            self._close(w, graceful=True)
        deadline = time.monotonic() + timeout_s
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def get_pids(self) -> list[int]:
        """Process ids of the live workers (busy, idle or starting)."""
        with self._lock:
            return sorted(w.process.pid for w in self._workers if w.process.pid is not None)

    # -- tasks ------------------------------------------------------------------------------------
    def run(self, *args: Any, timeout_s: float | None = None) -> Any:
        """`task(*args)` in a worker; `timeout_s` (the caller's deadline) shortens the wait only."""
        if self._stopping.is_set():
            raise SandboxStopped("the node is stopping")
        if not self._admission.acquire(blocking=False):
            raise SandboxBusy(f"all {self.config.workers} what-if workers and {self.config.queue} "
                              "queue slots are taken")
        with self._lock:
            self.in_flight += 1
        try:
            return self._run_admitted(args, timeout_s)
        finally:
            with self._lock:
                self.in_flight -= 1
            self._admission.release()

    def _run_admitted(self, args: tuple, timeout_s: float | None) -> Any:
        started = time.monotonic()
        limit = self.config.timeout_s if timeout_s is None else min(self.config.timeout_s, max(0.0, timeout_s))
        deadline = started + limit  # the caller waits at most this long, queue included
        worker = self._take_worker(deadline)
        computing_until = time.monotonic() + self.config.timeout_s  # the worker computes at most this long
        try:
            worker.conn.send(args)
            finished = worker.conn.poll(max(0.0, deadline - time.monotonic()))
        except (OSError, ValueError) as exc:
            self._replace(worker, "pipe broken")
            raise SandboxCrashed(f"the worker died ({describe_error(exc)})") from exc
        if not finished:  # the worker goes on until its own limit, then is killed (or reused if done)
            self._in_background(lambda: self._finish_later(worker, computing_until), "sandbox-finish")
            raise SandboxTimeout(f"no result within {time.monotonic() - started:.3g} s (what-if limit "
                                 f"{self.config.timeout_s:g} s)")
        try:
            tag, value = worker.conn.recv()
        except (EOFError, OSError) as exc:
            code = worker.process.exitcode
            self._replace(worker, f"died (exit code {code})")
            raise SandboxCrashed(f"the worker died while computing (exit code {code})") from exc
        return self._settle(worker, tag, value)

    def _settle(self, worker: _Worker, tag: str, value: Any) -> Any:
        if tag == "memory":
            self._replace(worker, "memory limit")
            raise SandboxOutOfMemory(f"the computation exceeded the worker memory limit ({self.config.memory_mb} MiB)")
        self._release(worker)
        if tag == "error":
            raise SandboxTaskFailed(str(value))
        return value

    def _take_worker(self, deadline: float) -> _Worker:
        while True:
            try:
                worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise SandboxTimeout("no what-if worker became free in time") from None
            if worker is None:
                raise SandboxStopped("the node is stopping")
            if worker.process.is_alive():
                return worker
            self._replace(worker, f"found dead (exit code {worker.process.exitcode})")

    def _finish_later(self, worker: _Worker, computing_until: float) -> None:
        """The caller left: let the worker finish within its own limit, then reuse it, or kill it."""
        try:
            if worker.conn.poll(max(0.0, computing_until - time.monotonic())):
                tag, _ = worker.conn.recv()
                if tag != "memory":
                    self._release(worker)
                    return
        except (EOFError, OSError):
            pass
        self._replace(worker, f"computed for more than {self.config.timeout_s:g} s")

    # -- workers ----------------------------------------------------------------------------------
    def _in_background(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:
            self._threads = {t for t in self._threads if t.is_alive()}
            self._threads.add(thread)
        thread.start()

    def _start_worker(self) -> None:
        """Start one worker and hand it to the idle queue once ready; retry with a growing delay."""
        delay = RESPAWN_DELAY_S[0]
        while not self._stopping.is_set():
            worker = self._spawn()
            if worker is not None and self._wait_ready(worker):
                if self._stopping.is_set():
                    self._close(worker, graceful=True)
                else:
                    self._idle.put(worker)
                return
            if worker is not None:
                self._close(worker, graceful=False)
            if self._stopping.is_set():
                return
            LOG.warning("what-if worker failed to start; retrying", extra={"retry_in_s": delay})
            self._stopping.wait(delay)
            delay = min(2 * delay, RESPAWN_DELAY_S[1])

    def _spawn(self) -> _Worker | None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=serve_tasks, name="clearing-whatif-worker", daemon=True,
            args=(child_conn, self.task, self.config.memory_mb << 20, self.config.nice, self.config.idle,
                  os.getpid()))
        try:
            with self._spawn_lock:
                process.start()
        except OSError as exc:
            LOG.warning("cannot start a what-if worker", extra={"error": describe_error(exc)})
            parent_conn.close()
            return None
        finally:
            child_conn.close()
        worker = _Worker(process, parent_conn)
        with self._lock:
            self._workers.add(worker)
        return worker

    def _wait_ready(self, worker: _Worker) -> bool:
        deadline = time.monotonic() + self.config.start_timeout_s
        while not self._stopping.is_set() and time.monotonic() < deadline:
            try:
                if worker.conn.poll(READY_POLL_S):
                    return worker.conn.recv()[0] == "ready"
            except (EOFError, OSError):
                return False
        return False

    def _release(self, worker: _Worker) -> None:
        if self._stopping.is_set():
            self._close(worker, graceful=True)
        else:
            self._idle.put(worker)

    def _replace(self, worker: _Worker, reason: str) -> None:
        self._close(worker, graceful=False)
        if self._stopping.is_set():
            return
        with self._lock:
            self.replacements += 1
        LOG.warning("what-if worker replaced", extra={"reason": reason, "pid": worker.process.pid})
        self._in_background(self._start_worker, "sandbox-start")

    def _close(self, worker: _Worker, graceful: bool) -> None:
        with self._lock:
            if worker.closed:
                return
            worker.closed = True
            self._workers.discard(worker)
        if graceful:
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
            worker.process.join(1.0)
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5.0)
        worker.conn.close()
