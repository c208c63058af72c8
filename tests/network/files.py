"""Network files for tests: key-less operators (random keys, never used to sign) and an in-process key set."""

from __future__ import annotations

import secrets
from pathlib import Path

from node.crypto.dkg_bus import run_dkg_in_process
from node.network_file import make_operator_entry, operator_to_dict, parse_network, write_network_file


def write_network(path: Path, with_keyset: bool) -> tuple[list[str], bytes]:
    """A network file of four (key-less) operators and, with `with_keyset`, an in-process key set of threshold 3."""
    from node.p2p.host import get_peer_id

    entries = [make_operator_entry(secrets.token_bytes(32), str(get_peer_id(secrets.token_bytes(32))),
                                   f"/ip4/127.0.0.1/tcp/{5000 + i}") for i in range(4)]
    net = parse_network({"version": 1, "network_id": 1, "genesis_time": 1_000, "epoch_period_s": 3, "threshold": 3,
                         "chains": [{"chain_id": 31337, "confirmations": 1, "lag_s": 0, "contracts": None}],
                         "governance": None, "operators": [operator_to_dict(e) for e in entries],
                         "keyset": None})
    keyset = run_dkg_in_process(4, 3).results["1"].keyset
    write_network_file(path, net.with_keyset(keyset) if with_keyset else net)
    return [e.address for e in entries], keyset.group_public_key
