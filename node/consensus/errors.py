"""Errors of the `node.consensus` package.

One base (`ConsensusError`); each leaf names the offending field or epoch. No state, nothing persisted.
"""

from __future__ import annotations


class ConsensusError(Exception):
    """Base of every error raised by node.consensus."""


class InputsUnavailable(ConsensusError):
    """The epoch's inputs could not be pinned or read (chain RPC down, pin not ready, reorg)."""


class InvalidStateError(ConsensusError, ValueError):
    """A signed state's fields are malformed, its digests do not match, or its signature is wrong."""


class InvalidPartialError(ConsensusError, ValueError):
    """A partial signature is malformed, out of window, from a non-member, or does not verify."""


class TransitionError(ConsensusError):
    """An epoch round was asked for a transition its table does not allow."""
