"""Validator-set changes inside the node: learn key sets from governance, reshare before activation.

`KeyChanger` belongs to one `EpochEngine`. For every computed epoch (`process_computed`) it records
the members of the key set governance assigns to the epoch and of a pending change
(`ComputedState.signing` / `.reshare`, read at the epoch's pinned home-chain block, so every node
learns the same sets), and completes key sets whose share this node already holds from an earlier
run (share keystores `share-<id>.json`, passed in as `later`). When a pending change names this
operator, as an old holder (dealer) or a new member (recipient), it runs the reshare over the gossip
(`node.consensus.reshare_session`) before the activation epoch: the group key stays, the key-set id
goes up by one, and the new share is handed to `on_share` (the validator writes it to an encrypted
keystore) and to the key ring, from which the engine signs epochs of the new key set.

Attempts are aligned on windows of `reshare_window_epochs` epochs (the attempt number is the window
number, part of the session identity), so nodes that saw the order at slightly different times meet
in the same session; a failed attempt is retried in the next window until the activation epoch.
An attempt normally starts only with at least MIN_ATTEMPT_FRACTION of its window left; when the next
window would start at or after the activation epoch (the order came late in the last window before it,
e.g. the change was executed late), the current window is the last chance and the attempt starts with
whatever is left, if at least MIN_LAST_ATTEMPT_EPOCHS epochs (every node applies the same rule, so they
meet in the same session).
A node that has no share of the new key set at activation simply does not sign its epochs.

A phase-timeout DKG can end differently at different nodes under load (a deal that arrives after
one node closed the deal phase): their shares would then lie on different polynomials and never
combine. So a finished session is only installed after a CONFIRMATION round: every new member
gossips the hash of the key set it obtained (`CONFIRM_TYPE`, sealed under the new key-set id, re-sent
every second) and a node installs the result only once all new members confirmed the same hash
before the attempt window ends; a differing or missing confirmation fails the attempt at every node
that sees it, and the next window retries.

Retirement: once a state signed by a newer key set is stored (aggregated or adopted, `process_signed`),
every older key set is retired for good (governance only moves forward; a change whose reshare
failed never signs, so until then the old shares stay and the network can keep signing with them).
This node then forgets its shares of the retired sets and hands each id to `on_retire` (the
validator erases the share keystore). Persists nothing itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import trio
from eth_hash.auto import keccak

from node.consensus.inputs import ComputedState, ReshareOrder, SigningSet
from node.consensus.keyring import KeyRingError
from node.crypto.dkg import DkgTimeouts
from node.crypto.errors import DkgError
from node.pb.clearing.gossip.v1 import gossip_pb2

if TYPE_CHECKING:
    from node.consensus.engine import EpochEngine

log = logging.getLogger(__name__)

MIN_ATTEMPT_FRACTION = 0.5  # an attempt starting with less than this share of its window left waits for the next
MIN_LAST_ATTEMPT_EPOCHS = 1.0  # ... unless that window starts at the activation epoch: then this much is enough
CONFIRM_TYPE = "clearing.reshare.v1.Confirm"
DST_CONFIRM = b"CLEARING-V1-RESHARE-CONFIRM"
CONFIRM_RESEND_S = 1.0
MAX_CONFIRM_SESSIONS = 64  # sessions whose confirmations are kept (each at most one per member)


def compute_keyset_hash(session: int, keyset: Any) -> bytes:
    """What a new member confirms: the key set it obtained (id, threshold, holders, commitments)."""
    parts = [DST_CONFIRM, session.to_bytes(8, "big"), int(keyset.keyset_id).to_bytes(8, "big"),
             int(keyset.threshold).to_bytes(8, "big"), len(keyset.holders).to_bytes(4, "big")]
    parts += [int(h).to_bytes(4, "big") for h in keyset.holders]
    parts += [bytes(c) for c in keyset.commitments]
    return keccak(b"".join(parts))


def make_status(order: ReshareOrder, state: str) -> dict[str, Any]:
    """A reshare's entry in status.json (see `describe`)."""
    return {"state": state, "keyset_id": order.new.keyset_id, "activation_epoch": order.activation_epoch,
            "attempts": 0, "error": ""}


