"""The genesis ceremony (`clearingd dkg`, four separate processes on loopback) with a cheating dealer
(operator 3 deals operator 2 a bad share and reveals a bad one again when accused: `--fault-drill`) and
an offline operator (4 never runs): with threshold 2 the honest ones finish with a working key and the
reports name the excluded operators and why; with threshold 3 too few dealers qualify, the ceremony
fails saying who and why, writes nothing but its report, and a rerun (`--attempt 2`, everyone honest
and online) succeeds."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from bridges.anvil import get_free_port
from node.network_file import load_network_file
from tests.network.operators import Operator, each, genesis_ceremony, make_operators, run_dkg

CHEATER, OFFLINE = 3, 4


@pytest.fixture
def operators() -> Iterator[list[Operator]]:
    base, ops = make_operators(4)
    try:
        yield ops
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_faulty(ops: list[Operator], attempt: int = 1) -> list[dict]:
    """Operators 1-3 (3 cheating) run the ceremony; 4 stays offline."""
    def one(op: Operator) -> dict:
        extra = ["--wait", "6", "--attempt", str(attempt)]
        if op.index == CHEATER:
            extra += ["--fault-drill", "wrong-share:2"]
        out = run_dkg([op], *extra)[0]
        return json.loads(out.stdout) | {"exit_code": out.returncode}

    return each(ops[:OFFLINE - 1], one)


@pytest.mark.slow
def test_honest_operators_finish_with_a_working_key_and_name_the_excluded(operators: list[Operator]) -> None:
    ops = operators
    genesis_ceremony(ops, [get_free_port() for _ in ops], threshold=2)
    reports = run_faulty(ops)
    assert [r["exit_code"] for r in reports] == [0, 0, 0], reports
    honest = reports[:2]
    assert len({r["network_hash"] for r in reports}) == 1 and len({r["group_key"] for r in reports}) == 1
    for r in honest:
        assert r["participants"] == [1, 2, 3] and r["qualified"] == [1, 2]
        excluded = {e["index"]: e["reason"] for e in r["excluded"]}
        assert set(excluded) == {CHEATER, OFFLINE}
        assert "cheating dealer" in excluded[CHEATER] and "operators [2]" in excluded[CHEATER]
        assert "offline" in excluded[OFFLINE]
        assert [e["index"] for e in r["without_share"]] == [OFFLINE]
        check = r["key_check"]
        assert check["group_signature_verified"] and {1, 2} <= set(check["verified_partials"])
        assert check["combined_from"] == [1, 2]  # the honest shares alone make the group signature
    for op in ops[:3]:  # the cheater is excluded as a dealer, yet holds a valid share as a recipient
        assert (op.home / "keys" / "share.json").is_file()
        assert load_network_file(op.home / "network.json").keyset is not None
    assert not (ops[3].home / "keys" / "share.json").exists()


@pytest.mark.slow
def test_invalid_ceremony_with_too_few_qualified_dealers_fails_and_is_rerun(operators: list[Operator]) -> None:
    ops = operators
    genesis_ceremony(ops, [get_free_port() for _ in ops], threshold=3)
    reports = run_faulty(ops)
    assert [r["exit_code"] for r in reports] == [1, 1, 1], reports
    for r in reports[:2]:
        assert r["status"] == "failed" and "only dealers [1, 2] qualified, at least 3 needed" in r["failure"]
        assert {e["index"] for e in r["excluded"]} == {CHEATER, OFFLINE}
    for op in ops:
        assert not (op.home / "keys" / "share.json").exists()
        assert load_network_file(op.home / "network.json").keyset is None
        if op.index < OFFLINE:
            assert json.loads((op.home / "ceremony-1.json").read_text())["status"] == "failed"
    outs = run_dkg(ops, "--attempt", "2")
    assert [o.returncode for o in outs] == [0, 0, 0, 0], [o.stderr for o in outs]
    again = [json.loads(o.stdout) for o in outs]
    assert {r["status"] for r in again} == {"ok"} and len({r["network_hash"] for r in again}) == 1
    assert all(r["qualified"] == [1, 2, 3, 4] and r["attempt"] == 2 for r in again)
