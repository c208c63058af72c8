"""Subprocess entry for the determinism test: read the Governance contract at a given pin, derive the
state and print its hash (hex). Usage: python -m tests.governance.derive_main ARGS.json"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bridges.chain import ChainClient, ChainConfig, Pin
from bridges.governance_chain import GovernanceChain
from governance.encoding import compute_state_hash
from governance.proposals import EpochClock, GovernanceGenesis
from governance.tally import derive_governance_state


def main(path: str) -> int:
    a = json.loads(Path(path).read_text())
    client = ChainClient(ChainConfig(chain_id=a["chain_id"], rpc_url=a["rpc_url"]))
    gov = GovernanceChain(client, a["address"], a["abi"])
    pin = Pin(a["chain_id"], a["pin_number"], bytes.fromhex(a["pin_hash"]), a["pin_timestamp"])
    snap = gov.read_snapshot(pin)
    genesis = GovernanceGenesis(tuple(a["validators"]), a["threshold"],
                                EpochClock(a["genesis_time"], a["epoch_seconds"]))
    state = derive_governance_state(genesis, snap.proposals, snap.votes, pin.number)
    print(compute_state_hash(state).hex())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
