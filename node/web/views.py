"""The JSON documents of the web view, built from what the node's public API serves.

Same sources and converters as `clearing.api.v1.MarginService`: signed states and leaves from the
store through the API's `SnapshotCache` (Merkle proofs), margins through `node.api.convert`
(`leaf_to_margin`, so the numbers are the API's), what-if through `node.api.whatif` (the code path of
`SimulateMargin`), the validator set from the node's `NodeSources`; plus what the chains hold
(`node.publications.PublicationWatcher`) and each chain registry's `verifyLeaf` for an account's proof.

Amounts are integers in micro-USD, as in the API. The risk array of a leaf is the JOINT scan (all
underlyings moved together in scenario s, RISK_SPEC section 2): the signed leaf carries no
per-underlying scenario P&L, and the documents say so (`risk_array_kind`). Bounded: timeline
windows (`MAX_TIMELINE`), ranking only books up to `MAX_RANKED_ACCOUNTS` leaves (cached per epoch).
Read-only; nothing is persisted.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from node.api.convert import compute_health_bps, format_account, leaf_to_margin, parse_account
from node.api.snapshot import SnapshotCache
from node.api.sources import NodeSources
from node.metrics import EpochClock
from node.ports import Store
from node.publications import PublicationWatcher

MAX_TIMELINE = 200
MAX_AT_RISK = 100
MAX_RANKED_ACCOUNTS = 50_000
PENDING_EPOCHS = 3  # an unsigned epoch this recent may still be signed (round deadline, catch-up)
VOL_STATES = ("down", "none", "up")
RISK_ARRAY_KIND = ("joint: every underlying moves by k * PSR_u / 3 in the same scenario; the signed leaf "
                   "holds no per-underlying scenario P&L")
WHATIF_ARRAY_KIND = ("joint: every underlying moves by k * PSR_u / 3 in the same scenario; per underlying, the "
                     "what-if output gives the scan loss only (table above)")


class WebError(Exception):
    """A request the web view refuses; `status` is the HTTP status, the message names the field."""

    def __init__(self, status: int, message: str, violations: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.violations = violations or []


def get_scenarios() -> list[dict[str, Any]]:
    """The 23 joint scenarios in risk-array order (RISK_SPEC section 2): s = 3 (k + 3) + j, then k = -6, +6."""
    out = [{"s": 3 * (k + 3) + j, "k": k, "vol": VOL_STATES[j], "weight": 1.0} for k in range(-3, 4) for j in range(3)]
    return [*out, {"s": 21, "k": -6, "vol": "none", "weight": 0.35}, {"s": 22, "k": 6, "vol": "none", "weight": 0.35}]


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


WHATIF_TIMEOUT_S = 10.0


class WebViews:
    """Builds every JSON document of the web view (thread-safe: reads only, one small cache)."""

    def __init__(self, store: Store, snapshots: SnapshotCache, sources: NodeSources,
                 watcher: PublicationWatcher | None = None, clock: EpochClock | None = None,
                 sandbox: Any = None) -> None:
        self.store, self.snapshots, self.sources, self.watcher, self.clock = store, snapshots, sources, watcher, clock
        self.sandbox = sandbox  # the public API's what-if worker pool (node.api.sandbox.Sandbox); None: no what-if
        self._ranked: tuple[int, list[dict[str, Any]]] | None = None
        self._rank_lock = threading.Lock()

    # --- overview and timeline ----------------------------------------------------------------
    def get_overview(self) -> dict[str, Any]:
        latest = self.store.get_latest_signed_state()
        vs = self.sources.get_validator_set()
        status = self.sources.get_status()
        chains = [{"chain_id": v.chain_id, "registry": v.registry, "latest_epoch": v.latest_epoch,
                   "publisher_balance_wei": None if v.balance_wei is None else str(v.balance_wei), "error": v.error}
                  for v in (self.watcher.get_views() if self.watcher else [])]
        return {
            "network_id": status.network_id, "validator_index": status.validator_index,
            "syncing": status.syncing, "latest_epoch": latest.epoch if latest else None,
            "current_epoch": self.clock.get_current_epoch() if self.clock else None,
            "epoch_period_s": self.clock.period_s if self.clock else None, "chains": chains,
            "validator_set": {"keyset_id": vs.keyset_id, "threshold": vs.threshold,
                              "validators": [{"index": v.index, "address": v.address, "peer_id": v.peer_id,
                                              "is_self": v.index == vs.self_index} for v in vs.validators]},
        }

    def get_timeline(self, limit: int) -> dict[str, Any]:
        """The newest `limit` epochs: signed (signers, key set, params hash, publications) or not."""
        if not 1 <= limit <= MAX_TIMELINE:
            raise WebError(400, f"limit: must be in 1..{MAX_TIMELINE}")
        latest = self.store.get_latest_signed_state()
        current = self.clock.get_current_epoch() if self.clock else None
        first = self.store.list_signed_states(0, 1)
        if latest is None or not first:
            return {"epochs": [], "current_epoch": current}
        top = max(latest.epoch, (current or 0) - 1)
        low = max(first[0].epoch, top - limit + 1)
        states = {s.epoch: s for s in self.store.list_signed_states(low, limit)}
        rows: list[dict[str, Any]] = []
        for epoch in range(top, low - 1, -1):
            state = states.get(epoch)
            if state is None:
                pending = current is not None and epoch >= current - PENDING_EPOCHS
                rows.append({"epoch": epoch, "status": "pending" if pending else "skipped"})
                continue
            pubs = self.watcher.get_publications(epoch) if self.watcher else {}
            rows.append({
                "epoch": epoch, "status": "signed", "signers": list(state.signers), "keyset_id": state.keyset_id,
                "params_hash": _hex(state.params_hash), "root": _hex(state.root), "digest": _hex(state.digest),
                "leaf_count": state.leaf_count, "pins": [{"chain_id": p.chain_id, "block": p.number} for p in state.pins],
                "published": {str(c): {"tx": _hex(p.tx_hash), "gas_used": p.gas_used, "block": p.block_number,
                                       "sender": p.sender} for c, p in sorted(pubs.items())},
            })
        return {"epochs": rows, "current_epoch": current,
                "chains": [v.chain_id for v in self.watcher.get_views()] if self.watcher else []}

    # --- accounts -------------------------------------------------------------------------------
    def get_account(self, text: str, epoch: int | None) -> dict[str, Any]:
        account = parse_account(text)
        if account is None:
            raise WebError(400, "account: must be 0x followed by 40 hex digits")
        snap = self.snapshots.get_latest() if epoch is None else self.snapshots.get_epoch(epoch)
        if snap is None:
            raise WebError(404, "epoch: no signed state" + ("" if epoch is None else f" for epoch {epoch}"))
        leaf = self.store.get_leaf(snap.state.epoch, account)
        if leaf is None:
            failure = self.store.get_failure(snap.state.epoch, account)
            why = "" if failure is None else f": its margin could not be computed ({failure[0]}: {failure[1]})"
            raise WebError(404, f"account: no leaf for {format_account(account)} in epoch {snap.state.epoch}{why}")
        m = leaf_to_margin(leaf)
        proof = snap.get_proof(leaf)
        return {
            "account": m.account, "epoch": snap.state.epoch, "equity": m.equity_micro_usd,
            "initial_margin": m.initial_margin_micro_usd, "maintenance_margin": m.maintenance_margin_micro_usd,
            "free_collateral": m.free_collateral_micro_usd, "health_bps": m.health_bps,
            "health_unbounded": m.health_unbounded, "liquidatable": m.liquidatable,
            "risk_array": list(m.risk_array_micro_usd), "risk_array_kind": RISK_ARRAY_KIND,
            "worst_scenario": None if m.worst_scenario < 0 else m.worst_scenario, "scenarios": get_scenarios(),
            "collateral": [{"chain_id": c.chain_id, "asset": c.asset, "amount": c.amount} for c in m.collateral],
            "leaf_index": leaf.index, "proof_length": len(proof),
            "proof_on_chain": self._check_proof(snap.state.epoch, leaf.encoded, proof),
        }

    def _check_proof(self, epoch: int, encoded: bytes, proof: Sequence[bytes]) -> dict[str, dict[str, str]]:
        """Per chain: `verified`, `not_published` (the registry is behind), `not_verified`, or `error`."""
        from bridges.errors import BridgeError

        out: dict[str, dict[str, str]] = {}
        if self.watcher is None:
            return out
        for reader in self.watcher.readers:
            try:
                if reader.get_latest_epoch() < epoch:
                    out[str(reader.chain_id)] = {"status": "not_published"}
                    continue
                ok = reader.verify_leaf(epoch, encoded, proof)
                out[str(reader.chain_id)] = {"status": "verified" if ok else "not_verified"}
            except BridgeError as exc:
                out[str(reader.chain_id)] = {"status": "error", "detail": str(exc)[:200]}
        return out

    def get_at_risk(self, limit: int) -> dict[str, Any]:
        """The accounts of the latest epoch closest to liquidation (lowest equity / MM first)."""
        if not 1 <= limit <= MAX_AT_RISK:
            raise WebError(400, f"limit: must be in 1..{MAX_AT_RISK}")
        snap = self.snapshots.get_latest()
        if snap is None:
            return {"epoch": None, "accounts": []}
        if snap.state.leaf_count > MAX_RANKED_ACCOUNTS:
            raise WebError(413, f"epoch {snap.state.epoch}: {snap.state.leaf_count} accounts, more than the "
                                f"{MAX_RANKED_ACCOUNTS} this view ranks")
        with self._rank_lock:
            if self._ranked is None or self._ranked[0] != snap.state.epoch:
                self._ranked = (snap.state.epoch, self._rank(snap.state.epoch))
            ranked = self._ranked[1]
        return {"epoch": snap.state.epoch, "accounts": ranked[:limit], "ranked": len(ranked)}

    def _rank(self, epoch: int) -> list[dict[str, Any]]:
        rows = []
        for leaf in self.store.get_leaves(epoch):
            health, unbounded = compute_health_bps(leaf.equity, leaf.mm)
            if unbounded:
                continue  # no maintenance margin: nothing to liquidate
            rows.append({"account": format_account(leaf.account), "equity": leaf.equity, "initial_margin": leaf.im,
                         "maintenance_margin": leaf.mm, "health_bps": health, "liquidatable": bool(leaf.flags & 1)})
        return sorted(rows, key=lambda r: (r["health_bps"], r["account"]))

    # --- what-if --------------------------------------------------------------------------------
    def simulate(self, body: bytes) -> dict[str, Any]:
        """The what-if document (JSON) -> `SimulateMargin`'s result object (RISK_SPEC section 6, USD), computed
        by the public API's sandboxed worker pool exactly as the gRPC call is (never in this process)."""
        import grpc

        from node.api import whatif
        from node.api.errors import RpcAbort
        from node.pb.clearing.api.v1 import api_pb2

        if self.sandbox is None:
            raise WebError(503, "what-if: the node serves no public API ([api] enabled) and so no what-if workers")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WebError(400, "body: not UTF-8 text") from exc
        try:
            response = whatif.simulate_request(self.sandbox, api_pb2.SimulateMarginRequest(whatif_json=text),
                                               timeout_s=WHATIF_TIMEOUT_S)
        except RpcAbort as exc:
            violations = [{"field": v.field, "description": v.description}
                          for d in exc.details for v in getattr(d, "field_violations", ())]
            status = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
                      grpc.StatusCode.RESOURCE_EXHAUSTED: 429, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
                      grpc.StatusCode.UNIMPLEMENTED: 501}.get(exc.code, 503)
            raise WebError(status, exc.message, violations) from exc
        return {"result": json.loads(response.result_json), "scenarios": get_scenarios(),
                "risk_array_kind": WHATIF_ARRAY_KIND}
