"""Client library of the clearing layer's public API, for protocols.

`ClearingClient` (several validators, failover and retries, typed results, optional local
verification of proofs and the group signature), `Registry` (a chain's registry: group key, waiting
until an epoch is published), `formats` (the signing format re-derived from the documented formulas,
docs/integration/verify-margin-state.md). Imports only the generated protos (`node.pb`) and
third-party libraries, never the node itself (tests/test_import_boundaries.py).
"""

from clearing_client.chain import PublicationError, Registry, read_group_key
from clearing_client.client import ApiError, ClearingClient, NotFound, message_to_dict, open_channel
from clearing_client.formats import LeafValues, VerificationError
from clearing_client.types import (
    ChainPin,
    Collateral,
    Margin,
    MarginReport,
    Parameters,
    Proposal,
    SignedState,
    Simulation,
    Validator,
    ValidatorSet,
    to_json_dict,
    usd,
)

__all__ = [
    "ApiError",
    "ChainPin",
    "ClearingClient",
    "Collateral",
    "LeafValues",
    "Margin",
    "MarginReport",
    "NotFound",
    "Parameters",
    "Proposal",
    "PublicationError",
    "Registry",
    "SignedState",
    "Simulation",
    "Validator",
    "ValidatorSet",
    "VerificationError",
    "message_to_dict",
    "open_channel",
    "read_group_key",
    "to_json_dict",
    "usd",
]
