"""A devnet under a hostile API client: while the four validators sign epochs, a client floods
`SimulateMargin` on every validator with the documents that used to kill or pin a node (200 KB of
nesting, unbounded `params`, huge numbers, a nested structured `params_json`) and with expensive but
valid what-ifs that run into the workers' timeout: per validator, `REFUSED_THREADS` client threads send
the hostile documents (each up to `REFUSED_PER_S` calls a second with a `REFUSED_DEADLINE_S` deadline,
more at once than the node admits: the rest is RESOURCE_EXHAUSTED; the client shares this machine's
two cores with the chains and the validators, and the per-client rate limit is tested elsewhere) and
one sends the expensive what-if (at most `EXPENSIVE_PER_S` a second). The epochs are counted from the moment every validator has answered
`ANSWERED_BEFORE_COUNTING` hostile calls. Its workers run at idle priority: how many documents they
parse and refuse by name (INVALID_ARGUMENT) rather than time out on (DEADLINE_EXCEEDED) depends on
the CPU the host leaves idle (on a saturated host, none: consensus comes first), so the test prints
those counts and requires only expected statuses; refusal by name on a real validator process is
`tests/api/test_hostile_node.py`.
No validator dies (the watch loop checks every process), no API stops answering once it
answered, and no epoch is lost: every epoch in the observed range is signed, identically at all
validators.

Written against the devnet's public behaviour (epochs, processes, gRPC), not its demo figures."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from node.devnet.homes import DevnetError
from node.devnet.runner import DevnetOptions, DevnetRun, WatchState, run_devnet
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from tests.api.test_simulate import DOC

EPOCHS_UNDER_FLOOD = 8
REFUSED_THREADS = 4
REFUSED_PER_S = 5.0
REFUSED_DEADLINE_S = 3.0
EXPENSIVE_PER_S = 1.0
EXPENSIVE_DEADLINE_S = 15.0
ANSWERED_BEFORE_COUNTING = 5


def liquidatable_book(n: int) -> str:
    """n short options on no collateral: valid, and the LQ-1 plan makes it cost ~n^3 scenario sums."""
    positions = [{"kind": "option", "underlying": "BTC", "days_to_expiry": 30, "strike": 90_000 + 200 * i,
                  "right": "call" if i % 2 else "put", "vol": 0.5, "quantity": -1} for i in range(n)]
    return json.dumps({**DOC, "positions": positions, "collateral": {}})


REFUSED = [
    api_pb2.SimulateMarginRequest(whatif_json="[" * 200_000),
    api_pb2.SimulateMarginRequest(whatif_json='{"a":' * 40_000),
    api_pb2.SimulateMarginRequest(whatif_json=json.dumps({**DOC, "params": {"es_samples": 2**62}})),
    api_pb2.SimulateMarginRequest(whatif_json=json.dumps({**DOC, "params": {"price_steps": 10**12}})),
    api_pb2.SimulateMarginRequest(whatif_json=json.dumps(DOC).replace('"USDC": 10000', '"USDC": 1e400')),
    api_pb2.SimulateMarginRequest(whatif=api_pb2.WhatIf(params_json="[" * 200_000)),
]
EXPENSIVE = api_pb2.SimulateMarginRequest(whatif_json=liquidatable_book(120))
EXPECTED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.DEADLINE_EXCEEDED}


@dataclass
class Flood:
    """Client threads hammering every validator; per validator the status codes it answered."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    codes: dict[int, Counter] = field(default_factory=dict)
    lost_after_answering: dict[int, int] = field(default_factory=dict)  # UNAVAILABLE after a first answer
    lock: threading.Lock = field(default_factory=threading.Lock)
    flooding_from_epoch: int | None = None

    def start(self, run: DevnetRun) -> None:
        for h in run.homes:
            self.codes[h.index] = Counter()
            plans = [(REFUSED[i:] + REFUSED[:i], REFUSED_PER_S, REFUSED_DEADLINE_S) for i in range(REFUSED_THREADS)]
            for requests, rate, deadline in [*plans, ([EXPENSIVE], EXPENSIVE_PER_S, EXPENSIVE_DEADLINE_S)]:
                t = threading.Thread(target=self.hammer, args=(h.index, h.api_address, requests, rate, deadline),
                                     daemon=True)
                self.threads.append(t)
                t.start()

    def hammer(self, index: int, address: str, requests: list, rate: float, deadline: float) -> None:
        with grpc.insecure_channel(address) as channel:
            stub = api_pb2_grpc.MarginServiceStub(channel)
            ready = grpc.channel_ready_future(channel)
            while not self.stop.is_set():  # the validator process may still be importing
                try:
                    ready.result(timeout=1.0)
                    break
                except grpc.FutureTimeoutError:
                    continue
            next_at = time.monotonic()
            while not self.stop.is_set():
                for request in requests:
                    next_at = max(next_at + 1.0 / rate, time.monotonic())
                    try:
                        stub.SimulateMargin(request, timeout=deadline)
                        code = grpc.StatusCode.OK
                    except grpc.RpcError as err:
                        code = err.code()
                    with self.lock:
                        answered = sum(n for c, n in self.codes[index].items() if c in EXPECTED) > 0
                        if code == grpc.StatusCode.UNAVAILABLE and answered:
                            self.lost_after_answering[index] = self.lost_after_answering.get(index, 0) + 1
                        self.codes[index][code] += 1
                    if self.stop.wait(max(0.0, next_at - time.monotonic())):  # pacing, not a wait for a result
                        return

    def is_hitting_everyone(self) -> bool:
        """Every validator has handled `ANSWERED_BEFORE_COUNTING` hostile calls (any expected status)."""
        with self.lock:
            return all(sum(n for c, n in codes.items() if c in EXPECTED) >= ANSWERED_BEFORE_COUNTING
                       for codes in self.codes.values())

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


