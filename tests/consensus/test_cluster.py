"""Process tests: validator OS processes on loopback over real libp2p, with two real anvil chains.

Inputs are REAL pinned blocks of the anvil chains (`ChainPinSource`: block hash/number per chain at
T_e - lag, `confirmations` deep); the margin computation is the pin-only stand-in (no accounts),
because this part does not wire the risk engine. Every stored state is checked against the group
key, its own fields, and the chains' real block hashes.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from eth_hash.auto import keccak

from bridges.anvil import rpc_call, start_chains
from node.consensus.digest import validate_state_fields
from node.crypto.threshold import group_verify
from node.p2p.host import get_peer_id
from tests.consensus.cluster import (
    NodeProcess,
    build_configs,
    get_current_epoch,
    p2p_seed,
    start_cluster,
    stop_cluster,
    wait_for,
)
from tests.consensus.proxy import TcpProxy

pytestmark = pytest.mark.slow

PERIOD_S = 2.0
# Production inputs: one margin computation at a time per node (engine backpressure) must fit in an
# epoch even on a loaded machine, where it took 4-5 s with four nodes and two anvils on two cores.
MARGIN_PERIOD_S = 6.0
STARTUP_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def chains():
    running = start_chains([31337, 31338], block_time=1)
    yield running
    for chain in running:
        chain.stop()


def chain_entries(chains, urls: dict[int, str] | None = None) -> list[dict]:
    urls = urls or {}
    return [{"chain_id": c.chain_id, "rpc_url": urls.get(c.chain_id, c.rpc_url), "lag_s": 2, "confirmations": 1}
            for c in chains]


def wait_all_bound(nodes: list[NodeProcess]) -> None:
    n = len(nodes)
    ok = wait_for(lambda: all(len(nd.read_status().get("bindings", {})) >= n - 1 for nd in nodes), STARTUP_TIMEOUT_S)
    assert ok, "nodes did not learn each other's heartbeats: " + nodes[0].log_text()[-2000:]


def has_epochs(node: NodeProcess, epochs: range) -> bool:
    have = set(node.read_status().get("have", []))
    return all(e in have for e in epochs)


def wait_epochs(nodes: list[NodeProcess], epochs: range, slack_s: float = 90.0, period_s: float = PERIOD_S) -> None:
    """Wait until every node holds every epoch of `epochs`; the deadline allows for a machine loaded well past
    its cores (seven validator processes and two chains on two cores, beside other work: catch-up then lags)."""
    timeout = (epochs.stop - get_current_epoch(nodes[0].config) + 2) * period_s + slack_s
    ok = wait_for(lambda: all(has_epochs(nd, epochs) for nd in nodes), timeout)
    missing = {nd.index: sorted(set(epochs) - set(nd.read_status().get("have", []))) for nd in nodes}
    assert ok, f"epochs not signed everywhere: missing {missing}"


def check_states(nodes: list[NodeProcess], epochs: range, chains, group_key: bytes) -> None:
    """Every node holds the same valid signed state for every epoch, pinned to real block hashes."""
    reference = None
    for node in nodes:
        store = node.open_store()
        try:
            states = {e: store.get_signed_state(e) for e in epochs}
        finally:
            store.close()
        for e, state in states.items():
            assert state is not None, f"node {node.index} lacks epoch {e}"
            validate_state_fields(state)
            assert group_verify(group_key, state.digest, state.signature), f"epoch {e}: bad group signature"
        summary = {e: (s.digest, s.signature) for e, s in states.items()}
        reference = reference or summary
        assert summary == reference, f"node {node.index} disagrees with node {nodes[0].index}"
    urls = {c.chain_id: c.rpc_url for c in chains}
    store = nodes[0].open_store()
    try:
        for e in epochs:
            for pin in store.get_signed_state(e).pins:
                block = rpc_call(urls[pin.chain_id], "eth_getBlockByNumber", [hex(pin.number), False])
                assert bytes.fromhex(block["hash"][2:]) == pin.block_hash
    finally:
        store.close()


def get_last_signed_epoch(node: NodeProcess) -> int:
    store = node.open_store()
    try:
        last = store.get_last_signed()
        return -1 if last is None else last[0]
    finally:
        store.close()


def get_metric(node: NodeProcess, name: str) -> int:
    return int(node.read_status().get("metrics", {}).get(name, 0))


def test_four_nodes_sign_every_epoch(chains, tmp_path: Path) -> None:
    configs = build_configs(tmp_path, 4, chain_entries(chains), PERIOD_S)
    group_key = bytes.fromhex(configs[0]["validator_set"]["group_key"])
    nodes = start_cluster(configs, tmp_path)
    try:
        wait_all_bound(nodes)
        first = get_current_epoch(configs[0]) + 1
        epochs = range(first, first + 6)
        wait_epochs(nodes, epochs)
    finally:
        stop_cluster(nodes)
    check_states(nodes, epochs, chains, group_key)
    for node in nodes:
        store = node.open_store()
        try:
            assert store.list_evidence() == []
        finally:
            store.close()


def test_seven_nodes_survive_two_crashes_and_catch_up_without_double_signing(chains, tmp_path: Path) -> None:
    configs = build_configs(tmp_path, 7, chain_entries(chains), PERIOD_S)
    assert configs[0]["validator_set"]["threshold"] == 5
    group_key = bytes.fromhex(configs[0]["validator_set"]["group_key"])
    nodes = start_cluster(configs, tmp_path)
    try:
        wait_all_bound(nodes)
        first = get_current_epoch(configs[0]) + 1
        wait_epochs(nodes, range(first, first + 3))
        for node in nodes[5:]:
            node.stop(signal.SIGKILL)
        down_from = get_current_epoch(configs[0]) + 1
        live = nodes[:5]
        wait_epochs(live, range(down_from, down_from + 4))
        for node in nodes[5:]:
            node.start()
        wait_all_bound(nodes)
        # Node 6's durable signing record says it already signed a coming epoch with another digest
        # (written into its SQLite store by a second process, as a crashed predecessor would have):
        # it must refuse that epoch and every earlier one, and sign again afterwards.
        refused_until = get_current_epoch(configs[0]) + 2
        store = nodes[6].open_store()
        try:
            store.record_signing(refused_until, keccak(b"signed before the crash"))
        finally:
            store.close()
        back_from = get_current_epoch(configs[0]) + 1
        epochs = range(first, refused_until + 3)
        wait_epochs(nodes, epochs, slack_s=STARTUP_TIMEOUT_S)
    finally:
        stop_cluster(nodes)
    check_states(nodes, epochs, chains, group_key)
    assert nodes[5].read_status()["metrics"].get("catchup_states", 0) > 0
    assert nodes[6].read_status()["metrics"].get("sign_refused", 0) >= 1
    assert get_last_signed_epoch(nodes[6]) > refused_until  # it signs again after the refused epochs
    assert get_last_signed_epoch(nodes[5]) >= back_from
    for node in nodes:
        store = node.open_store()
        try:
            assert store.list_evidence() == [], f"node {node.index} holds evidence against an honest node"
        finally:
            store.close()


def test_byzantine_node_never_breaks_consensus(chains, tmp_path: Path) -> None:
    configs = build_configs(tmp_path, 4, chain_entries(chains), PERIOD_S)
    group_key = bytes.fromhex(configs[0]["validator_set"]["group_key"])
    nodes = start_cluster(configs, tmp_path, modules={3: "tests.consensus.byzantine_node"})
    honest = nodes[:3]
    try:
        wait_all_bound(nodes)
        first = get_current_epoch(configs[0]) + 1
        epochs = range(first, first + 6)  # covers every misbehaviour mode (epoch mod 3) twice
        wait_epochs(honest, epochs)
        assert nodes[3].is_running()
    finally:
        stop_cluster(nodes)
    check_states(honest, epochs, chains, group_key)
    byzantine_peer = str(get_peer_id(p2p_seed(3)))
    kinds: set[str] = set()
    for node in honest:
        store = node.open_store()
        try:
            evidence = store.list_evidence()
        finally:
            store.close()
        assert evidence and all(ev.signer_index == 3 for ev in evidence)
        kinds |= {ev.kind for ev in evidence}
        status = node.read_status()
        assert status["scores"].get(byzantine_peer, 0.0) < 0.0
        assert {"invalid_partial", "malformed"} <= set(status["rejections"])
    assert kinds == {"equivocation", "invalid_partial"}


def test_node_without_chain_rpc_does_not_sign_and_resumes(chains, tmp_path: Path) -> None:
    proxies = {c.chain_id: TcpProxy(c.port) for c in chains}
    configs = build_configs(tmp_path, 4, chain_entries(chains), PERIOD_S)
    configs[3]["chains"] = chain_entries(chains, {cid: p.url for cid, p in proxies.items()})
    group_key = bytes.fromhex(configs[0]["validator_set"]["group_key"])
    nodes = start_cluster(configs, tmp_path)
    try:
        wait_all_bound(nodes)
        first = get_current_epoch(configs[0]) + 1
        wait_epochs(nodes, range(first, first + 2))
        for proxy in proxies.values():
            proxy.disable()
        cut = get_current_epoch(configs[0]) + 1
        signed_before_cut = get_last_signed_epoch(nodes[3])
        wait_for(lambda: get_current_epoch(configs[0]) >= cut + 1, 3 * PERIOD_S)
        ready_in_outage = get_metric(nodes[3], "inputs_ready")
        wait_epochs(nodes[:3], range(cut, cut + 4))
        assert get_last_signed_epoch(nodes[3]) <= max(signed_before_cut, cut)  # at most the epoch in flight
        assert get_metric(nodes[3], "inputs_ready") == ready_in_outage  # read nothing while cut off
        assert get_metric(nodes[3], "inputs_unavailable") > 0
        for proxy in proxies.values():
            proxy.enable()
        back = get_current_epoch(configs[0]) + 1
        # Back online it computes every epoch again and either signs it or checks the state the
        # others signed first against its own computation.
        matches = get_metric(nodes[3], "adopted_matches_own")
        assert wait_for(lambda: get_last_signed_epoch(nodes[3]) >= back
                        or get_metric(nodes[3], "adopted_matches_own") >= matches + 2, 15 * PERIOD_S)
        assert get_metric(nodes[3], "adopted_differs_own") == 0
        epochs = range(first, back + 1)
        wait_epochs(nodes, epochs)
    finally:
        stop_cluster(nodes)
        for proxy in proxies.values():
            proxy.close()
    check_states(nodes, epochs, chains, group_key)


def test_four_nodes_sign_and_publish_real_margin_states(tmp_path: Path) -> None:
    """Production inputs: seeded contracts on two chains, RRA-1 margin of the demo book, published."""
    from bridges.artifacts import get_abi
    from bridges.chain import (
        ChainClient,
        ChainConfig,
        decode_function_result,
        encode_function_call,
        find_function_abi,
    )
    from bridges.deploy import get_dev_key
    from node.crypto.bls import g2_to_eip2537
    from node.devnet.seed import seed_chain

    running = start_chains([31411, 31412])  # automine while seeding, interval mining afterwards
    try:
        configs = build_configs(tmp_path, 4, [], MARGIN_PERIOD_S, inputs="margin")
        group_key = bytes.fromhex(configs[0]["validator_set"]["group_key"])
        genesis = int(configs[0]["genesis_time"])
        seeded = [seed_chain(c, pos, 7, 1, g2_to_eip2537(group_key), genesis) for pos, c in enumerate(running)]
        for chain in running:
            rpc_call(chain.rpc_url, "evm_setIntervalMining", [1])
        entries = [{"chain_id": s.chain_id, "rpc_url": s.rpc_url, "lag_s": 2, "confirmations": 1,
                    "registry": s.deployment.registry, "vault": s.deployment.vault, "ledger": s.deployment.ledger,
                    "oracle": s.deployment.oracle} for s in seeded]
        for i, config in enumerate(configs):
            config["chains"] = entries
            config["secrets"]["publisher_key"] = get_dev_key(1 + i).removeprefix("0x")
        fn = find_function_abi(get_abi("MarginStateRegistry"), "isStateRoot")

        def is_published(s, state) -> bool:  # type: ignore[no-untyped-def]
            data = encode_function_call(fn, [state.epoch, state.root])
            client = ChainClient(ChainConfig(chain_id=s.chain_id, rpc_url=s.rpc_url))
            raw = client.rpc("eth_call", [{"to": s.deployment.registry, "data": "0x" + data.hex()}, "latest"])
            return bool(decode_function_result(fn, bytes.fromhex(raw[2:]))[0])

        nodes = start_cluster(configs, tmp_path)
        try:
            wait_all_bound(nodes)
            first = get_current_epoch(configs[0]) + 1
            epochs = range(first, first + 3)
            wait_epochs(nodes, epochs, slack_s=60.0, period_s=MARGIN_PERIOD_S)
            store = nodes[2].open_store()
            try:
                states = [store.get_signed_state(e) for e in epochs]
                leaves = store.get_leaves(first)
            finally:
                store.close()
            # the designated publishers' transactions (fallbacks after publish_fallback_s each)
            wait_for(lambda: all(is_published(s, st) for s in seeded for st in states), 60)
        finally:
            stop_cluster(nodes)
        check_states(nodes, epochs, running, group_key)
        # the three demo accounts and the house (the venue on the other side of every demo trade)
        assert all(s.leaf_count == 4 for s in states) and len(leaves) == 4
        assert {leaf.flags for leaf in leaves} == {0}  # the demo book is healthy before the crash
        for s in seeded:
            for state in states:
                assert is_published(s, state), f"epoch {state.epoch} not published on chain {s.chain_id}"
    finally:
        for chain in running:
            chain.stop()


def test_invalid_config_index_refused(tmp_path: Path) -> None:
    from node.validator import parse_config

    config = build_configs(tmp_path, 4, [{"chain_id": 1, "rpc_url": "http://127.0.0.1:1"}], PERIOD_S)[0]
    config["index"] = 4
    with pytest.raises(ValueError, match="index"):
        parse_config(config)
