"""`node.consensus.margin_inputs._each_chain`: the chains' reads run at once, results come back in chain
order, and a failure is the first failing chain's error, raised only after every read has finished."""

from __future__ import annotations

import threading

import pytest

from node.consensus.margin_inputs import _each_chain


def test_reads_overlap_and_results_keep_chain_order() -> None:
    barrier = threading.Barrier(3, timeout=10)  # passes only when all three reads run at the same time

    def read(k: int) -> int:
        barrier.wait()
        return k * 10

    assert _each_chain([lambda k=k: read(k) for k in range(3)]) == [0, 10, 20]


def test_invalid_read_raises_the_first_chains_error_after_all_finished() -> None:
    finished = []
    release = threading.Event()

    def fail(name: str) -> None:
        release.wait(10)
        raise ValueError(name)

    def slow_ok() -> str:
        release.set()
        finished.append("ok")
        return "ok"

    with pytest.raises(ValueError, match=r"^first$"):
        _each_chain([lambda: fail("first"), slow_ok, lambda: fail("third")])
    assert finished == ["ok"]


def test_single_read_runs_in_the_callers_thread() -> None:
    assert _each_chain([threading.get_ident]) == [threading.get_ident()]
