"""Errors of the `node.crypto` package.

One base (`CryptoError`) so callers can catch everything this package raises; every leaf names the
offending field in its message. No state, nothing persisted.
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base of every error raised by node.crypto."""


class InvalidEncodingError(CryptoError, ValueError):
    """Bytes are not a valid encoding of a point, scalar or field element."""


class InvalidPointError(CryptoError, ValueError):
    """A decoded point is the identity or lies outside the prime-order subgroup."""


class InvalidScalarError(CryptoError, ValueError):
    """A secret or share scalar is out of range (must be 1 <= s < r)."""


class ThresholdError(CryptoError):
    """A threshold operation got too few, duplicate or inconsistent shares or partials."""


class DkgError(CryptoError):
    """A DKG or resharing session got an invalid message or cannot finish."""


class KeystoreError(CryptoError):
    """A keystore file is malformed, unreadable, too permissive or has the wrong passphrase."""
