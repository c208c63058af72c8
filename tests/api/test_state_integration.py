"""The API over a state computed by the state module (`node.state.compute_margin_state` on risk-engine
inputs), threshold-signed and stored: every served number, leaf and proof is the state module's."""

from __future__ import annotations

from pathlib import Path

import grpc

from bridges.chain import Pin
from bridges.snapshot import AccountInputs, MarginInputs
from node.api.server import ApiServerConfig, start_api_server
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from node.records import ChainPin, SignedState
from node.state import compute_margin_state
from node.store import SQLiteStore
from risk.instruments import Instrument, Market, Position
from risk.params import RRA1
from tests.api.conftest import make_sources
from tests.store.factories import SIGNERS, sign_digest

MICRO = 10**6
HEDGED, NAKED, POOR = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
PINS = (Pin(31337, 10, b"\x01" * 32, 1000), Pin(31338, 20, b"\x02" * 32, 1001))


def compute_state():  # type: ignore[no-untyped-def]
    market = Market(spot={"BTC": 100_000.0, "ETH": 3_000.0}, forwards={}, asset_prices={"USDC": 1.0, "ETH": 3_000.0})
    perp = Instrument(underlying="BTC", kind="perp")
    accounts = (
        AccountInputs(HEDGED, (Position(perp, 1.0), Position(Instrument(underlying="ETH", kind="perp"), -10.0)),
                      (("USDC", 30_000.0),), ((31337, "USDC", 20_000 * MICRO), (31338, "USDC", 10_000 * MICRO))),
        AccountInputs(NAKED, (Position(perp, 1.0),), (("USDC", 20_000.0),), ((31337, "USDC", 20_000 * MICRO),)),
        AccountInputs(POOR, (Position(perp, -1.0),), (("USDC", 1_000.0),), ((31338, "USDC", 1_000 * MICRO),)),
    )
    inputs = MarginInputs(epoch_time=2_000_000_000, home_chain_id=31337, pins=PINS, market=market,
                          accounts=accounts, withdrawals=(), failures=())
    return compute_margin_state(inputs, RRA1, PINS, network_id=7, keyset_id=1, epoch=9, params_hash=b"\x77" * 32)


def test_served_margin_is_the_state_modules(tmp_path: Path) -> None:
    ms = compute_state()
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
            for account in (HEDGED, NAKED, POOR):
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
            poor = stub.GetMargin(api_pb2.GetMarginRequest(account=POOR), timeout=10).report.margin
            naked = stub.GetMargin(api_pb2.GetMarginRequest(account=NAKED), timeout=10).report.margin
            hedged = stub.GetMargin(api_pb2.GetMarginRequest(account=HEDGED), timeout=10).report.margin
            assert poor.liquidatable and not naked.liquidatable
            assert naked.initial_margin_micro_usd == 15_000 * MICRO  # long 1 BTC perp: 15% scan (RRA-1)
            assert hedged.initial_margin_micro_usd < 21_000 * MICRO  # below the separate sum 15,000 + 6,000
    finally:
        server.stop(0.2)
        store.close()
