"""The genesis key ceremony between the operators' own machines (the engine of `clearingd dkg`).

Every operator runs it in its own process and home. The processes meet over libp2p: each listens on
its network-file multiaddr and dials the others' (`/p2p/<peer id>` from the file), on the topic
`/clearing/<network id>/genesis/1`. Every message is a `DkgMessage` in a SignedEnvelope of kind DKG,
sealed under key-set id 0 (no key set exists yet) by the sender's operator key, index = its position
in the file; the gossip validator refuses a message not signed by a listed operator, or relayed for an
operator from another origin than the peer id the file lists for it.

1. Rendezvous: every `announce_s` each process gossips `Ready` (attempt, network-file hash, the
   operators it has heard from, flags). It starts once every other operator has heard from it and
   it from them, or once a peer that hears it has started, or at `wait_s` with at least `threshold`
   operators (the others are then excluded by the protocol). A peer on another attempt or another
   network file is reported by name.
2. The dealerless joint-Feldman DKG (`node.crypto.dkg.DkgMachine`, driven over the gossip by
   `node.consensus.dkg_session.DkgSession`): session = (key-set id 1, the file's threshold, dealers =
   recipients = operators 1..n with the file's X25519 `dkg_key`s, nonce = H(file hash, attempt)); the
   share each dealer deals to operator j is sealed to j's key, so no process ever sees another's
   share. Phases end when complete or after `phase_timeout_s`.
3. Key check: each finisher gossips `Done` (the key-set record's hash and a partial signature of a
   check message under its new share); each verifies the others' partials against their public
   shares and combines `threshold` of them into a group signature it verifies: the key works.

The report (a dict, `CeremonyOutcome.report`) names the qualified dealers, the excluded operators
with the reason (no deal: offline or silent; complaints unanswered or answered with a share that fails
the Feldman check: cheating), the operators that hold no share, the key check, and on failure why.
A failed ceremony changes nothing and can be rerun with the next `attempt` (a new session id).
Persists nothing: the caller writes the share (encrypted) and the network file with the key set.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from node.consensus.dkg_session import DkgSession, get_session_number
from node.crypto import threshold
from node.crypto.dealing import Participant, SessionConfig
from node.crypto.dkg import DkgMachine, DkgResult, DkgTimeouts
from node.crypto.errors import CryptoError, DkgError
from node.network_file import GENESIS_KEYSET_ID, Network, compute_network_hash, derive_ceremony_key
from node.p2p.envelope import open_envelope, seal_envelope
from node.p2p.errors import EnvelopeError
from node.pb.clearing.gossip.v1 import gossip_pb2

log = logging.getLogger(__name__)

CEREMONY_KEYSET_ID = 0
READY_TYPE = "clearing.ceremony.v1.Ready"
DONE_TYPE = "clearing.ceremony.v1.Done"
DST_NONCE = b"CLEARING-V1-GENESIS-CEREMONY"
DST_CHECK = b"CLEARING-V1-GENESIS-KEY-CHECK"
FLAG_STARTED, FLAG_DONE = 1, 2
MAX_EARLY = 1024
PARTIAL_SIZE = 48


class CeremonyError(DkgError):
    """The ceremony could not run (bad home, unreachable operators) or failed; the message says why."""


@dataclass(frozen=True)
class CeremonyOptions:
    attempt: int = 1
    wait_s: float = 600.0  # rendezvous bound
    phase_timeout_s: float = 10.0
    linger_s: float = 10.0  # after finishing: bound on waiting for the others' key check
    announce_s: float = 0.5
    misbehaviour: Any = None  # node.crypto.dkg_bus.Misbehaviour: fault drills only


@dataclass(frozen=True)
class Identity:
    """This operator's secrets and where it listens (from its home)."""

    operator_key: bytes = field(repr=False)
    p2p_seed: bytes = field(repr=False)
    listen: str


@dataclass(frozen=True)
class CeremonyOutcome:
    result: DkgResult | None  # this operator's share (None: failed, or no share)
    report: dict[str, Any]


def get_session_config(net: Network, attempt: int) -> SessionConfig:
    """Every participant builds the same session from the network file and the attempt number."""
    nonce = hashlib.sha256(DST_NONCE + bytes.fromhex(compute_network_hash(net)[2:]) + attempt.to_bytes(8, "big"))
    recipients = tuple(Participant(i + 1, bytes.fromhex(op.dkg_key[2:])) for i, op in enumerate(net.operators))
    return SessionConfig(epoch=GENESIS_KEYSET_ID, threshold=net.threshold, dealers=tuple(range(1, len(recipients) + 1)),
                         recipients=recipients, nonce=nonce.digest())


def get_check_message(config: SessionConfig) -> bytes:
    return hashlib.sha256(DST_CHECK + config.session_id).digest()


