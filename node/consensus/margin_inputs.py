"""The production `InputSource`: chain books moved by events (bridges) + the epoch pipeline (node.pipeline).

`MarginInputSource.compute_epoch(epoch, T_e)` pins every chain for T_e (each chain's lag and confirmations,
`bridges.chain`), moves each chain's book to its pin with the contracts' logs (`bridges.book_reader.BookSync`;
the first epoch, a reorg deeper than the book's history or a long gap reads every view instead), merges the
books into columnar inputs (`bridges.book_merge`), takes the risk parameters active at `epoch` from the
parameter schedule, and computes leaves, root and digest (`node.pipeline`). Any chain failure (unavailable
RPC, pin not ready, reorg, a sequence gap, an invalid value) raises `InputsUnavailable`, so the node does not
sign that epoch.
Checks: whenever the same epoch is computed again (the engine re-reads after a digest split), every book is
compared with a cold read at the same pin inline; a difference is an alert (`book_mismatches` counter, ERROR
log) and the cold read wins. Every `full_check_every` epochs the same comparison runs in a background thread
(a cold read of a large book takes minutes; the epochs go on): the book's hash at the pin is taken in the
computation, the cold read at that pin is compared when it is done, and a mismatch makes the next computation
rebuild that chain's book cold (the full read wins). At most one background check runs at a time.
The schedule is the governance genesis schedule unless a `governance_for(home_pin)` reader is given
(`node.governance_source.GovernanceScheduleSource.get_state`); from that same governance state come the key
set that signs the epoch and the next pending reshare, so every node agrees on both at the same pin.
Persists: the books, every `persist_every` epochs, through an optional `node.book_store.BookStore`.
Threads: the pins and the advances of the chains run in one thread per chain (their RPC waits overlap);
when a chain has no book yet (the first epoch, a book found wrong) the chains are read one after the other,
so two cold reads do not hold their transient memory at once.
Blocking (web3 and numpy): run it through `trio.to_thread`, one call at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from bridges.telemetry import classify_account_failure, get_telemetry
from node.consensus.errors import InputsUnavailable
from node.consensus.inputs import ComputedState, ReshareOrder, SigningSet
from node.records import ChainPin

if TYPE_CHECKING:
    from bridges.book import ChainBook
    from bridges.book_merge import ColumnarInputs

log = logging.getLogger(__name__)

DEFAULT_FULL_CHECK_EVERY = 50
DEFAULT_PERSIST_EVERY = 10
FAILURE_EXAMPLES = 3  # accounts named in the epoch's "accounts without a leaf" warning
T = TypeVar("T")


class MarginInputSource:
    def __init__(self, clients: Sequence[object], deployments: Mapping[int, object], home_chain_id: int,
                 network_id: int, keyset_id: int, schedule_for: Callable[[object], object] | None = None,
                 max_quote_age_s: int | None = None,
                 governance_for: Callable[[object], object] | None = None, book_store: object | None = None,
                 full_check_every: int = DEFAULT_FULL_CHECK_EVERY,
                 persist_every: int = DEFAULT_PERSIST_EVERY) -> None:
        from bridges.book_merge import AccountIndex
        from bridges.book_reader import BookSync, contracts_of
        from governance.params import get_genesis_schedule

        self.clients = sorted(clients, key=lambda c: c.chain_id)  # type: ignore[attr-defined]
        self.home_chain_id = home_chain_id
        self.network_id, self.keyset_id = network_id, keyset_id
        genesis = get_genesis_schedule()
        self.schedule_for = schedule_for or (lambda _pin: genesis)
        self.max_quote_age_s = max_quote_age_s
        self.governance_for = governance_for
        self.book_store = book_store
        self.full_check_every = max(1, full_check_every)
        self.persist_every = max(1, persist_every)
        self.syncs = {}
        for client in self.clients:
            cid = client.chain_id  # type: ignore[attr-defined]
            book = book_store.load(cid) if book_store is not None else None  # type: ignore[attr-defined]
            self.syncs[cid] = BookSync(client, contracts_of(deployments[cid]), book)  # type: ignore[arg-type]
        self.index = AccountIndex()
        self.computed_epochs: dict[int, int] = {}  # epoch -> times computed (bounded below)
        self.counters = {"book_mismatches": 0, "book_checks": 0, "cold_reads": 0}
        self.last_failure_counts: dict[str, int] = {}  # accounts without a leaf in the last epoch, by reason
        self.last_stages: dict[str, float] = {}
        self.last_rpc_calls = 0
        self._since_check = 0
        self._since_persist = 0
        self._lock = threading.Lock()  # the books are moved by one computation at a time
        self._checker: threading.Thread | None = None
        self._suspect: set[int] = set()

    def compute_epoch(self, epoch: int, target_time: int) -> ComputedState:
        """Thread-safe: calls are serialised (the books are moved by one computation at a time)."""
        with self._lock:
            computed = self._compute_epoch(epoch, target_time)
            self.computed_epochs[epoch] = self.computed_epochs.get(epoch, 0) + 1
            for old in [e for e in self.computed_epochs if e < epoch - 64]:
                del self.computed_epochs[old]
            return computed

    def _compute_epoch(self, epoch: int, target_time: int) -> ComputedState:
        from bridges.errors import BridgeError
        from node.state import MarginStateError

        stages: dict[str, float] = {}
        t0 = time.perf_counter()
        again = epoch in self.computed_epochs  # computed before: the engine re-reads after a digest split
        try:
            pins = self._pin(target_time)
            stages["pin"] = time.perf_counter() - t0
            books = self._advance(pins)
            stages["read_apply"] = time.perf_counter() - t0 - stages["pin"]
            self._since_check += 1
            if again:
                books = self._check_books(pins, books)
            elif self._since_check >= self.full_check_every and self._start_background_check(pins, books):
                self._since_check = 0
        except BridgeError as exc:
            raise InputsUnavailable(f"epoch {epoch}: {exc}") from exc
        t1 = time.perf_counter()
        inputs = self._merge(books, target_time)
        stages["merge"] = time.perf_counter() - t1
        home_pin = pins[self.home_chain_id]
        signing = reshare = None
        if self.governance_for is not None:
            t_gov = time.perf_counter()
            gov = self.governance_for(home_pin)
            stages["governance"] = time.perf_counter() - t_gov
            schedule = gov.schedule  # type: ignore[attr-defined]
            signing, reshare = get_signing_set(gov, epoch), get_reshare_order(gov, epoch)
        else:
            schedule = self.schedule_for(home_pin)
        params = schedule.get_active_params(epoch)  # type: ignore[attr-defined]
        params_hash = schedule.get_active_params_hash(epoch)  # type: ignore[attr-defined]
        keyset_id = signing.keyset_id if signing is not None else self.keyset_id
        mark = [time.perf_counter()]

        def hook(stage: str) -> None:
            now = time.perf_counter()
            stages[stage] = now - mark[0]
            mark[0] = now

        from node.pipeline import compute_epoch_state

        try:
            state = compute_epoch_state(inputs, params, self.network_id, keyset_id, epoch, params_hash, hook)
        except MarginStateError as exc:
            raise InputsUnavailable(f"epoch {epoch}: margin state: {exc}") from exc
        t2 = time.perf_counter()
        leaves = state.get_account_leaves()
        stages["records"] = time.perf_counter() - t2
        self._persist(books)
        stages["total"] = time.perf_counter() - t0
        self.last_stages = stages
        telemetry = get_telemetry()
        for stage, seconds in stages.items():
            telemetry.compute_stage(stage, seconds)
        self._report_failures(epoch, state.failures)
        self.last_rpc_calls = sum(s.stats.rpc_calls for s in self.syncs.values())
        return ComputedState(epoch=epoch, pins=tuple(ChainPin(c, n, h) for c, n, h in state.pins),
                             inputs_digest=state.inputs_digest, params_hash=state.params_hash, root=state.root,
                             leaf_count=state.leaf_count, leaves=leaves, signing=signing, reshare=reshare,
                             failures=state.failures)

    def _report_failures(self, epoch: int, failures: Sequence[object]) -> None:
        """Tell the operator which accounts got no leaf and why: counts by reason to the metrics every
        epoch, and a warning (counts and a few accounts with their reason) whenever the counts change, so a
        lasting cause (a publisher that stopped) is one line, not one per epoch."""
        counts: dict[str, int] = {}
        for f in failures:
            label = classify_account_failure(f.field, f.reason)  # type: ignore[attr-defined]
            counts[label] = counts.get(label, 0) + 1
        get_telemetry().accounts_without_leaf(counts)
        self.last_failure_counts, changed = counts, counts != self.last_failure_counts
        if changed:
            examples = [f"{f.account} {f.reason}" for f in failures[:FAILURE_EXAMPLES]]  # type: ignore[attr-defined]
            log.log(logging.WARNING if failures else logging.INFO,
                    "accounts without a leaf" if failures else "every account has a leaf again",
                    extra={"epoch": epoch, "count": len(failures), "by_reason": dict(sorted(counts.items())),
                           "examples": examples})

    def _pin(self, target_time: int) -> dict[int, object]:
        pins = _each_chain([partial(c.pin_block, target_time) for c in self.clients])  # type: ignore[attr-defined]
        return {c.chain_id: pin for c, pin in zip(self.clients, pins, strict=True)}  # type: ignore[attr-defined]

    def _advance(self, pins: Mapping[int, object]) -> list[ChainBook]:
        for cid, sync in self.syncs.items():
            if cid in self._suspect:  # a background check found the book wrong: the full read wins
                sync.book = None
                self._suspect.discard(cid)
        reads = [partial(sync.advance, pins[cid]) for cid, sync in self.syncs.items()]  # type: ignore[arg-type]
        if any(sync.book is None for sync in self.syncs.values()):  # a cold read: one at a time (peak memory)
            books = [read() for read in reads]
        else:
            books = _each_chain(reads)
        for sync in self.syncs.values():
            self.counters["cold_reads"] += int(sync.stats.cold)
        return books

    def _start_background_check(self, pins: Mapping[int, object], books: list[ChainBook]) -> bool:
        """Compare each book with a cold read at its pin in a thread; False when one is still running."""
        if self._checker is not None and self._checker.is_alive():
            return False
        from bridges.book_reader import BookSync

        expected = [(cid, sync, pins[cid], book.content_hash())  # type: ignore[attr-defined]
                    for (cid, sync), book in zip(self.syncs.items(), books, strict=True) if not sync.stats.cold]

        def check() -> None:
            for cid, sync, pin, digest in expected:
                try:
                    fresh = BookSync(sync.client, sync.contracts).cold_read(pin)  # type: ignore[arg-type]
                except Exception as exc:  # a failed check is retried at the next due epoch
                    log.warning("book check failed", extra={"chain_id": cid, "reason": str(exc)[:300]})
                    continue
                self.counters["book_checks"] += 1
                if fresh.content_hash() != digest:
                    self.counters["book_mismatches"] += 1
                    log.error("ALERT the incremental book differs from a full read; rebuilding it",
                              extra={"chain_id": cid, "block": fresh.block_number})
                    self._suspect.add(cid)

        self._checker = threading.Thread(target=check, name="book-check", daemon=True)
        self._checker.start()
        return True

    def _check_books(self, pins: Mapping[int, object], books: list[ChainBook]) -> list[ChainBook]:
        """Compare every book with a cold read at its pin; the cold read wins a difference."""
        out = []
        for (cid, sync), book in zip(self.syncs.items(), books, strict=True):
            if sync.stats.cold:
                out.append(book)
                continue
            fresh = sync.cold_read(pins[cid])  # type: ignore[arg-type]
            self.counters["book_checks"] += 1
            if fresh.content_hash() != book.content_hash():  # type: ignore[attr-defined]
                self.counters["book_mismatches"] += 1
                log.error("ALERT the incremental book differs from a full read; using the full read",
                          extra={"chain_id": cid, "block": fresh.block_number})
                sync.book = fresh
                book = fresh
            out.append(book)
        return out

    def _merge(self, books: list[ChainBook], target_time: int) -> ColumnarInputs:
        from bridges.book_merge import merge_books

        return merge_books(books, self.index, self.home_chain_id, target_time, self.max_quote_age_s)  # type: ignore[arg-type]

    def _persist(self, books: list[ChainBook]) -> None:
        self._since_persist += 1
        if self.book_store is None or self._since_persist < self.persist_every:
            return
        self._since_persist = 0
        for book in books:
            self.book_store.save(book)  # type: ignore[attr-defined]


def _each_chain(reads: Sequence[Callable[[], T]]) -> list[T]:
    """Run each chain's read in its own thread (their RPC waits overlap; each `BookSync` and client is used by
    one thread) and return the results in chain order; when reads fail, the first chain's error is raised,
    after every read has finished. A single read runs in the caller's thread."""
    if len(reads) <= 1:
        return [read() for read in reads]
    with ThreadPoolExecutor(max_workers=len(reads), thread_name_prefix="chain-read") as pool:
        futures = [pool.submit(read) for read in reads]
        wait(futures)
    return [f.result() for f in futures]


