"""Threshold cryptography of the clearing node.

`bls` (BLS12-381 min-sig signatures, EIP-2537 encodings), `threshold` (Shamir shares, partial
signatures, Lagrange combination), `dkg` (dealerless joint-Feldman DKG state machine), `reshare`
(resharing to a new validator set under the same group key) and `keystore` (encrypted secret files).
Nothing here performs network I/O, reads a clock or starts threads; persistence is limited to the
keystore's files.
"""