def encode_ready(attempt: int, network_hash: str, flags: int, heard: set[int], n: int) -> bytes:
    bitmap = sum(1 << j for j in heard).to_bytes((n + 7) // 8, "big")
    return attempt.to_bytes(8, "big") + bytes.fromhex(network_hash[2:]) + bytes([flags]) + bitmap


@dataclass
class Ready:
    attempt: int
    network_hash: str
    flags: int
    heard: set[int]


def decode_ready(body: bytes, n: int) -> Ready:
    if len(body) != 41 + (n + 7) // 8:
        raise CeremonyError("ready: wrong length")
    bits = int.from_bytes(body[41:], "big")
    return Ready(int.from_bytes(body[:8], "big"), "0x" + body[8:40].hex(), body[40],
                 {j for j in range(n) if bits >> j & 1})


class Ceremony:
    """One operator's run; `run()` inside trio returns the outcome (see the module docstring)."""

    def __init__(self, net: Network, index: int, identity: Identity, options: CeremonyOptions,
                 say: Callable[[str], None] = lambda _m: None) -> None:
        from eth_keys import keys

        from node.p2p.host import get_peer_id

        self.net, self.index, self.identity, self.options, self.say = net, index, identity, options, say
        self.n = len(net.operators)
        me = net.operators[index]
        if keys.PrivateKey(identity.operator_key).public_key.to_checksum_address() != me.address:
            raise CeremonyError(f"operators[{index}].address: not this home's operator key")
        if str(get_peer_id(identity.p2p_seed)) != me.peer_id:
            raise CeremonyError(f"operators[{index}].peer_id: not this home's p2p key")
        enc_key = derive_ceremony_key(identity.operator_key)
        if "0x" + enc_key.public_key().public_bytes_raw().hex() != me.dkg_key:
            raise CeremonyError(f"operators[{index}].dkg_key: not derived from this home's operator key")
        self.network_hash = compute_network_hash(net)
        self.config = get_session_config(net, options.attempt)
        self.machine = self._make_machine(enc_key)
        self.session_number = get_session_number(self.machine)
        self.addresses = tuple(bytes.fromhex(op.address[2:]) for op in net.operators)
        self.peers = self._get_peer_ids()
        self.ready: dict[int, Ready] = {}
        self.mismatch: dict[int, str] = {}
        self.done: dict[int, bytes] = {}  # index -> Done body
        self.started_with: set[int] = set()
        self.session: DkgSession | None = None
        self.early: list[tuple[int, gossip_pb2.DkgMessage]] = []
        self.flags = 0
        self.done_body = b""
        self.host: Any = None

    def _make_machine(self, enc_key: Any) -> DkgMachine:
        t = self.options.phase_timeout_s
        kwargs: dict[str, Any] = {"encryption_key": enc_key, "dealer_index": self.index + 1,
                                  "recipient_index": self.index + 1, "timeouts": DkgTimeouts(t, t, t)}
        if self.options.misbehaviour is None:
            return DkgMachine(self.config, **kwargs)
        from node.crypto.dkg_bus import FaultyMachine

        self.say(f"FAULT DRILL: this operator misbehaves as dealer ({self.options.misbehaviour})")
        return FaultyMachine(self.config, misbehaviour=self.options.misbehaviour, **kwargs)

    def _get_peer_ids(self) -> tuple[bytes, ...]:
        from libp2p.peer.id import ID

        return tuple(ID.from_base58(op.peer_id).to_bytes() for op in self.net.operators)

    # --- gossip ----------------------------------------------------------------------------------

    def seal(self, kind: int, payload: bytes) -> bytes:
        return seal_envelope(kind, payload, self.index, self.identity.operator_key, self.net.network_id,
                             CEREMONY_KEYSET_ID)

    def open(self, origin: bytes, data: bytes) -> tuple[int, gossip_pb2.DkgMessage] | str:
        """(signer index, message) of a valid ceremony envelope, or the rejection reason."""
        try:
            opened = open_envelope(data, self.addresses, self.net.network_id, CEREMONY_KEYSET_ID)
        except EnvelopeError:
            return "not_member"
        msg = opened.message
        if opened.kind != gossip_pb2.MESSAGE_KIND_DKG or msg.sender_index != opened.signer_index:  # type: ignore[attr-defined]
            return "malformed"
        if origin != self.peers[opened.signer_index]:
            return "peer_binding"
        return opened.signer_index, msg  # type: ignore[return-value]

    def validate(self, forwarder: str, origin: bytes, data: bytes) -> str | None:
        opened = self.open(origin, data)
        return opened if isinstance(opened, str) else None

    async def deliver(self, origin: bytes, data: bytes) -> None:
        opened = self.open(origin, data)
        if isinstance(opened, str):
            return
        signer, msg = opened
        if msg.type_name == READY_TYPE:
            self._process_ready(signer, msg.body)
        elif msg.type_name == DONE_TYPE and msg.session_id == self.session_number:
            self.done.setdefault(signer, bytes(msg.body))
        elif self.session is not None:
            self.session.offer(signer, msg)
        elif len(self.early) < MAX_EARLY:
            self.early.append((signer, msg))

    def _process_ready(self, signer: int, body: bytes) -> None:
        try:
            ready = decode_ready(body, self.n)
        except CeremonyError:
            return
        if ready.attempt != self.options.attempt or ready.network_hash != self.network_hash:
            self.mismatch[signer] = (f"runs attempt {ready.attempt} with network file {ready.network_hash}; this "
                                     f"operator runs attempt {self.options.attempt} with {self.network_hash}")
            self.ready.pop(signer, None)
            return
        self.mismatch.pop(signer, None)
        self.ready[signer] = ready

    async def _announce_loop(self) -> None:
        assert self.host is not None
        while True:
            body = encode_ready(self.options.attempt, self.network_hash, self.flags, set(self.ready), self.n)
            await self._publish(READY_TYPE, body, 0)
            if self.done_body:
                await self._publish(DONE_TYPE, self.done_body, self.session_number)
            await trio.sleep(self.options.announce_s)

    async def _publish(self, type_name: str, body: bytes, session: int) -> None:
        msg = gossip_pb2.DkgMessage(session_id=session, sender_index=self.index, type_name=type_name, body=body)
        try:
            await self.host.publish(self.seal(gossip_pb2.MESSAGE_KIND_DKG, msg.SerializeToString()))
        except Exception as exc:  # no peer yet: the next round retries
            log.debug("publish failed", extra={"reason": str(exc)})

    # --- phases ----------------------------------------------------------------------------------

    def get_mutual(self) -> set[int]:
        return {j for j, r in self.ready.items() if self.index in r.heard}

    def should_start(self, now: float, deadline: float) -> bool:
        mutual = self.get_mutual()
        if len(mutual) == self.n - 1:
            return True
        if any(self.ready[j].flags & FLAG_STARTED for j in mutual):
            return True
        return now >= deadline and len(mutual) + 1 >= self.net.threshold

    async def rendezvous(self) -> None:
        deadline = trio.current_time() + self.options.wait_s
        last = -1
        while not self.should_start(trio.current_time(), deadline):
            if trio.current_time() >= deadline:
                raise CeremonyError(self._describe_missing())
            mutual = self.get_mutual()
            if len(mutual) != last:
                last = len(mutual)
                self.say(f"waiting for the other operators: {len(mutual) + 1} of {self.n} connected")
            await trio.sleep(0.1)
        self.started_with = self.get_mutual() | {self.index}
        self.flags |= FLAG_STARTED
        self.say(f"starting the DKG with operators {sorted(j + 1 for j in self.started_with)} of {self.n}")

    def _describe_missing(self) -> str:
        absent = [f"{j + 1} ({self.net.operators[j].address}): {self.mismatch.get(j, 'not reachable')}"
                  for j in range(self.n) if j != self.index and j not in self.get_mutual()]
        return (f"only {len(self.get_mutual()) + 1} of {self.n} operators met within {self.options.wait_s:.0f}s, "
                f"threshold {self.net.threshold}; missing: " + "; ".join(absent))

    async def run_dkg(self) -> DkgResult | None:
        assert self.host is not None
        self.session = DkgSession(self.machine, self.index, self.seal, self.host.publish)
        for signer, msg in self.early:
            self.session.offer(signer, msg)
        self.early.clear()
        try:
            return await self.session.run(3 * self.options.phase_timeout_s + 30)
        except DkgError as exc:
            self.say(f"DKG failed: {exc}")
            return None

    async def key_check(self, result: DkgResult | None) -> None:
        """Publish this operator's Done and wait (bounded) for the other starters' Done."""
        if result is not None and result.share is not None:
            digest = hashlib.sha256(result.keyset.to_record().SerializeToString(deterministic=True)).digest()
            self.done_body = digest + threshold.partial_sign(result.share, get_check_message(self.config))
        else:
            self.done_body = bytes(32)
        self.flags |= FLAG_DONE
        with trio.move_on_after(self.options.linger_s):
            while not set(self.done) >= self.started_with - {self.index}:
                await trio.sleep(0.1)
        await trio.sleep(2 * self.options.announce_s)  # let the last announcements of our Done go out

    async def run(self) -> CeremonyOutcome:
        from node.p2p.host import GossipHost, HostConfig

        bootstrap = tuple(op.get_bootstrap() for j, op in enumerate(self.net.operators) if j != self.index)
        self.host = GossipHost(HostConfig(p2p_seed=self.identity.p2p_seed, listen=self.identity.listen,
                                          bootstrap=bootstrap, topic=f"/clearing/{self.net.network_id}/genesis/1"),
                               validate=self.validate, deliver=self.deliver, serve=self._serve_nothing)
        result, failure = None, None
        async with trio.open_nursery() as nursery:
            await nursery.start(self.host.run)
            nursery.start_soon(self._announce_loop)
            try:
                await self.rendezvous()
            except CeremonyError as exc:
                failure = str(exc)
            else:
                result = await self.run_dkg()
                await self.key_check(result)
            nursery.cancel_scope.cancel()
        report = build_report(self, result)
        if failure is not None:
            report |= {"status": "failed", "failure": failure, "excluded": [], "without_share": []}
        return CeremonyOutcome(result if result is not None and result.share is not None else None, report)

    @staticmethod
    async def _serve_nothing(peer: str, request: bytes) -> bytes:
        return b""


# --- the report --------------------------------------------------------------------------------


def get_exclusion_reason(c: Ceremony, dealer: int) -> str:
    """Why `dealer` is not in the qualified set (as this operator's machine saw it)."""
    m = c.machine
    joined = dealer - 1 in c.started_with
    if dealer not in m.deals:
        return "sent no deal in time: " + ("silent dealer" if joined else "offline (never joined the ceremony)")
    accusers = sorted(m.get_status().complaints.get(dealer, ()))
    reveal = m.reveals.get(dealer)
    if reveal is None:
        return f"complaints from operators {accusers} not answered (no justification)"
    bad = [j for j in accusers if j not in reveal.shares
           or not threshold.is_share_consistent(m.deals[dealer].points, j, reveal.shares[j])]
    return (f"dealt shares that fail the Feldman check to operators {accusers}; its revealed shares for {bad} "
            "fail it too (cheating dealer)")


def get_key_check(c: Ceremony, result: DkgResult | None) -> dict[str, Any]:
    if result is None or result.share is None:
        return {"verified_partials": [], "group_signature_verified": False, "missing": []}
    keyset, message = result.keyset, get_check_message(c.config)
    mine = c.done_body[:32]
    partials, disagree = {}, []
    for j, body in {**c.done, c.index: c.done_body}.items():
        if body[:32] != mine:
            disagree.append(j + 1)
        elif len(body) == 32 + PARTIAL_SIZE and threshold.partial_verify(
                keyset.get_public_share(j + 1), message, body[32:]):
            partials[j + 1] = body[32:]
    verified = False
    if len(partials) >= keyset.threshold:
        try:
            verified = threshold.group_verify(keyset.group_public_key, message,
                                              threshold.combine(partials, keyset.threshold))
        except CryptoError:
            verified = False
    return {"message": "0x" + message.hex(), "verified_partials": sorted(partials),
            "combined_from": sorted(partials)[:keyset.threshold], "group_signature_verified": verified,
            "missing": sorted(j + 1 for j in c.started_with if j != c.index and j not in c.done),
            "different_key_set": disagree}


def build_report(c: Ceremony, result: DkgResult | None) -> dict[str, Any]:
    m, ops = c.machine, c.net.operators
    qualified = list(result.keyset.qualified) if result is not None else list(m.compute_qualified()) \
        if m.deals else []
    check = get_key_check(c, result)
    failure = m.failure if result is None else None
    if result is not None and check["different_key_set"]:
        failure = f"operators {check['different_key_set']} derived a different key set: do not use this one"
    report: dict[str, Any] = {
        "status": "ok" if failure is None and result is not None else "failed",
        "attempt": c.options.attempt, "network_id": c.net.network_id, "network_hash_before": c.network_hash,
        "session_id": "0x" + c.config.session_id.hex(), "operator_index": c.index + 1, "operators": len(ops),
        "threshold": c.net.threshold, "participants": sorted(j + 1 for j in c.started_with),
        "qualified": qualified,
        "excluded": [{"index": d, "address": ops[d - 1].address, "reason": get_exclusion_reason(c, d)}
                     for d in range(1, len(ops) + 1) if d not in qualified],
        "without_share": [{"index": j, "address": ops[j - 1].address,
                           "reason": "sent no response: holds no share (offline or failed)"}
                          for j in range(1, len(ops) + 1) if j not in m.responses],
        "key_check": check, "failure": failure,
        "group_key": None if result is None else "0x" + result.keyset.group_public_key.hex(),
        "mismatched_peers": {str(j + 1): why for j, why in c.mismatch.items()},
    }
    return report


def run_ceremony(net: Network, index: int, identity: Identity, options: CeremonyOptions,
                 say: Callable[[str], None] = lambda _m: None) -> CeremonyOutcome:
    """Blocking entry (own trio loop)."""
    ceremony = Ceremony(net, index, identity, options, say)
    return trio.run(ceremony.run)
