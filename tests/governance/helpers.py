"""Shared builders for the governance tests: a 4-validator genesis and proposal/vote records.

Record timestamps follow one clock: block b has timestamp `get_block_timestamp(b)` (block 10 -> 1_025,
epoch 2 of GENESIS)."""

from __future__ import annotations

from governance.proposals import (
    EpochClock,
    GovernanceGenesis,
    ProposalKind,
    ProposalRecord,
    ValidatorSetChange,
    VoteRecord,
    encode_validator_set_change,
)
from risk.param_codec import V1_FIXED_SCALE
from risk.params import FIXED_SCALE, RRA1, encode_params, params_with_overrides

VALIDATORS = tuple(f"0x{i:040x}" for i in range(1, 5))
OUTSIDER = "0x" + "ee" * 20
GENESIS = GovernanceGenesis(VALIDATORS, 3, EpochClock(genesis_time=1_000, epoch_seconds=10))
WIDE_BTC = params_with_overrides(RRA1, {"price_scan_range": {"BTC": 0.25}})


def make_param_proposal(pid: int = 1, *, payload: bytes | None = None, end_block: int = 10,
                        activation_epoch: int = 5, end_timestamp: int | None = 1_025,
                        created_block: int = 2) -> ProposalRecord:
    """A PARAMETER_SET proposal; the default end timestamp lies in epoch 2."""
    return ProposalRecord(pid, ProposalKind.PARAMETER_SET, VALIDATORS[0],
                          encode_params(WIDE_BTC) if payload is None else payload, created_block, end_block,
                          activation_epoch, 0, len(VALIDATORS), end_timestamp=end_timestamp)


def get_block_timestamp(block: int) -> int:
    return 1_005 + 2 * block


def make_change_proposal(pid: int, change: ValidatorSetChange, *, end_block: int = 10, activation_epoch: int = 6,
                         set_version: int = 0, set_size: int = 4, created_block: int = 2,
                         resulting_set_version: int = 0, executed_block: int = 0) -> ProposalRecord:
    """A VALIDATOR_SET proposal, executed (at `executed_block`) when `resulting_set_version` > 0."""
    executed = resulting_set_version > 0
    return ProposalRecord(pid, ProposalKind.VALIDATOR_SET, VALIDATORS[0], encode_validator_set_change(change),
                          created_block, end_block, activation_epoch, set_version, set_size, executed,
                          resulting_set_version, get_block_timestamp(end_block), executed_block,
                          get_block_timestamp(executed_block) if executed else None)


def make_votes(pid: int, choices: list[int], voters: tuple[str, ...] = VALIDATORS,
               block: int = 5) -> list[VoteRecord]:
    return [VoteRecord(pid, voter, choice, block) for voter, choice in zip(voters, choices, strict=False)]


def patch_fixed(payload: bytes, key: str, old: float, new: float) -> bytes:
    """Rewrite one fixed-point value of a canonical parameter encoding WITHOUT validation (to build
    the invalid-but-well-formed payloads a faulty or malicious proposer could send)."""
    raw = key.encode()
    scale = V1_FIXED_SCALE if payload[8:10] == b"\x00\x01" else FIXED_SCALE  # format 1 or 2
    def enc(x: float) -> bytes:
        return len(raw).to_bytes(4, "big") + raw + b"\x02" + round(x * scale).to_bytes(8, "big", signed=True)
    assert payload.count(enc(old)) == 1, f"{key}={old} not found exactly once"
    return payload.replace(enc(old), enc(new))


INVALID_MM_PAYLOAD = patch_fixed(encode_params(WIDE_BTC), "maintenance_factor", 0.8, 1.5)
