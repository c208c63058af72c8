"""Resharing a key set (n, t) -> (n', t') under the same group public key.

Runs the DKG state machine of `dkg.py` with a resharing `SessionConfig`: the dealers are the old
holders (old indices), each dealing a fresh degree t'-1 polynomial whose constant term is its old
share (the deal is refused unless commitment 0 equals the dealer's old public share); the recipients
are the new holders (new indices). At the end each new holder takes sum_i lambda_i * s_ij over the
qualified old dealers (Lagrange at 0 over their old indices), and the new commitments are the same
combination of the dealers' commitments, so the new group key equals the old one.

Invariants: the new key-set id is the old one + 1; at least t old holders must qualify; old and new
shares lie on unrelated polynomials, so partials from different key sets never combine. Persists
nothing (the caller stores the new share and retires the old one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from node.crypto.dealing import Participant, PreviousKeySet, SessionConfig
from node.crypto.dkg import DkgMachine, DkgResult, DkgTimeouts, KeySet
from node.crypto.dkg_bus import (
    BusNode,
    BusOutcome,
    FaultyMachine,
    Misbehaviour,
    make_encryption_keys,
    make_participants,
    run_bus,
)
from node.crypto.errors import DkgError


def make_reshare_config(
    previous: KeySet,
    dealers: Sequence[int],
    recipients: Sequence[Participant],
    new_threshold: int,
    nonce: bytes = b"",
) -> SessionConfig:
    """The resharing session from `previous` (dealt by old holders `dealers`) to `recipients`."""
    unknown = sorted(set(dealers) - set(previous.holders))
    if unknown:
        raise DkgError(f"dealers: {unknown} are not holders of key set {previous.keyset_id}")
    return SessionConfig(
        epoch=previous.keyset_id + 1,
        threshold=new_threshold,
        dealers=tuple(sorted(dealers)),
        recipients=tuple(sorted(recipients, key=lambda p: p.index)),
        nonce=nonce,
        previous=PreviousKeySet(keyset_id=previous.keyset_id, commitments=previous.commitments),
    )


def make_reshare_machine(
    config: SessionConfig,
    *,
    old: DkgResult | None,
    new_index: int | None,
    encryption_key: X25519PrivateKey | None,
    timeouts: DkgTimeouts | None = None,
    misbehaviour: Misbehaviour | None = None,
) -> DkgMachine:
    """A participant holding an old share (dealer), a new index (recipient), or both."""
    if old is not None and (old.index is None or old.share is None):
        raise DkgError("old: a dealer must hold an old share and index")
    dealer_index = old.index if old is not None and old.index in config.dealers else None
    kwargs = {
        "encryption_key": encryption_key,
        "dealer_index": dealer_index,
        "recipient_index": new_index,
        "timeouts": timeouts,
        "dealer_secret": old.share if dealer_index is not None and old is not None else None,
    }
    if misbehaviour is None:
        return DkgMachine(config, **kwargs)  # type: ignore[arg-type]
    return FaultyMachine(config, misbehaviour=misbehaviour, **kwargs)


def run_reshare_in_process(
    old_results: Mapping[int, DkgResult],
    new_n: int,
    new_t: int,
    *,
    continuing: Mapping[int, int] | None = None,
    nonce: bytes = b"in-process-reshare",
    misbehaviour: Mapping[int, Misbehaviour] | None = None,
    timeouts: DkgTimeouts | None = None,
) -> BusOutcome:
    """Reshare among old holders `old_results` (by old index) to new holders 1..new_n.

    `continuing` maps an old index to the new index of the same node (one machine in both roles);
    other old holders only deal and other new holders only receive. Results are keyed
    "old<i>" / "new<j>" / "old<i>-new<j>"; `misbehaviour` is keyed by old index (dealer faults).
    """
    if not old_results:
        raise DkgError("old_results: empty")
    continuing = dict(continuing or {})
    misbehaviour = misbehaviour or {}
    previous = next(iter(old_results.values())).keyset
    keys = make_encryption_keys(range(1, new_n + 1))
    config = make_reshare_config(previous, sorted(old_results), make_participants(keys), new_t, nonce)
    nodes: list[BusNode] = []
    for old_index, old in sorted(old_results.items()):
        new_index = continuing.get(old_index)
        name = f"old{old_index}" + (f"-new{new_index}" if new_index is not None else "")
        fault = misbehaviour.get(old_index)
        machine = make_reshare_machine(
            config,
            old=old,
            new_index=new_index,
            encryption_key=keys[new_index] if new_index is not None else None,
            timeouts=timeouts,
            misbehaviour=fault,
        )
        nodes.append(BusNode(name=name, machine=machine, misbehaviour=fault))
    for new_index in sorted(set(range(1, new_n + 1)) - set(continuing.values())):
        machine = make_reshare_machine(
            config, old=None, new_index=new_index, encryption_key=keys[new_index], timeouts=timeouts
        )
        nodes.append(BusNode(name=f"new{new_index}", machine=machine))
    return run_bus(nodes)


def get_new_holders(outcome: BusOutcome) -> dict[int, DkgResult]:
    """The results of every node that received a new share, keyed by new index."""
    return {r.index: r for r in outcome.results.values() if r.index is not None and r.share is not None}
