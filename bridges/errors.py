"""Errors of the bridges package: one base, one leaf per failure, each with a one-line docstring.

Append new leaves here (several engineers add to this file; keep additions append-only).
"""


class BridgeError(Exception):
    """Base of every error raised by `bridges`."""
