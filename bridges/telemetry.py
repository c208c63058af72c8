"""Process-wide telemetry hook: the adapters and the consensus code report events where they happen.

`get_telemetry()` returns the process's `Telemetry`; its methods do nothing until the node installs
its metrics (`node.metrics.NodeMetrics.install` calls `set_telemetry`), so libraries, tests and tools
that never install one pay nothing. The hook lives here, in the lowest package that emits events
(bridges imports nothing of the node), so every layer reports through the same object.

Invariants: every method is cheap and never raises into the caller (an implementation must swallow
its own errors); values are plain numbers, never secrets. One telemetry per process: a second
`set_telemetry` replaces the first (a process runs one node). Nothing is persisted.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

# Why an account got no leaf, as a metric label (bounded): a quote older than the network's bound, another
# oracle problem (missing or non-positive value), a position of an unusable instrument, collateral without
# a usable price, amounts beyond int64 micro-USD, or the risk engine's own check.
FAILURE_REASONS = ("stale_quote", "oracle", "position", "collateral", "amounts", "risk")


def classify_account_failure(field: str, reason: str) -> str:
    """The FAILURE_REASONS label of one account failure (`bridges.book_merge.AccountFailure` field, reason)."""
    if "older than" in reason:
        return "stale_quote"
    for prefix, label in (("positions[", "position"), ("collateral.", "collateral"), ("amounts", "amounts")):
        if field.startswith(prefix):
            return label
    return "oracle" if "oracle" in field or "oracle" in reason else "risk"


class Telemetry:
    """The events reported; this base class ignores them all."""

    def chain_rpc_failed(self, chain_id: int) -> None:
        """One chain request failed after its retries (the chain was unreachable or overloaded)."""

    def publish_mined(self, chain_id: int, gas_used: int) -> None:
        """A publish transaction of this node was mined on `chain_id` and used `gas_used`."""

    def registry_epoch(self, chain_id: int, epoch: int) -> None:
        """The registry on `chain_id` holds states up to `epoch` (its `latestEpoch`)."""

    def publisher_balance(self, chain_id: int, wei: int) -> None:
        """The balance of the account that pays this node's publications on `chain_id`."""

    def compute_stage(self, stage: str, seconds: float) -> None:
        """One stage of an epoch's computation took `seconds` (`node.consensus.margin_inputs`: pin,
        read_apply, merge, governance, risk, settle, leaves, records, total)."""

    def round_signed(self, start_to_signed_s: float, pinned_to_signed_s: float) -> None:
        """A round this node computed ended with a signed state: latency from the epoch start and from the pin."""

    def accounts_without_leaf(self, counts: Mapping[str, int]) -> None:
        """The epoch just computed left these many accounts without a leaf, by FAILURE_REASONS label (a
        label absent from `counts` had none)."""


_NULL = Telemetry()
_current: Telemetry = _NULL
_lock = threading.Lock()


def set_telemetry(telemetry: Telemetry | None) -> None:
    """Install the process's telemetry (None: back to the no-op one)."""
    global _current
    with _lock:
        _current = telemetry if telemetry is not None else _NULL


def get_telemetry() -> Telemetry:
    return _current