@pytest.mark.slow
def test_flooded_validators_sign_every_epoch(tmp_path: Path) -> None:
    flood = Flood()

    def hook(run: DevnetRun, ws: WatchState, say: Any) -> None:
        if not flood.threads:
            flood.start(run)
        if flood.flooding_from_epoch is None and flood.is_hitting_everyone() and ws.first_epoch is not None:
            flood.flooding_from_epoch = ws.last_seen + 1
            say(f"flood reaches every validator from epoch {flood.flooding_from_epoch}")

    def is_finished(run: DevnetRun, ws: WatchState) -> bool:
        start = flood.flooding_from_epoch
        if start is None or ws.last_seen < start + EPOCHS_UNDER_FLOOD - 1:
            return False
        flood.finish()  # before the runner stops the validators (their shutdown is not a failure)
        return True

    lines: list[str] = []
    try:
        summary = run_devnet(DevnetOptions(home=tmp_path / "devnet", epochs=None, epoch_period_s=3.0,
                                           crash_epoch=None),
                             lines.append, hook=hook, is_finished=is_finished, budget_epochs=EPOCHS_UNDER_FLOOD + 12)
    except DevnetError as exc:  # say what the flood saw too
        raise AssertionError(f"{exc}; flood from epoch {flood.flooding_from_epoch}, answers {flood.codes}; "
                             + "\n".join(lines[-20:])) from exc
    finally:
        flood.finish()
    assert summary, "\n".join(lines)
    first, last = summary["first_epoch"], summary["last_epoch"]
    assert flood.flooding_from_epoch is not None and last - flood.flooding_from_epoch + 1 >= EPOCHS_UNDER_FLOOD
    assert summary["unsigned_epochs"] == []
    assert summary["epochs_observed"] == last - first + 1  # every epoch of the range, no gap
    assert summary["epochs_signed"] == summary["epochs_observed"], summary["identical_by_epoch"]
    print(f"epochs {first}..{last} all signed; flood from epoch {flood.flooding_from_epoch}; answers per validator: "
          + "; ".join(f"v{i} " + ", ".join(f"{c.name} {n}" for c, n in sorted(codes.items(), key=lambda kv: kv[0].name))
                      for i, codes in sorted(flood.codes.items())))
    assert flood.lost_after_answering == {}, flood.lost_after_answering
    for index, codes in flood.codes.items():
        answered = {c for c in codes if c != grpc.StatusCode.UNAVAILABLE}
        assert answered <= EXPECTED, (index, codes)
