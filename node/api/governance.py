"""Governance as the API serves it: proposals and the parameter schedule derived from the home
chain's Governance contract (the same derivation as `clearingd gov list` / `params show`), cached.

`GovernanceReader.get_state()` re-derives at most every `refresh_s` seconds (one reader at a time;
concurrent callers get the cached state), keeps the last good state when the chain is unreachable,
and returns None until a first derivation succeeded. The genesis is derived as the node derives it:
validator set and threshold from the contract's set version 0 at the read pin, the epoch clock
exactly as the node's `[consensus]` configures it (no fallback to the home chain's block 0) and the
genesis key-set id (`node.governance_source.get_genesis_at`), so API and node agree. Status mapping
to the API enum: pending -> OPEN, approved -> PASSED (EXECUTED once the contract executed it),
rejected -> REJECTED, invalid (a parameter set or change refused by validation) -> INVALID, expired
-> EXPIRED; the tally's reason is in the description. One `GovernanceChain` is kept across refreshes, so
settled proposals are read once per process (in memory; the validator's own reader persists them).
Persists nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from node.api.sources import ParametersInfo, ProposalInfo
from node.governance_source import GENESIS_KEYSET_ID

LOG = logging.getLogger(__name__)
STATUS = {"pending": "open", "approved": "passed", "rejected": "rejected", "invalid": "invalid",
          "expired": "expired"}


class GovernanceReader:
    def __init__(self, rpc_url: str, address: str, confirmations: int, genesis_time: float, epoch_seconds: float,
                 refresh_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 genesis_keyset_id: int = GENESIS_KEYSET_ID) -> None:
        # the node's clock as configured (a fractional one fails each read, logged, as the node refuses it)
        self.args = argparse.Namespace(rpc_url=rpc_url, governance_address=address, confirmations=confirmations,
                                       genesis_time=genesis_time, epoch_seconds=epoch_seconds,
                                       genesis_keyset_id=genesis_keyset_id)
        self.refresh_s = refresh_s
        self.clock = clock
        self._state: Any = None
        self._stamp = -float("inf")
        self._lock = threading.Lock()
        self._gov: Any = None  # one reader kept across refreshes: its settled proposals are read once

    def get_state(self) -> Any:
        """The derived `governance.tally.GovernanceState`, or None before the first success."""
        if self.clock() - self._stamp < self.refresh_s or not self._lock.acquire(blocking=False):
            return self._state
        try:
            from node.cli.gov import derive_from_chain, get_governance

            if self._gov is None:
                self._gov = get_governance(self.args)
            self._state = derive_from_chain(self.args, self._gov).state
        except Exception as exc:  # chain down or contract unreadable: keep the last good state
            LOG.warning("governance read failed", extra={"reason": str(exc)})
        finally:
            self._stamp = self.clock()
            self._lock.release()
        return self._state

    def get_parameters(self, epoch: int | None) -> ParametersInfo | None:
        state = self.get_state()
        if state is None:
            return None
        return get_version_info(state.schedule, epoch or 0)

    def list_proposals(self, from_id: int, limit: int) -> list[ProposalInfo]:
        state = self.get_state()
        if state is None:
            return []
        found = sorted((o for o in state.proposals if o.record.proposal_id >= from_id),
                       key=lambda o: o.record.proposal_id)[:limit]
        return [to_proposal_info(o) for o in found]


def to_proposal_info(outcome: Any) -> ProposalInfo:
    r, c = outcome.record, outcome.count
    status = STATUS.get(outcome.status.value, "")
    if status == "passed" and r.executed:
        status = "executed"
    return ProposalInfo(id=r.proposal_id, status=status, proposer=r.proposer, activation_epoch=r.activation_epoch,
                        params_hash=outcome.params_hash or b"", votes_for=c.yes, votes_against=c.no,
                        description=f"{outcome.status.value}: {outcome.reason}"[:500])


def get_version_info(schedule: Any, epoch: int) -> ParametersInfo:
    """The schedule's version active at `epoch` as the API's `ParametersInfo`."""
    from node.cli.gov import params_to_dict
    from risk.params import encode_params

    version = schedule.get_active_version(epoch)
    return ParametersInfo(version=schedule.versions.index(version) + 1, activation_epoch=version.activation_epoch,
                          params_hash=version.params_hash, encoded=encode_params(version.params),
                          params_json=json.dumps(params_to_dict(version.params), sort_keys=True))
