"""Determinism: the state derived from the same chain reads (same pin) is byte-identical across runs,
after the chain has moved on, and in a separate process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from governance.encoding import compute_state_hash, encode_governance_state
from governance.proposals import ProposalKind, ValidatorSetChange, encode_validator_set_change
from governance.tally import derive_governance_state
from risk.params import encode_params
from tests.governance.conftest import Deployed
from tests.governance.helpers import INVALID_MM_PAYLOAD, WIDE_BTC

REPO = Path(__file__).resolve().parents[2]


def test_derived_state_is_identical_across_runs_and_processes(deployed: Deployed, tmp_path: Path) -> None:
    d = deployed
    p1, _ = d.gov.propose(d.keys[0], ProposalKind.PARAMETER_SET, encode_params(WIDE_BTC), 20, 3)
    p2, _ = d.gov.propose(d.keys[1], ProposalKind.PARAMETER_SET, INVALID_MM_PAYLOAD, 20, 4)
    change = encode_validator_set_change(ValidatorSetChange((), (d.validators[3],), 3))
    p3, _ = d.gov.propose(d.keys[2], ProposalKind.VALIDATOR_SET, change, 20, 6)
    for pid in (p1, p2, p3):
        for key in d.keys[:3]:
            d.gov.vote(key, pid, 1)
    d.mine(20)
    pin = d.gov.get_pin_at_head()

    def derive() -> bytes:
        snap = d.gov.read_snapshot(pin)
        return encode_governance_state(derive_governance_state(d.genesis, snap.proposals, snap.votes, pin.number))

    first = derive()
    d.gov.execute(d.keys[0], p3)  # the chain moves on; reads at the old pin must not
    d.gov.propose(d.keys[0], ProposalKind.PARAMETER_SET, encode_params(WIDE_BTC), 4, 9)
    assert derive() == first
    snap = d.gov.read_snapshot(pin)
    state = derive_governance_state(d.genesis, snap.proposals, snap.votes, pin.number)
    assert [o.status.value for o in state.proposals] == ["approved", "invalid", "approved"]
    args = {"chain_id": d.chain.chain_id, "rpc_url": d.chain.rpc_url, "address": d.gov.address,
            "abi": d.gov.abi, "pin_number": pin.number, "pin_hash": pin.hash.hex(),
            "pin_timestamp": pin.timestamp, "validators": list(d.validators), "threshold": 3,
            "genesis_time": d.genesis.clock.genesis_time, "epoch_seconds": d.genesis.clock.epoch_seconds}
    (tmp_path / "args.json").write_text(json.dumps(args))
    out = subprocess.run([sys.executable, "-m", "tests.governance.derive_main", str(tmp_path / "args.json")],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == compute_state_hash(state).hex()
