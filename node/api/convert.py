"""One converter per boundary: domain records -> `clearing.api.v1` / `clearing.admin.v1` messages,
and request fields -> validated domain values (parse, don't verify).

Amounts leave as int64 micro-USD; a value outside int64 is refused (`OutOfRange`), never wrapped.
`AccountLeaf.detail` is canonical JSON written by the state module; the keys read here are
`risk_array` (23 integers, micro-USD), `worst_scenario` (int or null) and `collateral_by_chain`
(the state module's list of [chain id, asset, token base units]); missing or malformed keys give
empty fields. Every address leaves EIP-55 checksummed (`format_account`, `format_address`).
Nothing is persisted.
"""

from __future__ import annotations

import json
import re

from eth_utils import to_checksum_address

from node.api.errors import ApiError
from node.pb.clearing.admin.v1 import admin_pb2
from node.pb.clearing.api.v1 import api_pb2
from node.records import AccountLeaf, Evidence, SignedState

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ACCOUNT_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
BPS = 10_000
LIQUIDATABLE_FLAG = 1


class OutOfRange(ApiError):
    """An amount does not fit the int64 micro-USD fields of the API."""


def parse_account(text: str) -> bytes | None:
    """20-byte address from `0x` + 40 hex digits, or None when malformed."""
    return bytes.fromhex(text[2:]) if ACCOUNT_RE.match(text) else None


def format_account(account: bytes) -> str:
    """EIP-55 checksummed text of a 20-byte address."""
    return to_checksum_address(account)


def format_address(text: str) -> str:
    """EIP-55 checksummed form of a 0x-hex address string; any other text (e.g. empty) unchanged."""
    return to_checksum_address(text) if ACCOUNT_RE.match(text) else text


def to_int64(value: int, name: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise OutOfRange(f"{name}: {value} outside int64")
    return value


def state_to_pb(state: SignedState) -> api_pb2.SignedState:
    return api_pb2.SignedState(
        network_id=state.network_id, keyset_id=state.keyset_id, epoch=state.epoch,
        pins=[api_pb2.ChainPin(chain_id=p.chain_id, block_number=p.number, block_hash=p.block_hash)
              for p in state.pins],
        inputs_digest=state.inputs_digest, params_hash=state.params_hash, root=state.root,
        leaf_count=state.leaf_count, digest=state.digest, signature=state.signature, signers=list(state.signers),
    )


def _read_detail(detail: bytes) -> dict:
    if not detail:
        return {}
    try:
        value = json.loads(detail)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def compute_health_bps(equity: int, mm: int) -> tuple[int, bool]:
    """(floor(equity * 10_000 / mm), unbounded) with unbounded when mm == 0."""
    if mm <= 0:
        return 0, True
    return max(INT64_MIN, min(INT64_MAX, (equity * BPS) // mm)), False


def leaf_to_margin(leaf: AccountLeaf) -> api_pb2.AccountMargin:
    detail = _read_detail(leaf.detail)
    health, unbounded = compute_health_bps(leaf.equity, leaf.mm)
    worst = detail.get("worst_scenario")
    collateral = detail.get("collateral_by_chain") or []
    return api_pb2.AccountMargin(
        account=format_account(leaf.account), epoch=leaf.epoch,
        equity_micro_usd=to_int64(leaf.equity, "equity"),
        initial_margin_micro_usd=to_int64(leaf.im, "im"),
        maintenance_margin_micro_usd=to_int64(leaf.mm, "mm"),
        free_collateral_micro_usd=to_int64(leaf.equity - leaf.im, "free_collateral"),
        health_bps=health, health_unbounded=unbounded,
        liquidatable=bool(leaf.flags & LIQUIDATABLE_FLAG),
        risk_array_micro_usd=[to_int64(int(v), "risk_array") for v in detail.get("risk_array") or []],
        worst_scenario=int(worst) if isinstance(worst, int) else -1,
        collateral=get_collateral(collateral),
        approved_withdrawals=list(leaf.approved_withdrawals),
    )


def get_collateral(raw: object) -> list[api_pb2.ChainCollateral]:
    """Per-chain collateral rows (chain id, asset, base units) of the detail's list; others are skipped."""
    rows: list[api_pb2.ChainCollateral] = []
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, list) and len(item) == 3 and isinstance(item[0], int) and isinstance(item[2], int):
                rows.append(api_pb2.ChainCollateral(chain_id=item[0], asset=str(item[1]), amount=str(item[2])))
    return rows


def evidence_to_pb(ev: Evidence) -> admin_pb2.Evidence:
    return admin_pb2.Evidence(kind=ev.kind, epoch=ev.epoch, signer_index=ev.signer_index, first=ev.first,
                              second=ev.second, note=ev.note)


PROPOSAL_STATUS = {
    "open": api_pb2.PROPOSAL_STATUS_OPEN, "passed": api_pb2.PROPOSAL_STATUS_PASSED,
    "rejected": api_pb2.PROPOSAL_STATUS_REJECTED, "executed": api_pb2.PROPOSAL_STATUS_EXECUTED,
    "expired": api_pb2.PROPOSAL_STATUS_EXPIRED, "invalid": api_pb2.PROPOSAL_STATUS_INVALID,
}
