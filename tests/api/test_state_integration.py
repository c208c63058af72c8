"""The API over a state computed by the epoch pipeline (chain books -> `node.pipeline.compute_epoch_state`),
threshold-signed and stored: every served number, leaf and proof is the state module's."""

from __future__ import annotations

from pathlib import Path

import grpc

from node.api.server import ApiServerConfig, start_api_server
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from node.records import ChainPin, SignedState
from node.store import SQLiteStore
from tests.api.conftest import make_sources
from tests.state.test_state import A, B, D, build_state
from tests.store.factories import SIGNERS, sign_digest

MICRO = 10**6


def test_served_margin_is_the_state_modules(tmp_path: Path) -> None:
    ms = build_state()
    signed = SignedState(network_id=ms.network_id, keyset_id=ms.keyset_id, epoch=ms.epoch,
                         pins=tuple(ChainPin(c, n, h) for c, n, h in ms.pins), inputs_digest=ms.inputs_digest,
                         params_hash=ms.params_hash, root=ms.root, leaf_count=ms.leaf_count, digest=ms.digest,
                         signature=sign_digest(ms.digest), signers=SIGNERS)
    store = SQLiteStore(tmp_path / "n.sqlite")
    store.put_signed_state(signed, ms.get_account_leaves())
    server = start_api_server(ApiServerConfig(listen="127.0.0.1:0"), store, make_sources())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = api_pb2_grpc.MarginServiceStub(channel)
            for account in (A, B, D):
                i = ms.get_index(account)
                leaf, detail = ms.leaves[i], ms.details[i]
                rep = stub.GetMargin(api_pb2.GetMarginRequest(account=account), timeout=10).report
                m = rep.margin
                assert (m.equity_micro_usd, m.initial_margin_micro_usd, m.maintenance_margin_micro_usd) == (
                    leaf.equity, leaf.im, leaf.mm)
                assert m.free_collateral_micro_usd == detail.free_collateral
                assert list(m.risk_array_micro_usd) == list(detail.risk_array) and len(m.risk_array_micro_usd) == 23
                assert m.worst_scenario == (detail.worst_scenario if detail.worst_scenario is not None else -1)
                assert [(c.chain_id, c.asset, int(c.amount)) for c in m.collateral] == list(detail.collateral_by_chain)
                assert m.liquidatable == leaf.is_liquidatable()
                assert list(rep.proof) == ms.get_proof(account) and rep.leaf_index == i
                assert rep.state.root == ms.root and rep.state.digest == ms.digest
            poor = stub.GetMargin(api_pb2.GetMarginRequest(account=D), timeout=10).report.margin
            cash = stub.GetMargin(api_pb2.GetMarginRequest(account=B), timeout=10).report.margin
            long_perp = stub.GetMargin(api_pb2.GetMarginRequest(account=A), timeout=10).report.margin
            assert poor.liquidatable and not cash.liquidatable
            assert long_perp.initial_margin_micro_usd == 15_000 * MICRO  # long 1 BTC perp: 15% scan (RRA-1)
            # its open requests (20,000 of 30,000) are treated as leaving: 10,000 < MM 12,000
            assert long_perp.liquidatable and long_perp.equity_micro_usd == 10_000 * MICRO
    finally:
        server.stop(0.2)
        store.close()
