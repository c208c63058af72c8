"""Errors of the bridges package: one base, one leaf per failure, each with a one-line docstring.

Append new leaves here (several engineers add to this file; keep additions append-only).
"""


class BridgeError(Exception):
    """Base of every error raised by `bridges`."""


# --- chain adapter (bridges/chain.py) ---


class ChainUnavailable(BridgeError):
    """A chain's RPC did not answer after the bounded retries; nothing was guessed in its place."""

    def __init__(self, chain_id: int, reason: str) -> None:
        super().__init__(f"chain {chain_id} unavailable: {reason}")
        self.chain_id = chain_id
        self.reason = reason


class RpcError(BridgeError):
    """A chain's RPC answered with a deterministic JSON-RPC error (not retried)."""

    def __init__(self, chain_id: int, method: str, code: int, message: str, data: object = None) -> None:
        super().__init__(f"chain {chain_id} {method}: error {code}: {message}")
        self.chain_id = chain_id
        self.method = method
        self.code = code
        self.message = message
        self.data = data


class CallReverted(RpcError):
    """An eth_call or transaction reverted; `data` holds the revert bytes when the node gave them."""


class ChainIdMismatch(BridgeError):
    """The RPC endpoint serves a different chain id than the one configured."""


class PinNotReady(BridgeError):
    """No block can be pinned yet: the cutoff is not followed by a confirmed later block."""


class ReorgDetected(BridgeError):
    """A pinned or followed block is no longer canonical; re-pin and re-read."""

    def __init__(self, chain_id: int, number: int, expected_hash: str, actual_hash: str | None) -> None:
        super().__init__(f"chain {chain_id} block {number}: pinned {expected_hash}, canonical {actual_hash}")
        self.chain_id = chain_id
        self.number = number
        self.expected_hash = expected_hash
        self.actual_hash = actual_hash


class ReorgTooDeep(BridgeError):
    """A reorg reached below the follower's bounded block history; it cannot rewind safely."""


class InvalidChainResponse(BridgeError):
    """The RPC answered with a malformed value (wrong type, length or shape) for the named field."""


# --- publisher (bridges/publisher.py) ---


class PublishError(BridgeError):
    """Base of the publisher's failures; the message names the chain and the epoch."""


class PublishInFlight(PublishError):
    """Another transaction of this publisher is still in flight on the chain."""


class FeeCapExceeded(PublishError):
    """The chain's base fee plus tip exceeds the configured fee cap."""


class PublishReverted(PublishError):
    """The registry refused the state (estimate or mined transaction reverted); names the error."""


class EpochSuperseded(PublishError):
    """The registry already holds this or a later epoch with a different root."""


class ReceiptTimeout(PublishError):
    """No receipt arrived within the bounded wait; the transaction may still be mined later."""


# --- contracts, artifacts and deployment (bridges/artifacts.py, bridges/deploy.py, bridges/statecodec.py) ---


class ArtifactNotFound(BridgeError):
    """No compiled artifact exists for the named contract; run scripts/compile_contracts.py."""


class DeploymentError(BridgeError):
    """A deployment or setup transaction failed, reverted or timed out; the message names the step."""


class InvalidDeployment(BridgeError):
    """A serialised Deployment is malformed; the message names the offending field."""


class InvalidLeafValue(BridgeError):
    """A margin leaf or digest input is out of its ABI range; the message names the offending field."""


class EmptyTree(BridgeError):
    """A Merkle proof was asked of a tree without leaves."""


# --- chain books (bridges/book*.py) ---


class InvalidChainValue(BridgeError):
    """An on-chain value read at a pin is invalid for the whole epoch (the message names chain and field)."""


class SnapshotTooLarge(BridgeError):
    """A paginated view returned more entries than the snapshot bound allows."""
