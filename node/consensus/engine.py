"""The epoch consensus loop: pin, compute, sign a partial, gossip, aggregate, persist, publish.

One `EpochEngine` per node, running in the node's trio loop. Each epoch e starts at
T_e = genesis + e * period and is driven through the transition table of `node.consensus.machine`:
1. pin and compute (the injected `InputSource`) through the node's single `InputWorker`: at most one
   computation in flight; a round whose computation cannot start or finish before its deadline is
   SKIPPED (reason `overrun`, `deadline`, `inputs_unavailable`, or `loop_late` when the loop itself
   woke after the deadline; counted in `epochs_skipped` of the status), never stacked; a late
   result is not signed; the state of a skipped epoch is still adopted;
2. `store.record_signing(e, digest)` BEFORE the partial leaves the node (refusal: the round is
   REFUSED and nothing is sent), then the partial is gossiped;
3. verified partials (see `validation`) are collected per digest; at t = threshold partials on the
   node's OWN digest they are combined, the group signature verified, the state persisted, gossiped
   and handed to the publisher (round robin with timed fallback, `publishing`);
4. a valid group-signed state received by gossip or catch-up is adopted (stored, never signed);
5. two different partials from one signer for one epoch become equivocation `Evidence` (stored and
   gossiped); a validly enveloped partial that does not verify becomes `invalid_partial` evidence;
6. partials on another digest raise a divergence alert; when another digest reaches the threshold
   the node re-reads its inputs once and logs the outcome (it still never signs that digest);
7. `run_dkg(machine)` drives one DKG session over the same gossip (`dkg_session`);
8. validator-set changes (`keychange`): the key set that signs epoch e is the one governance assigns
   to e at the epoch's pin (`ComputedState.signing`; its id is in the digest); partials are collected
   per (key set, digest) so shares of different key sets never combine; a pending change
   (`ComputedState.reshare`) makes old holders and new members reshare over the gossip before the
   activation epoch; from it on, the new key set signs (a node without a share of it only adopts).
Persists (through the `Store`): signing records, signed states with leaves, evidence; new shares
through the `on_share` callback (the validator writes an encrypted keystore); shares of key sets a
newer one replaced are erased through `on_retire` (`keychange`).
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio
from libp2p.peer.id import ID

from bridges.telemetry import get_telemetry
from node.consensus import catchup
from node.consensus.digest import compute_state_digest, pins_to_proto, state_from_proto, state_to_proto
from node.consensus.dkg_session import DkgSession
from node.consensus.evidence import EvidenceBook
from node.consensus.input_worker import LOOP_LATE, SKIP_REASONS, InputWorker
from node.consensus.inputs import ComputedState, InputSource
from node.consensus.keychange import KeyChanger
from node.consensus.keyring import KeyRing
from node.consensus.machine import Event, Phase, Round, is_allowed
from node.consensus.publishing import StatePublisher, compute_publish_rank
from node.consensus.validation import EpochWindow, GossipValidator, ValidatorSet
from node.crypto import threshold
from node.crypto.dkg import DkgMachine, DkgResult
from node.p2p.envelope import OpenedEnvelope, get_operator_address, seal_envelope
from node.p2p.errors import CatchUpError, EnvelopeError
from node.pb.clearing.gossip.v1 import gossip_pb2
from node.ports import Clock, DoubleSignRefused, Store
from node.records import Evidence, SignedState

log = logging.getLogger(__name__)

MAX_PARKED = 256
MAX_LATENCIES = 4096
MAX_HAVE = 100_000  # epochs remembered in memory (catch-up looks no further back)
CATCHUP_GIVE_UP = 3  # answers without an epoch before catch-up stops asking for it
MAX_CATCHUP_SCAN = 4096
STARTUP_HAVE = 10_000  # newest stored epochs loaded at start (the store lists at most 10,000)
MAX_EARLY_DKG = 1024  # DKG messages kept for a session this node has not started yet
STATE_GOSSIPERS = 2  # validators per epoch that gossip their aggregated state (publish ranks 0 and 1)


class Transport(Protocol):
    peer_id_bytes: bytes

    async def publish(self, data: bytes) -> None: ...
    async def request(self, peer: bytes, data: bytes) -> bytes: ...
    def penalize(self, peer: str, reason: str) -> None: ...


@dataclass(frozen=True)
class EngineParams:
    """Timing and bounds of the epoch loop."""

    round_deadline_s: float = 6.0  # after T_e; then the round expires (a late state may still be adopted)
    input_retry_s: float = 0.5  # after InputsUnavailable, inside the round's deadline
    publish_fallback_s: float = 3.0
    heartbeat_interval_s: float = 1.0
    catchup_interval_s: float = 2.0
    catchup_floor: int = 1
    partial_resends: int = 1  # re-gossips of the own partial while the round is still collecting
    partial_resend_s: float = 1.0
    max_rounds: int = 64
    start_epoch: int | None = None  # default: the first epoch that starts after launch
    reshare_window_epochs: int = 8  # reshare attempts start on multiples of this many epochs


@dataclass(frozen=True)
class Secrets:
    share_sk: int | None  # BLS share of validator `index` in the configured key set; None: joining node
    operator_key: bytes  # 32-byte secp256k1 operator key
    keyset: object | None = None  # node.crypto.dkg.KeySet of the configured key set (to deal in a reshare)
    later: tuple = ()  # DkgResults of later key sets (share keystores written by earlier reshares)


def bucket(keyset_id: int, digest: bytes) -> bytes:
    """Partials are collected per (key set, digest): shares of different key sets never combine."""
    return keyset_id.to_bytes(8, "big") + digest


class EpochEngine:
    """See the module docstring. `run(transport)` runs forever inside the node's nursery."""

    def __init__(self, vset: ValidatorSet, index: int | None, secrets: Secrets, store: Store,
                 inputs: InputSource, publisher: StatePublisher, window: EpochWindow,
                 params: EngineParams, clock: Clock, on_share: Callable[[object], None] | None = None,
                 on_retire: Callable[[int, int], None] | None = None) -> None:
        self.vset, self.index, self.secrets, self.store = vset, index, secrets, store
        self.inputs, self.publisher, self.window, self.params, self.clock = inputs, publisher, window, params, clock
        self.ring = KeyRing(vset, get_operator_address(secrets.operator_key))
        if index is not None and secrets.share_sk is not None:
            self.ring.add_share(vset.keyset_id, index, secrets.share_sk)
        if secrets.keyset is not None:
            self.ring.keysets[vset.keyset_id] = secrets.keyset
        self.validator = GossipValidator(vset, window, clock.now, sets=self.ring.sets)
        self.validator.on_misbehaviour = self._record_misbehaviour
        self.rounds: dict[int, Round] = {}
        self._events: dict[int, trio.Event] = {}
        self.have: set[int] = set()  # epochs whose signed state is in the store
        self._adopting: set[int] = set()
        self.peer_last_signed: dict[bytes, int] = {}  # operator address -> its last signed epoch
        self.catchup_cursor = params.catchup_floor
        self._catchup_misses: dict[int, int] = {}  # epoch -> answers that skipped it (bounded by the scan)
        self.metrics: dict[str, int] = {}
        self.latencies: deque[tuple[int, float, float]] = deque(maxlen=MAX_LATENCIES)  # epoch, pin->signed, start->signed
        self.last_pins: tuple = ()
        self._parked: deque[tuple[bytes, OpenedEnvelope]] = deque(maxlen=MAX_PARKED)
        self.evidence = EvidenceBook(store, self._seal, self._publish_via_transport, self.count)
        self.transport: Transport | None = None
        self._nursery: trio.Nursery | None = None
        self.dkg_sessions: dict[int, DkgSession] = {}
        self._early_dkg: deque[tuple[int, int, gossip_pb2.DkgMessage]] = deque(maxlen=MAX_EARLY_DKG)
        self.keys = KeyChanger(self, secrets.later, on_share, on_retire)
        self.worker = InputWorker(lambda e, t: self.inputs.compute_epoch(e, t),
                                  lambda e: int(self.window.get_epoch_start(e)), params.input_retry_s,
                                  self._on_inputs_failure, self._on_late_inputs)
        self.epochs_skipped: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)
        self.last_skipped: tuple[int, str] | None = None

    # --- bookkeeping ---------------------------------------------------------------------------

    def count(self, name: str, by: int = 1) -> None:
        self.metrics[name] = self.metrics.get(name, 0) + by

    def _seal(self, kind: int, payload: bytes) -> bytes:
        """Seal under the newest key set this operator belongs to (EnvelopeError if none yet)."""
        keyset_id = self.ring.get_sealing_keyset()
        if keyset_id is None:
            raise EnvelopeError("signer: this operator is a member of no key set yet")
        return self.seal_as(keyset_id, self.ring.get_index(keyset_id) or 0, kind, payload)

    def seal_as(self, keyset_id: int, index: int, kind: int, payload: bytes) -> bytes:
        return seal_envelope(kind, payload, index, self.secrets.operator_key, self.vset.network_id, keyset_id)

    def get_epoch_keyset(self, computed: ComputedState) -> int:
        return computed.signing.keyset_id if computed.signing is not None else self.vset.keyset_id

    def _spawn(self, fn: Callable[..., Awaitable[None]], *args: object) -> None:
        """Start a task whose failure is logged and counted instead of stopping the node."""
        async def guarded() -> None:
            try:
                await fn(*args)
            except Exception:
                self.count("task_errors")
                log.exception("task failed", extra={"task": getattr(fn, "__name__", repr(fn))})

        assert self._nursery is not None
        self._nursery.start_soon(guarded)

    def get_round(self, epoch: int) -> Round | None:
        """The round of `epoch`, created on first use; None for epochs too old to track."""
        if epoch in self.rounds:
            return self.rounds[epoch]
        newest = max(self.rounds, default=epoch)
        if epoch < newest - self.params.max_rounds:
            return None
        self.rounds[epoch] = Round(epoch)
        self._events[epoch] = trio.Event()
        for old in [e for e in self.rounds if e < max(newest, epoch) - self.params.max_rounds]:
            del self.rounds[old]
            self._events.pop(old, None)
        return self.rounds[epoch]

    def get_status(self) -> dict:
        return {
            "index": self.index, "metrics": dict(self.metrics), "have": sorted(self.have)[-256:],
            "phases": {str(e): r.phase.value for e, r in sorted(self.rounds.items())[-32:]},
            "latencies": [list(x) for x in self.latencies],
            "peer_last_signed": {"0x" + k.hex(): v for k, v in self.peer_last_signed.items()},
            "bindings": self.get_index_bindings(),
            "bindings_by_address": {"0x" + k.hex(): v.hex() for k, v in self.validator.bindings.items()},
            "keysets": self.ring.describe(), "reshares": self.keys.describe(),
            "keyset_public": self.ring.describe_public(),
            "epochs_skipped": dict(self.epochs_skipped),
            "last_skipped": None if self.last_skipped is None else list(self.last_skipped),
            "inputs": self.worker.describe(),
        }

    def get_index_bindings(self) -> dict[str, str]:
        """Peer bindings by 0-based index in the newest key set this node signs with (or knows)."""
        keyset_id = self.ring.get_sealing_keyset() or self.ring.get_latest_keyset_id()
        operators = self.ring.get_operators(keyset_id) or ()
        return {str(i): self.validator.bindings[a].hex() for i, a in enumerate(operators)
                if a in self.validator.bindings}

    # --- main loops ------------------------------------------------------------------------------

    async def run(self, transport: Transport, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.transport = transport
        latest = await trio.to_thread.run_sync(self.store.get_latest_signed_state)
        low = self.params.catchup_floor if latest is None else max(self.params.catchup_floor,
                                                                    latest.epoch - STARTUP_HAVE + 1)
        stored = await trio.to_thread.run_sync(self.store.list_signed_states, low, STARTUP_HAVE)
        self.have = {s.epoch for s in stored}
        self.catchup_cursor = max(self.catchup_cursor, low)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if latest is not None:  # e.g. stopped after a new key set signed, before its old share was erased
                self.keys.process_signed(latest.keyset_id, latest.epoch)
            nursery.start_soon(self._heartbeat_loop)
            nursery.start_soon(self._catchup_loop)
            nursery.start_soon(self.evidence.run)
            nursery.start_soon(self.worker.run)
            task_status.started()
            await self._epoch_loop(nursery)

    async def _epoch_loop(self, nursery: trio.Nursery) -> None:
        epoch = self.params.start_epoch
        if epoch is None:
            epoch = self.window.get_current_epoch(self.clock.now()) + 1
        while True:
            delay = self.window.get_epoch_start(epoch) - self.clock.now()
            if delay > 0:
                await trio.sleep(delay)
            elif delay < -self.params.round_deadline_s:
                skipped_to = self.window.get_current_epoch(self.clock.now())
                log.warning("epoch loop late: skipping epochs", extra={"first_epoch": epoch, "last_epoch": skipped_to - 1})
                self.epochs_skipped[LOOP_LATE] += skipped_to - epoch
                self.last_skipped = (skipped_to - 1, LOOP_LATE)
                epoch = skipped_to
                continue
            self._spawn(self._run_round, epoch)
            epoch += 1

    async def _run_round(self, epoch: int) -> None:
        rnd = self.get_round(epoch)
        if rnd is None or rnd.is_finished:
            return
        started = trio.current_time()
        deadline = started + self.window.get_epoch_start(epoch) + self.params.round_deadline_s - self.clock.now()
        # Inputs are awaited even after an adoption: the node checks every adopted state against its own.
        computed, reason = await self.worker.get_inputs(epoch, deadline)
        if computed is None:
            self._skip(rnd, reason)
        else:
            self.count("inputs_ready")
            with trio.move_on_at(deadline):
                await self._sign_and_send(rnd, computed, started)
                await self._events[epoch].wait()
        if not rnd.is_finished and is_allowed(rnd.phase, Event.DEADLINE):
            rnd.process_event(Event.DEADLINE)
            self.count("rounds_expired")
            log.warning("round expired", extra={"epoch": epoch, "phase": rnd.phase.value,
                        "partials": {d[8:].hex()[:8]: sorted(p) for d, p in rnd.partials.items()}})

    def _skip(self, rnd: Round, reason: str) -> None:
        """Record a round whose computation could not start or finish before its deadline."""
        rnd.skip_reason = reason
        self.epochs_skipped[reason] += 1
        self.last_skipped = (rnd.epoch, reason)
        log.warning("epoch skipped: inputs not computed before the round deadline",
                    extra={"epoch": rnd.epoch, "reason": reason, "computing": self.worker.in_flight})

    def _on_inputs_failure(self, epoch: int, reason: str) -> None:
        rnd = self.rounds.get(epoch)
        first = rnd is None or rnd.phase == Phase.WAITING
        if rnd is not None and rnd.phase == Phase.WAITING:
            rnd.process_event(Event.INPUTS_UNAVAILABLE)
        self.count("inputs_unavailable")
        log.log(logging.INFO if first else logging.DEBUG, "inputs unavailable",  # INFO once per epoch
                extra={"epoch": epoch, "reason": reason[:300]})

    def _on_late_inputs(self, computed: ComputedState) -> None:
        """A computation that finished after its round's deadline: never signed; its key sets still count,
        and its leaves complete a state adopted meanwhile with the same digest (so the API serves it)."""
        self.count("inputs_late")
        self.keys.process_computed(computed)
        if computed.leaves and self._nursery is not None:
            self._spawn(self._complete_leaves, computed.epoch, computed, self.compute_digest(computed))
        log.info("inputs computed after the round deadline: not signed", extra={"epoch": computed.epoch})

    def _check_adopted(self, rnd: Round, digest: bytes, computed: ComputedState | None = None) -> None:
        """A state adopted before this node computed its own: compare, alert on a difference."""
        if rnd.adopted_digest is None:
            return
        if rnd.adopted_digest == digest:
            self.count("adopted_matches_own")
            if computed is not None and computed.leaves and self._nursery is not None:
                self._spawn(self._complete_leaves, rnd.epoch, computed, digest)
        else:
            self.count("adopted_differs_own")
            log.error("ALERT adopted signed state differs from our computation", extra={
                      "epoch": rnd.epoch, "adopted_digest": rnd.adopted_digest, "digest": digest})

    async def _complete_leaves(self, epoch: int, computed: ComputedState, digest: bytes) -> None:
        """A state adopted before this node computed it was stored without leaves: add ours (same digest,
        hence the same root), so this node serves proofs for the epoch too."""
        def complete() -> bool:
            stored = self.store.get_signed_state(epoch)
            if stored is None or stored.digest != digest or stored.leaf_count != len(computed.leaves) \
                    or self.store.has_leaves(epoch):
                return False
            self.store.put_signed_state(stored, computed.leaves, computed.failures)
            return True

        if await trio.to_thread.run_sync(complete):
            self.count("adopted_leaves_completed")

    def compute_digest(self, computed: ComputedState) -> bytes:
        return compute_state_digest(self.vset.network_id, self.get_epoch_keyset(computed), computed.epoch,
                                    computed.inputs_digest, computed.params_hash, computed.root,
                                    computed.leaf_count)

    async def _sign_and_send(self, rnd: Round, computed: ComputedState, started: float) -> None:
        digest = self.compute_digest(computed)
        self.keys.process_computed(computed)  # key sets named by governance, even for an adopted epoch
        if rnd.phase != Phase.WAITING:
            self._check_adopted(rnd, digest, computed)
            return
        rnd.computed, rnd.digest, rnd.pinned_at, rnd.started_at = computed, digest, trio.current_time(), started
        rnd.keyset_id = self.get_epoch_keyset(computed)
        self.last_pins = computed.pins
        if self.ring.get_share(rnd.keyset_id) is None:  # not a signer of this epoch's key set: adopt only
            self.count("rounds_not_signer")
            log.info("not a signer: this node holds no share of the epoch's key set", extra={"epoch": rnd.epoch, "keyset_id": rnd.keyset_id})
            return
        rnd.process_event(Event.PINNED)
        try:
            await trio.to_thread.run_sync(self.store.record_signing, rnd.epoch, digest)
        except DoubleSignRefused as exc:
            if rnd.phase == Phase.COMPUTED:
                rnd.process_event(Event.SIGN_REFUSED)
            self.count("sign_refused")
            log.error("refusing to sign", extra={"epoch": rnd.epoch, "reason": str(exc)})
            return
        if rnd.phase != Phase.COMPUTED:
            return  # adopted a signed state meanwhile: no partial needed
        await self.send_partial(rnd, digest)

    async def send_partial(self, rnd: Round, digest: bytes) -> None:
        """Sign and gossip this node's partial (record_signing already done by the caller)."""
        own = self.ring.get_share(rnd.keyset_id)
        if own is None:  # retired meanwhile (a newer key set signed): this epoch is left to the others
            self.count("partials_not_sent_retired")
            return
        partial = threshold.partial_sign(own.share_sk, digest)
        payload = gossip_pb2.PartialSignature(epoch=rnd.epoch, digest=digest, partial=partial,
                                              signer_index=own.index).SerializeToString()
        envelope = self.seal_as(rnd.keyset_id, own.index, gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE, payload)
        rnd.first_envelope[(rnd.keyset_id, own.index)] = (digest + partial, envelope)
        rnd.add_partial(bucket(rnd.keyset_id, digest), own.index + 1, partial)
        rnd.process_event(Event.SIGNED)
        self.count("partials_sent")
        log.debug("own partial sent", extra={"epoch": rnd.epoch, "t_e_s": self.clock.now() - self.window.get_epoch_start(rnd.epoch)})
        assert self.transport is not None
        await self.transport.publish(envelope)
        await self._check_threshold(rnd)
        self._spawn(self._resend_partial, rnd, envelope)

    async def _resend_partial(self, rnd: Round, envelope: bytes) -> None:
        """Re-gossip the same partial (bounded) while the round waits: covers a lost first copy."""
        for _ in range(self.params.partial_resends):
            await trio.sleep(self.params.partial_resend_s)
            if rnd.phase != Phase.SIGNED:
                return
            assert self.transport is not None
            self.count("partials_resent")
            await self.transport.publish(envelope)

    # --- aggregation and adoption ------------------------------------------------------------------

    async def _check_threshold(self, rnd: Round) -> None:
        if rnd.phase != Phase.SIGNED or rnd.digest is None:
            return
        vset = self.ring.get_set(rnd.keyset_id)
        assert vset is not None  # this node signed with a share of it
        t = vset.threshold
        partials = rnd.partials.get(bucket(rnd.keyset_id, rnd.digest), {})
        if len(partials) < t:
            return
        rnd.process_event(Event.THRESHOLD)
        signature = threshold.combine(partials, t)
        if not threshold.group_verify(self.vset.group_key, rnd.digest, signature):
            self.count("aggregate_invalid")
            log.critical("combined signature does not verify", extra={"epoch": rnd.epoch, "digest": rnd.digest})
            rnd.process_event(Event.AGGREGATE_INVALID)
            return
        computed = rnd.computed
        assert computed is not None
        state = SignedState(
            network_id=self.vset.network_id, keyset_id=rnd.keyset_id, epoch=rnd.epoch,
            pins=computed.pins, inputs_digest=computed.inputs_digest, params_hash=computed.params_hash,
            root=computed.root, leaf_count=computed.leaf_count, digest=rnd.digest, signature=signature,
            signers=tuple(i - 1 for i in sorted(partials)[:t]))
        self._spawn(self._persist_and_gossip, rnd, state)

    async def _persist_and_gossip(self, rnd: Round, state: SignedState) -> None:
        computed = rnd.computed
        assert computed is not None
        await trio.to_thread.run_sync(self.store.put_signed_state, state, computed.leaves, computed.failures)
        rnd.process_event(Event.PERSISTED)
        self.count("states_aggregated")
        self.keys.process_signed(state.keyset_id, state.epoch)
        self._finish(rnd, state)
        # Every node holding t partials aggregates by itself; only the epoch's first two publishers
        # gossip the result (for nodes that could not aggregate), the rest would be n^2 traffic.
        if self._get_publish_rank(state) < STATE_GOSSIPERS:
            assert self.transport is not None
            await self.transport.publish(self._seal(gossip_pb2.MESSAGE_KIND_SIGNED_STATE,
                                                    state_to_proto(state).SerializeToString()))

    async def adopt_state(self, state: SignedState) -> bool:
        """Store an already verified group-signed state this node has not finished itself."""
        rnd = self.get_round(state.epoch)
        if state.epoch in self.have or state.epoch in self._adopting \
                or (rnd is not None and (rnd.is_finished or rnd.phase == Phase.AGGREGATED)):
            return False
        self._adopting.add(state.epoch)  # claimed before the awaits: one adoption per epoch
        try:
            if await trio.to_thread.run_sync(self.store.get_signed_state, state.epoch) is not None:
                self._remember(state.epoch)
                return False  # already stored (e.g. before a restart): never overwrite it and its leaves
            computed = rnd.computed if rnd is not None and rnd.digest == state.digest else None
            leaves = computed.leaves if computed is not None else ()
            failures = computed.failures if computed is not None else ()
            await trio.to_thread.run_sync(self.store.put_signed_state, state, leaves, failures)
        finally:
            self._adopting.discard(state.epoch)
        self.count("states_adopted")
        self.keys.process_signed(state.keyset_id, state.epoch)
        if rnd is not None and is_allowed(rnd.phase, Event.ADOPTED):
            rnd.adopted_digest = state.digest
            if rnd.digest is not None:
                self._check_adopted(rnd, rnd.digest)
            rnd.process_event(Event.ADOPTED)
            self._finish(rnd, state)
        else:
            self._remember(state.epoch)
        return True

    def _remember(self, epoch: int) -> None:
        """Record a held epoch; the set keeps the last MAX_HAVE epochs (older ones are in the store)."""
        self.have.add(epoch)
        if len(self.have) > 2 * MAX_HAVE:
            floor = max(self.have) - MAX_HAVE
            self.have = {e for e in self.have if e >= floor}
            self.catchup_cursor = max(self.catchup_cursor, floor)

    def _finish(self, rnd: Round, state: SignedState) -> None:
        now = trio.current_time()
        rnd.signed_at = now
        self._remember(rnd.epoch)
        if rnd.pinned_at is not None and rnd.started_at is not None:
            self.latencies.append((rnd.epoch, now - rnd.pinned_at, now - rnd.started_at))
            get_telemetry().round_signed(now - rnd.started_at, now - rnd.pinned_at)
        self._events[rnd.epoch].set()
        if self._nursery is not None:
            self._spawn(self._publish, rnd, state)

    def _get_publish_rank(self, state: SignedState) -> int:
        """Round-robin rank among the members of the state's key set; non-members come after all of them."""
        vset = self.ring.get_set(state.keyset_id)
        index = self.ring.get_index(state.keyset_id)
        if vset is None or index is None:
            return (vset.n if vset is not None else self.vset.n) + 1
        return compute_publish_rank(index, state.epoch, vset.n)

    async def _publish(self, rnd: Round, state: SignedState) -> None:
        await trio.sleep(self._get_publish_rank(state) * self.params.publish_fallback_s)
        try:
            if not await trio.to_thread.run_sync(self.publisher.is_published, state):
                await trio.to_thread.run_sync(self.publisher.publish, state)
                self.count("states_published")
        except Exception as exc:  # a publisher failure leaves the state to the next fallback
            self.count("publish_failed")
            log.warning("publish failed", extra={"epoch": state.epoch, "reason": str(exc)})
            return
        if rnd.phase == Phase.PERSISTED:
            rnd.process_event(Event.PUBLISHED)

    # --- inbound gossip --------------------------------------------------------------------------

    async def deliver(self, origin: bytes, data: bytes) -> None:
        """Process one accepted gossip message (called by the host after `validate_gossip`)."""
        try:
            await self._deliver(origin, data)
        except Exception:
            self.count("deliver_errors")
            log.exception("processing a gossip message failed")

    async def _deliver(self, origin: bytes, data: bytes) -> None:
        opened = self.validator.pop_accepted(data)
        if opened is None:
            try:
                opened = self.validator.open(data)
            except EnvelopeError:
                return
            if self.validator.validate_opened(origin, opened) is not None:
                return
        kind = opened.kind
        if kind == gossip_pb2.MESSAGE_KIND_HEARTBEAT:
            await self._process_heartbeat(origin, opened)
        elif kind == gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE:
            await self._process_partial(origin, opened)
        elif kind == gossip_pb2.MESSAGE_KIND_SIGNED_STATE:
            await self.adopt_state(state_from_proto(opened.message))  # type: ignore[arg-type]
        elif kind == gossip_pb2.MESSAGE_KIND_DKG:
            msg = opened.message
            session = self.dkg_sessions.get(msg.session_id)  # type: ignore[attr-defined]
            if session is not None:
                session.offer(opened.signer_index, msg)  # type: ignore[arg-type]
            elif not self.keys.offer(opened.keyset_id, opened.signer_index, msg):  # type: ignore[arg-type]
                self._early_dkg.append((opened.keyset_id, opened.signer_index, msg))  # type: ignore[arg-type]
        elif kind == gossip_pb2.MESSAGE_KIND_EQUIVOCATION_EVIDENCE:
            ev = opened.message
            self._queue_evidence(Evidence("equivocation", ev.epoch, ev.signer_index, ev.first, ev.second,  # type: ignore[attr-defined]
                                          f"reported by validator {opened.signer_index}"), gossip=False)

    async def _process_heartbeat(self, origin: bytes, opened: OpenedEnvelope) -> None:
        hb = opened.message
        log.debug("heartbeat", extra={"signer": opened.signer_index, "delay_s": time.time() - hb.time_ms / 1000})  # type: ignore[attr-defined]
        address = self.validator.get_signer_address(opened)
        self.validator.bind(address, origin)
        self.peer_last_signed[address] = int(hb.last_signed_epoch)  # type: ignore[attr-defined]
        parked = [p for p in self._parked if self.validator.get_signer_address(p[1]) == address]
        for item in parked:
            self._parked.remove(item)
        for p_origin, p_opened in parked:
            if p_origin != origin:
                self._penalize(p_origin, "peer_binding")
                continue
            await self.deliver_opened(p_origin, p_opened)

    async def deliver_opened(self, origin: bytes, opened: OpenedEnvelope) -> None:
        if opened.kind == gossip_pb2.MESSAGE_KIND_PARTIAL_SIGNATURE:
            await self._process_partial(origin, opened)

    def _penalize(self, origin: bytes, reason: str) -> None:
        if self.transport is not None:
            self.transport.penalize(str(ID(origin)), reason)

    async def _process_partial(self, origin: bytes, opened: OpenedEnvelope) -> None:
        p = opened.message
        signer = opened.signer_index
        if self.validator.get_signer_address(opened) not in self.validator.bindings:
            self._parked.append((origin, opened))
            return
        rnd = self.get_round(p.epoch)  # type: ignore[attr-defined]
        if rnd is None:
            return
        key = p.digest + p.partial  # type: ignore[attr-defined]
        first = rnd.first_envelope.get((opened.keyset_id, signer))
        if first is not None:
            if first[0] != key:
                self.count("equivocations")
                self._queue_evidence(Evidence("equivocation", rnd.epoch, signer, first[1], opened.raw,
                                              "two different partials for one epoch"), gossip=True)
                self._penalize(origin, "equivocation")
            return
        rnd.first_envelope[(opened.keyset_id, signer)] = (key, opened.raw)
        self.count("partials_received")
        log.debug("partial received", extra={"epoch": rnd.epoch, "signer": signer,
                  "t_e_s": self.clock.now() - self.window.get_epoch_start(rnd.epoch)})
        got = bucket(opened.keyset_id, p.digest)  # type: ignore[attr-defined]
        if not rnd.add_partial(got, signer + 1, p.partial):  # type: ignore[attr-defined]
            self.count("digests_dropped")
            return
        if rnd.digest is not None and got != bucket(rnd.keyset_id, rnd.digest):
            self._process_divergence(rnd, got, self.ring.sets[opened.keyset_id].threshold)
        await self._check_threshold(rnd)

    def _process_divergence(self, rnd: Round, other: bytes, t: int) -> None:
        """`other` is a (key set, digest) bucket other than this node's; `t` its key set's threshold."""
        self.count("divergent_partials")
        log.warning("ALERT partial on another digest", extra={"epoch": rnd.epoch, "other_keyset_id": int.from_bytes(
                    other[:8], "big"), "other_digest": other[8:], "keyset_id": rnd.keyset_id, "digest": rnd.digest})
        if len(rnd.partials.get(other, {})) >= t and not rnd.diverged:
            rnd.diverged = True
            self.count("divergence_alerts")
            if self._nursery is not None:
                self._spawn(self._reread_inputs, rnd, other[8:])

    async def _reread_inputs(self, rnd: Round, other: bytes) -> None:
        """Through the input worker (never beside a running computation), when no round waits for it."""
        again = await self.worker.reread(rnd.epoch, trio.current_time() + self.params.round_deadline_s)
        if again is None:
            self.count("rereads_failed")
            log.error("ALERT re-read after divergence failed or found the input worker busy",
                      extra={"epoch": rnd.epoch})
            return
        digest = self.compute_digest(again)
        verdict = "now matches the majority" if digest == other else "still differs"
        log.error("ALERT the threshold formed on another digest; this node signed its own and will not sign "
                  "another", extra={"epoch": rnd.epoch, "threshold_digest": other, "reread_digest": digest,
                                    "verdict": verdict, "signed_digest": rnd.digest})

    # --- DKG ---------------------------------------------------------------------------------------

    async def run_dkg(self, machine: DkgMachine, timeout_s: float) -> DkgResult:
        """Run one DKG session (`node.crypto.dkg.DkgMachine`) over this node's gossip."""
        assert self.transport is not None
        assert self.index is not None, "a fresh DKG runs among the configured set"
        session = DkgSession(machine, self.index, self._seal, self.transport.publish)
        self.dkg_sessions[session.session] = session
        for _, signer, msg in [m for m in self._early_dkg if m[2].session_id == session.session]:
            session.offer(signer, msg)
        try:
            return await session.run(timeout_s)
        finally:
            del self.dkg_sessions[session.session]

    # --- evidence -----------------------------------------------------------------------------------

    def _record_misbehaviour(self, reason: str, opened: OpenedEnvelope) -> None:
        p = opened.message
        self.count("invalid_partials")
        self._queue_evidence(Evidence(reason, int(p.epoch), opened.signer_index, opened.raw, b"",  # type: ignore[attr-defined]
                                      "partial does not verify under the signer's public share"), gossip=False)

    def _queue_evidence(self, evidence: Evidence, gossip: bool) -> None:
        self.evidence.process(evidence, gossip)

    async def _publish_via_transport(self, data: bytes) -> None:
        if self.transport is not None:
            await self.transport.publish(data)

    # --- heartbeats and catch-up ---------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        assert self.transport is not None
        while True:
            keyset_id = self.ring.get_sealing_keyset()
            if keyset_id is None:  # a joining node before governance names it: nothing to sign with
                await trio.sleep(self.params.heartbeat_interval_s)
                continue
            hb = gossip_pb2.Heartbeat(
                validator_index=self.ring.get_index(keyset_id), peer_id=self.transport.peer_id_bytes,
                pinned=pins_to_proto(self.last_pins), epoch=self.window.get_current_epoch(self.clock.now()),
                time_ms=int(time.time() * 1000), last_signed_epoch=max(self.have, default=0))
            await self.transport.publish(self._seal(gossip_pb2.MESSAGE_KIND_HEARTBEAT, hb.SerializeToString()))
            await trio.sleep(self.params.heartbeat_interval_s)

    async def _catchup_loop(self) -> None:
        while True:
            await trio.sleep(self.params.catchup_interval_s)
            try:
                await self.process_catchup()
            except CatchUpError as exc:
                self.count("catchup_failed")
                log.info("catch-up failed", extra={"reason": str(exc)})

    def _advance_catchup_cursor(self) -> None:
        """Skip epochs held, and epochs that CATCHUP_GIVE_UP answers in a row did not contain."""
        while self.catchup_cursor in self.have or self._catchup_misses.get(self.catchup_cursor, 0) >= CATCHUP_GIVE_UP:
            self._catchup_misses.pop(self.catchup_cursor, None)
            self.catchup_cursor += 1

    async def process_catchup(self) -> int:
        """One catch-up step: ask a random bound peer that is ahead for states from the cursor on.

        The cursor only moves past an epoch this node does not hold after several answers (from
        randomly chosen peers) skipped it: a peer that was down itself must not make it skip a gap.
        """
        self._advance_catchup_cursor()
        candidates = [(last, a) for a, last in self.peer_last_signed.items()
                      if last >= self.catchup_cursor and a in self.validator.bindings and a != self.ring.address]
        keyset_id = self.ring.get_sealing_keyset()
        if not candidates or keyset_id is None:
            return 0
        _, peer = random.choice(candidates)  # not always the same peer: it may be the one down
        assert self.transport is not None
        request = catchup.build_state_request(self.catchup_cursor, catchup.MAX_STATES_PER_RESPONSE,
                                              self.ring.get_index(keyset_id) or 0, self.secrets.operator_key,
                                              self.vset.network_id, keyset_id)
        answer = await self.transport.request(self.validator.bindings[peer], request)
        states = catchup.parse_state_response(answer, self.validator)
        adopted = 0
        for state in states:
            if await self.adopt_state(state):
                adopted += 1
        if states:
            returned = {s.epoch for s in states}
            for epoch in range(self.catchup_cursor, min(max(returned), self.catchup_cursor + MAX_CATCHUP_SCAN)):
                if epoch not in returned and epoch not in self.have:
                    self._catchup_misses[epoch] = self._catchup_misses.get(epoch, 0) + 1
        self._advance_catchup_cursor()
        self.count("catchup_states", adopted)
        return adopted

    async def serve_catchup(self, peer: str, request: bytes) -> bytes:
        return await trio.to_thread.run_sync(catchup.compute_state_response, request, self.validator, self.store)
