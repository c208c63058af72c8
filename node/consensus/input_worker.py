"""The node's single input worker: at most one `InputSource.compute_epoch` in flight at any time.

Reading and computing an epoch's inputs can take longer than an epoch (large books, slow RPC). Rounds
must then be skipped on purpose instead of stacking computations that slow each other down. Rules:
- a round asks for its epoch's inputs with `get_inputs(epoch, deadline)` and waits at most until its
  deadline; it gets the `ComputedState`, or None and the reason its computation was skipped:
  `overrun` (never started: the worker was busy with another epoch), `deadline` (started, not done
  by the deadline) or `inputs_unavailable` (every attempt inside the window failed);
- when free, the worker starts the NEWEST requested epoch whose deadline has not passed and that is
  newer than the last epoch it started: older requests are skipped, never worked through as a backlog;
  an epoch whose attempt raised `InputsUnavailable` (e.g. its pin is not confirmed yet) is retried
  `retry_s` later while its round lasts; due retries go first, oldest first (every node started that
  epoch, so finishing it is what lets a threshold form), one attempt at a time;
- a started computation is never cancelled or restarted (a thread cannot be killed, and a slow read
  that makes progress must be allowed to finish): it runs to its end; stopping the engine waits for it,
  so no thread is left computing. A result for a round that is still open is handed to it; a result
  that arrives after the round's deadline is NOT signed: it goes to `on_late` (still useful to learn
  key sets from governance) and the next computation starts for the newest open epoch;
- re-reads after a divergence (`reread`) go through the same worker, only when no round waits.
Used from the trio loop only; nothing persisted.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from node.consensus.errors import InputsUnavailable
from node.consensus.inputs import ComputedState

log = logging.getLogger(__name__)

OVERRUN, DEADLINE, INPUTS_UNAVAILABLE = "overrun", "deadline", "inputs_unavailable"
LOOP_LATE = "loop_late"  # the engine's epoch loop woke after the round deadline (no round was started)
SKIP_REASONS = (OVERRUN, DEADLINE, INPUTS_UNAVAILABLE, LOOP_LATE)
MAX_REREADS = 4  # pending divergence re-reads; older ones are dropped


@dataclass
class _Request:
    epoch: int
    deadline: float  # trio time
    done: trio.Event = field(default_factory=trio.Event)
    state: str = "queued"  # queued, running, failed, done
    attempts: int = 0
    retry_at: float = 0.0
    result: ComputedState | None = None

    @property
    def skip_reason(self) -> str:
        if self.state == "queued":
            return OVERRUN
        return INPUTS_UNAVAILABLE if self.state == "failed" else DEADLINE


class InputWorker:
    """See the module docstring. `run()` is the worker task (in the engine's nursery)."""

    def __init__(self, compute: Callable[[int, int], ComputedState], target_of: Callable[[int], int],
                 retry_s: float, on_failure: Callable[[int, str], None],
                 on_late: Callable[[ComputedState], None]) -> None:
        self.compute, self.target_of, self.retry_s = compute, target_of, retry_s
        self.on_failure, self.on_late = on_failure, on_late
        self._wanted: dict[int, _Request] = {}
        self._rereads: dict[int, _Request] = {}
        self._last_started = -1
        self._wake = trio.Event()
        self.in_flight: int | None = None  # epoch being computed
        self.in_flight_since: float | None = None  # time.monotonic() it started
        self.last_run: tuple[int, float, bool] | None = None  # epoch, seconds, succeeded

    def describe(self) -> dict[str, object]:
        """For status.json: the epoch being computed and for how long, the last computation (epoch,
        seconds, succeeded) and the epochs waiting for inputs."""
        running = None if self.in_flight_since is None else round(time.monotonic() - self.in_flight_since, 3)
        return {"in_flight": self.in_flight, "running_s": running,
                "last": None if self.last_run is None else list(self.last_run), "waiting": sorted(self._wanted)}

    # --- rounds and re-reads --------------------------------------------------------------------

    async def get_inputs(self, epoch: int, deadline: float) -> tuple[ComputedState | None, str]:
        """The epoch's inputs, or (None, skip reason) once `deadline` (trio time) passed without them."""
        req = self._wanted.setdefault(epoch, _Request(epoch, deadline))
        self._wake.set()
        try:
            with trio.move_on_at(deadline):
                await req.done.wait()
        finally:
            self._wanted.pop(epoch, None)
        if req.result is not None:
            return req.result, ""
        return None, req.skip_reason

    async def reread(self, epoch: int, deadline: float) -> ComputedState | None:
        """Compute `epoch` again when the worker is free of rounds; None if failed or not started by `deadline`."""
        req = self._rereads.get(epoch)
        if req is None:
            for old in sorted(self._rereads)[:max(0, len(self._rereads) - MAX_REREADS + 1)]:
                self._rereads.pop(old).done.set()
            req = self._rereads[epoch] = _Request(epoch, deadline)
        self._wake.set()
        with trio.move_on_at(deadline):
            await req.done.wait()
        if self._rereads.get(epoch) is req:
            del self._rereads[epoch]
        return req.result

    # --- the worker ---------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            now = trio.current_time()
            req = self._pick_round(now)
            reread = req is None
            if req is None:
                req = self._pick_reread(now)
            if req is None:
                self._wake = trio.Event()
                with trio.move_on_at(self._get_next_retry()):
                    await self._wake.wait()
                continue
            await self._run_one(req, reread)

    def _pick_round(self, now: float) -> _Request | None:
        """The oldest open epoch due for a retry, else the newest epoch never started that is newer than
        every epoch started so far (a never-started older one was overrun: it is not computed)."""
        open_ = [r for r in self._wanted.values() if r.deadline > now]
        retries = [r for r in open_ if r.state == "failed" and r.retry_at <= now]
        if retries:
            return min(retries, key=lambda r: r.epoch)
        new = [r for r in open_ if r.state == "queued" and r.epoch > self._last_started]
        return max(new, key=lambda r: r.epoch) if new else None

    def _pick_reread(self, now: float) -> _Request | None:
        if self._get_next_retry() < math.inf:
            return None  # a round retries soon: a re-read must not delay it
        for epoch in sorted(self._rereads, reverse=True):
            req = self._rereads.pop(epoch)
            if req.deadline > now:
                return req
            req.done.set()
        return None

    def _get_next_retry(self) -> float:
        return min((r.retry_at for r in self._wanted.values() if r.state == "failed"), default=math.inf)

    async def _run_one(self, req: _Request, reread: bool) -> None:
        req.state, req.attempts = "running", req.attempts + 1
        if not reread:
            self._last_started = max(self._last_started, req.epoch)
        self.in_flight, self.in_flight_since = req.epoch, time.monotonic()
        error = ""
        try:  # not abandoned on cancel: stopping the engine waits for the thread
            computed = await trio.to_thread.run_sync(self.compute, req.epoch, self.target_of(req.epoch))
        except InputsUnavailable as exc:
            error = str(exc)
        except Exception as exc:  # an adapter bug must not kill the node: same as unavailable
            log.exception("input source failed", extra={"epoch": req.epoch})
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.last_run = (req.epoch, round(time.monotonic() - (self.in_flight_since or 0.0), 3), not error)
            self.in_flight = self.in_flight_since = None
        if error:
            req.state, req.retry_at = "failed", trio.current_time() + self.retry_s
            self.on_failure(req.epoch, error)
            if reread:
                req.done.set()
            return
        req.state = "done"
        if reread or (self._wanted.get(req.epoch) is req and trio.current_time() < req.deadline):
            req.result = computed
            req.done.set()
        else:
            self.on_late(computed)
