"""Errors of the `node.p2p` package.

One base (`P2PError`) for everything the gossip layer raises; each leaf names the offending field.
No state, nothing persisted.
"""

from __future__ import annotations


class P2PError(Exception):
    """Base of every error raised by node.p2p."""


class EnvelopeError(P2PError, ValueError):
    """A gossip envelope is malformed, too large, of an unknown version or kind, or badly signed."""


class NotMemberError(EnvelopeError):
    """An envelope's signer index is not in the validator set or its key does not match."""


class UnknownKeysetError(NotMemberError):
    """An envelope names a key set this node does not know (yet): dropped without penalising the sender."""


class OutOfWindowError(EnvelopeError):
    """A message's epoch is too old or too far in the future for the current epoch."""


class CatchUpError(P2PError):
    """A catch-up request failed: no peer answered, the stream broke, or the answer was invalid."""
