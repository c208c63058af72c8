"""Subprocess entry for the governance-store tests: one node start, i.e. a reader over the SQLite store
at `store`, one snapshot at the given pin, the derived state. Prints JSON: the encoded state (hex), the
proposals read from the chain, and the RPC calls made (eth_call by function name).
Usage: python -m tests.governance.store_main ARGS.json"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_utils import keccak

from bridges.chain import ChainClient, ChainConfig, Pin
from bridges.governance_chain import GovernanceChain
from governance.encoding import encode_governance_state
from governance.proposals import EpochClock, GovernanceGenesis
from governance.tally import derive_governance_state
from node.governance_store import GovernanceStore


class CountingClient(ChainClient):
    """A real `ChainClient` that counts the calls at the RPC seam (eth_call by the called function)."""

    def __init__(self, config: ChainConfig, abi: Sequence[dict[str, Any]]) -> None:
        super().__init__(config)
        self.calls: Counter[str] = Counter()
        self._names = {keccak(text=f"{f['name']}({','.join(i['type'] for i in f['inputs'])})")[:4].hex(): f["name"]
                       for f in abi if f.get("type") == "function"}

    def _count(self, method: str, params: Sequence[object]) -> None:
        if method == "eth_call":
            data = str(params[0]["data"])  # type: ignore[index]
            method = "eth_call:" + self._names.get(data[2:10], data[2:10])
        self.calls[method] += 1

    def rpc(self, method: str, params: Sequence[object]) -> Any:
        self._count(method, params)
        return super().rpc(method, params)

    def rpc_batch(self, calls: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
        for method, params in calls:
            self._count(method, params)
        self.calls["batch"] += 1
        return super().rpc_batch(calls)


def main(path: str) -> int:
    a = json.loads(Path(path).read_text())
    client = CountingClient(ChainConfig(chain_id=a["chain_id"], rpc_url=a["rpc_url"]), a["abi"])
    store = GovernanceStore(a["store"], a["chain_id"], a["address"])
    gov = GovernanceChain(client, a["address"], a["abi"], a["settled_depth"], store=store)
    pin = Pin(a["chain_id"], a["pin_number"], bytes.fromhex(a["pin_hash"]), a["pin_timestamp"])
    snap = gov.read_snapshot(pin)
    genesis = GovernanceGenesis(tuple(a["validators"]), a["threshold"],
                                EpochClock(a["genesis_time"], a["epoch_seconds"]))
    state = derive_governance_state(genesis, snap.proposals, snap.votes, pin.number)
    print(json.dumps({"state": encode_governance_state(state).hex(), "proposal_reads": gov.proposal_reads,
                      "calls": dict(client.calls)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