def _to_signing_set(version: object) -> SigningSet:
    members = tuple(bytes.fromhex(a.removeprefix("0x")) for a in version.members)  # type: ignore[attr-defined]
    return SigningSet(int(version.keyset_id), members, int(version.threshold))  # type: ignore[attr-defined]


def get_signing_set(gov: object, epoch: int) -> SigningSet:
    """The key set that signs `epoch` in the governance state `gov` (a `governance.tally.GovernanceState`)."""
    from governance.tally import get_validator_set

    return _to_signing_set(get_validator_set(gov, epoch))  # type: ignore[arg-type]


def get_reshare_order(gov: object, epoch: int) -> ReshareOrder | None:
    """The next validator-set change still to come after `epoch`, if any."""
    from governance.tally import get_pending_reshare

    pending = get_pending_reshare(gov, epoch)  # type: ignore[arg-type]
    if pending is None:
        return None
    old = SigningSet(pending.old_keyset_id, tuple(bytes.fromhex(a.removeprefix("0x")) for a in pending.old_set),
                     pending.old_threshold)
    new = SigningSet(pending.next_keyset_id, tuple(bytes.fromhex(a.removeprefix("0x")) for a in pending.new_set),
                     pending.new_threshold)
    return ReshareOrder(pending.proposal_id, pending.activation_epoch, old, new)