class KeyChanger:
    """See the module docstring."""

    def __init__(self, engine: EpochEngine, later: tuple = (), on_share: Callable[[Any], None] | None = None,
                 on_retire: Callable[[int, int], None] | None = None) -> None:
        self.engine = engine
        self.on_share = on_share
        self.on_retire = on_retire  # (retired key-set id, id of the key set that signed) -> erase its keystore
        self.retired_below = 0  # key sets below this id are retired
        self.unplaced: dict[int, Any] = {int(r.keyset.keyset_id): r for r in later}  # keyset id -> DkgResult
        self.status: dict[int, dict[str, Any]] = {}  # proposal id -> state, keyset id, attempts, error
        self.sessions: dict[int, Any] = {}  # session number -> ReshareSession
        self.confirms: dict[int, dict[tuple[int, int], bytes]] = {}  # session -> (keyset, signer) -> hash

    def describe(self) -> dict[str, dict[str, Any]]:
        return {str(k): dict(v) for k, v in sorted(self.status.items())}

    # --- learning key sets ---------------------------------------------------------------------------

    def process_computed(self, computed: ComputedState) -> None:
        """Record the key sets an epoch's governance state names; start a reshare that concerns us."""
        order = computed.reshare
        for sset in (computed.signing, order.old if order else None, order.new if order else None):
            if sset is not None:
                self._learn(sset)
        if order is not None and self._is_ours(order):
            self.status[order.proposal_id] = make_status(order, "running")
            self.engine._spawn(self.run_reshare, order)

    def _learn(self, sset: SigningSet) -> None:
        ring = self.engine.ring
        try:
            ring.add_members(sset.keyset_id, sset.members, sset.threshold)
            held = self.unplaced.pop(sset.keyset_id, None)
            if held is not None:
                ring.add_keyset(held.keyset, sset.members)
                if held.share is not None and held.index is not None:
                    ring.add_share(sset.keyset_id, int(held.index) - 1, int(held.share))
                log.info("share from a previous run restored", extra={"keyset_id": sset.keyset_id})
        except KeyRingError as exc:
            self.engine.count("keyset_conflicts")
            log.error("ALERT governance names a key set differently from what this node holds",
                      extra={"keyset_id": sset.keyset_id, "reason": str(exc)})

    def _is_ours(self, order: ReshareOrder) -> bool:
        """A change this node must take part in and has not started or finished yet."""
        ring = self.engine.ring
        if order.proposal_id in self.status:
            return False
        dealer = ring.address in order.old.members and ring.get_share(order.old.keyset_id) is not None
        recipient = ring.address in order.new.members
        if not (dealer or recipient):
            return False
        new_set = ring.get_set(order.new.keyset_id)
        already = ring.get_share(order.new.keyset_id) is not None if recipient else bool(new_set and new_set.public_shares)
        if already:  # e.g. restarted after the reshare, with its share keystore
            self.status[order.proposal_id] = make_status(order, "done")
        return not already

    # --- retiring key sets -------------------------------------------------------------------------------

    def process_signed(self, keyset_id: int, epoch: int) -> None:
        """A state of `epoch` signed by `keyset_id` is stored: retire older key sets, erase our shares of them."""
        if keyset_id <= self.retired_below:
            return
        self.retired_below = keyset_id
        retired = set(self.engine.ring.retire_shares(keyset_id))
        retired |= {k for k, r in self.unplaced.items() if k < keyset_id and r.share is not None}
        for old in sorted(retired):
            self.unplaced.pop(old, None)
            self.engine.count("shares_retired")
            log.info("key set retired: erasing this node's share of it",
                     extra={"keyset_id": old, "retired_by_keyset": keyset_id, "epoch": epoch})
            if self.on_retire is not None:
                self.engine._spawn(self._erase, old, keyset_id)
        for old in [k for k in self.unplaced if k < keyset_id]:
            del self.unplaced[old]
        secrets = self.engine.secrets  # drop the references the engine was started with too
        self.engine.secrets = replace(
            secrets, share_sk=None if self.engine.vset.keyset_id < keyset_id else secrets.share_sk,
            later=tuple(r for r in secrets.later if int(r.keyset.keyset_id) >= keyset_id))

    async def _erase(self, keyset_id: int, retired_by: int) -> None:
        assert self.on_retire is not None
        try:
            await trio.to_thread.run_sync(self.on_retire, keyset_id, retired_by)  # file I/O and scrypt
        except Exception as exc:
            self.engine.count("share_erase_failed")
            log.error("ALERT the retired share could not be erased",
                      extra={"keyset_id": keyset_id, "reason": f"{type(exc).__name__}: {exc}"})

    # --- the reshare ------------------------------------------------------------------------------------

    def offer(self, keyset_id: int, signer_index: int, msg: gossip_pb2.DkgMessage) -> bool:
        """Hand a DKG message to the running reshare session it belongs to; False if none does."""
        if msg.type_name == CONFIRM_TYPE:
            return self._offer_confirm(keyset_id, signer_index, msg)
        session = self.sessions.get(msg.session_id)
        if session is None:
            return False
        session.offer(keyset_id, signer_index, msg)
        return True

    def _offer_confirm(self, keyset_id: int, signer_index: int, msg: gossip_pb2.DkgMessage) -> bool:
        """Record a member's confirmation (kept for a bounded number of sessions, one per member)."""
        if len(msg.body) != 32 or (msg.session_id not in self.confirms and len(self.confirms) >= MAX_CONFIRM_SESSIONS):
            return True  # consumed: not worth buffering
        got = self.confirms.setdefault(msg.session_id, {})
        got.setdefault((keyset_id, signer_index), bytes(msg.body))  # the first one counts
        return True

    async def _confirm(self, session: int, order: ReshareOrder, keyset: Any, deadline: float) -> None:
        """Publish this member's key-set hash and wait until every new member confirmed the same one."""
        engine = self.engine
        own = compute_keyset_hash(session, keyset)
        members = order.new.members
        index = members.index(engine.ring.address) if engine.ring.address in members else None
        message = gossip_pb2.DkgMessage(session_id=session, sender_index=index or 0, type_name=CONFIRM_TYPE,
                                        body=own).SerializeToString()
        expected = {(order.new.keyset_id, j) for j in range(len(order.new.members))}
        while True:
            got = self.confirms.get(session, {})
            differ = sorted(j for (k, j), h in got.items() if k == order.new.keyset_id and h != own)
            if differ:
                raise DkgError(f"session {session:#x}: members {differ} obtained another key set")
            if expected <= set(got):
                return
            if index is not None:  # a dealer that leaves the set only listens
                assert engine.transport is not None
                await engine.transport.publish(engine.seal_as(order.new.keyset_id, index, gossip_pb2.MESSAGE_KIND_DKG,
                                                              message))
                self.confirms.setdefault(session, {})[(order.new.keyset_id, index)] = own
            if engine.clock.now() >= deadline:
                missing = sorted(j for k, j in expected - set(got))
                raise DkgError(f"session {session:#x}: no confirmation from new members {missing}")
            await trio.sleep(min(CONFIRM_RESEND_S, max(0.05, deadline - engine.clock.now())))

    async def run_reshare(self, order: ReshareOrder) -> None:
        """Attempt the reshare window by window until it succeeds or the activation epoch arrives."""
        status = self.status[order.proposal_id]
        while True:
            attempt, window_end = self._get_attempt(order.activation_epoch)
            if attempt is None:
                await trio.sleep(max(0.0, window_end - self.engine.clock.now()))
                continue
            if self._get_current_epoch() >= order.activation_epoch:
                status.update(state="failed", error=status["error"] or "activation epoch reached without a new share")
                log.error("ALERT reshare not done by its activation epoch", extra={"proposal": order.proposal_id,
                          "activation_epoch": order.activation_epoch, "reason": status["error"]})
                return
            status["attempts"] += 1
            started = trio.current_time()
            try:
                result = await self._run_attempt(order, attempt, window_end - self.engine.clock.now())
            except (DkgError, KeyRingError) as exc:
                status["error"] = f"attempt {attempt}: {exc}"
                self.engine.count("reshare_attempts_failed")
                log.warning("reshare attempt failed", extra={"proposal": order.proposal_id, "attempt": attempt, "reason": str(exc)})
                await trio.sleep(max(0.0, window_end - self.engine.clock.now()))
                continue
            self._install(order, result)
            if self.on_share is not None and result.share is not None:
                await trio.to_thread.run_sync(self.on_share, result)  # scrypt: keep it off the event loop
            status.update(state="done", error="", duration_s=round(trio.current_time() - started, 3),
                          done_epoch=self._get_current_epoch())
            self.engine.count("reshares_done")
            return

    def _get_current_epoch(self) -> int:
        return self.engine.window.get_current_epoch(self.engine.clock.now())

    def _get_attempt(self, activation_epoch: int) -> tuple[int | None, float]:
        """(attempt number, end of its window); attempt None when too little of the window is left
        (see the module docstring for the last window before the activation epoch)."""
        w = max(1, self.engine.params.reshare_window_epochs)
        attempt = self._get_current_epoch() // w
        window = self.engine.window
        end = window.get_epoch_start((attempt + 1) * w)
        left = end - self.engine.clock.now()
        if left < MIN_ATTEMPT_FRACTION * w * window.period_s:
            last_chance = (attempt + 1) * w >= activation_epoch
            if not (last_chance and left >= MIN_LAST_ATTEMPT_EPOCHS * window.period_s):
                return None, end
        return attempt, end

    async def _run_attempt(self, order: ReshareOrder, attempt: int, budget_s: float) -> Any:
        from node.consensus.reshare_session import ResharePlan, ReshareSession

        engine, ring = self.engine, self.engine.ring
        old_keyset = ring.keysets.get(order.old.keyset_id)
        if old_keyset is None:
            raise DkgError(f"key set {order.old.keyset_id}: public commitments unknown "
                           "(set [validator_set].keyset_record in the config)")
        plan = ResharePlan(network_id=engine.vset.network_id, proposal_id=order.proposal_id, attempt=attempt,
                           old_keyset=old_keyset, old_members=order.old.members, new_members=order.new.members,
                           new_threshold=order.new.threshold)
        own = ring.get_share(order.old.keyset_id)
        phase_s = max(1.0, budget_s / 3)  # a phase ends early once every expected message arrived
        assert engine.transport is not None
        session = ReshareSession(plan, operator_key=engine.secrets.operator_key,
                                 old_share=own.share_sk if own is not None else None, seal=engine.seal_as,
                                 publish=engine.transport.publish,
                                 timeouts=DkgTimeouts(deal=phase_s, response=phase_s, justification=phase_s))
        self.sessions[session.session] = session
        for keyset_id, signer, msg in [m for m in engine._early_dkg if m[2].session_id == session.session]:
            session.offer(keyset_id, signer, msg)
        log.info("reshare attempt", extra={"proposal": order.proposal_id, "attempt": attempt,
                 "session": f"{session.session:#x}", "keyset_id": order.new.keyset_id})
        deadline = self.engine.clock.now() + budget_s
        try:
            result = await session.run(budget_s)
        finally:
            del self.sessions[session.session]
        try:
            await self._confirm(session.session, order, result.keyset, deadline)
        finally:
            self.confirms.pop(session.session, None)
        return result

    def _install(self, order: ReshareOrder, result: Any) -> None:
        ring = self.engine.ring
        ring.add_keyset(result.keyset, order.new.members)
        if result.share is not None and result.index is not None:
            ring.add_share(order.new.keyset_id, int(result.index) - 1, int(result.share))
        log.info("reshare done", extra={"proposal": order.proposal_id, "keyset_id": order.new.keyset_id,
                 "threshold": order.new.threshold,
                 "share_index": result.index if result.share is not None else None})
