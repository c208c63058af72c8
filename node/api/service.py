"""`clearing.api.v1.MarginService`: the public, read-only margin API.

Every RPC goes through `_guard`: per-client token bucket (RESOURCE_EXHAUSTED + RetryInfo), deadline
check, request metrics, and error mapping (`RpcAbort` -> its status with google.rpc details;
`OutOfRange` -> OUT_OF_RANGE; anything else -> INTERNAL without internals in the message, logged).
Reads come from immutable `EpochSnapshot`s plus point reads of leaves from the store; the service
never writes. Bounded: accounts per stream, concurrent streams, page sizes; `SimulateMargin` runs in
the sandbox's worker processes (`node.api.whatif.simulate_request`). Nothing is persisted.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from node.api import whatif
from node.api.convert import (
    PROPOSAL_STATUS,
    OutOfRange,
    format_account,
    format_address,
    leaf_to_margin,
    parse_account,
)
from node.api.errors import (
    FieldViolation,
    RpcAbort,
    apply_abort,
    failed_precondition,
    invalid_argument,
    not_found,
    resource_exhausted,
)
from node.api.ratelimit import ClientRateLimiter, get_client_key
from node.api.sandbox import Sandbox
from node.api.snapshot import EpochSnapshot, SnapshotCache
from node.api.sources import NodeSources
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from node.ports import Store

LOG = logging.getLogger(__name__)
MAX_EPOCH = 2**63 - 1


@dataclass(frozen=True)
class ServiceLimits:
    """Bounds of the public service (all configurable under `[api]`)."""

    rate_limit_rps: float = 2_000.0  # per client; <= 0 disables
    rate_limit_burst: float = 4_000.0
    simulate_cost: float = 20.0  # tokens one SimulateMargin costs
    max_stream_accounts: int = 100
    max_streams: int = 16
    stream_poll_s: float = 1.0
    max_page_size: int = 1_000


Observer = Callable[[str, str, float], None]  # (method, status code name, seconds)


class MarginService(api_pb2_grpc.MarginServiceServicer):
    def __init__(self, store: Store, snapshots: SnapshotCache, sources: NodeSources, sandbox: Sandbox,
                 limits: ServiceLimits = ServiceLimits(), observe: Observer | None = None) -> None:
        self.store = store
        self.sandbox = sandbox  # what-if computations run in its worker processes
        self.snapshots = snapshots
        self.sources = sources
        self.limits = limits
        self.limiter = ClientRateLimiter(limits.rate_limit_rps, limits.rate_limit_burst)
        self.observe = observe
        self._streams = threading.BoundedSemaphore(limits.max_streams)

    # -- plumbing ------------------------------------------------------------------------------
    def _admit(self, context: grpc.ServicerContext, cost: float) -> None:
        wait = self.limiter.try_acquire(get_client_key(context.peer()), cost)
        if wait > 0:
            raise resource_exhausted(wait, f"rate limit: retry in {wait:.3f} s")
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise RpcAbort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the call started")

    def _fail(self, context: grpc.ServicerContext, method: str, exc: Exception) -> RpcAbort:
        if isinstance(exc, RpcAbort):
            return exc
        if isinstance(exc, OutOfRange):
            return RpcAbort(grpc.StatusCode.OUT_OF_RANGE, str(exc))
        LOG.exception("rpc failed", extra={"method": method})
        return RpcAbort(grpc.StatusCode.INTERNAL, "internal error")

    def _record(self, method: str, code: str, started: float) -> None:
        if self.observe is not None:
            self.observe(method, code, time.perf_counter() - started)

    # -- helpers ------------------------------------------------------------------------------
    def _require_account(self, text: str, field: str) -> bytes:
        account = parse_account(text)
        if account is None:
            raise invalid_argument([FieldViolation(field, "must be 0x followed by 40 hex digits")])
        return account

    def _get_snapshot(self, has_epoch: bool, epoch: int) -> EpochSnapshot:
        if self.sources.is_syncing():
            raise failed_precondition("node", "syncing: signed states are not current yet")
        latest = self.snapshots.get_latest()
        if latest is None:
            raise failed_precondition("state", "no signed state yet")
        if not has_epoch or epoch == latest.state.epoch:
            return latest
        if epoch > MAX_EPOCH:
            raise invalid_argument([FieldViolation("epoch", f"at most {MAX_EPOCH}")])
        snap = self.snapshots.get_epoch(epoch)
        if snap is None:
            raise not_found("epoch", str(epoch), f"no signed state (latest is {latest.state.epoch})")
        return snap

    def _get_report(self, snap: EpochSnapshot, account: bytes) -> api_pb2.MarginReport | None:
        if not snap.has_leaves:
            return None
        leaf = self.store.get_leaf(snap.state.epoch, account)
        if leaf is None:
            return None
        return api_pb2.MarginReport(margin=leaf_to_margin(leaf), leaf=leaf.encoded, leaf_index=leaf.index,
                                    proof=snap.get_proof(leaf), state=snap.state_pb)

    # -- RPCs -----------------------------------------------------------------------------------
    def GetMargin(self, request: api_pb2.GetMarginRequest, context: Any) -> api_pb2.GetMarginResponse:
        account = self._require_account(request.account, "account")
        snap = self._get_snapshot(request.HasField("epoch"), request.epoch)
        report = self._get_report(snap, account)
        if report is None and snap.state.leaf_count > 0 and (
                not snap.has_leaves or not self.store.has_leaves(snap.state.epoch)):
            raise not_found("epoch", str(snap.state.epoch),
                            "this node holds no leaves of this epoch (pruned, or a signed state fetched from a "
                            "peer that this node never computed): ask another validator")
        if report is None:
            failure = self.store.get_failure(snap.state.epoch, account)
            why = "" if failure is None else f": its margin could not be computed ({failure[0]}: {failure[1]})"
            raise not_found("account", format_account(account), f"no leaf in epoch {snap.state.epoch}{why}")
        return api_pb2.GetMarginResponse(report=report)

    def GetSignedState(self, request: api_pb2.GetSignedStateRequest, context: Any) -> api_pb2.GetSignedStateResponse:
        snap = self._get_snapshot(request.HasField("epoch"), request.epoch)
        return api_pb2.GetSignedStateResponse(state=snap.state_pb)

    def StreamMarginUpdates(self, request: api_pb2.StreamMarginUpdatesRequest,
                            context: Any) -> Iterator[api_pb2.StreamMarginUpdatesResponse]:
        accounts = self._validate_stream_request(request)
        if not self._streams.acquire(blocking=False):
            raise resource_exhausted(self.limits.stream_poll_s, "too many open streams on this node")
        try:
            latest = self.snapshots.get_latest()
            last_epoch = -1
            if latest is not None:
                last_epoch = latest.state.epoch
                if request.send_current:
                    yield from self._stream_batch(latest, accounts)
            while context.is_active():
                remaining = context.time_remaining()
                if remaining is not None and remaining <= 0:
                    raise RpcAbort(grpc.StatusCode.DEADLINE_EXCEEDED, "stream deadline reached")
                timeout = self.limits.stream_poll_s if remaining is None else min(remaining, self.limits.stream_poll_s)
                snap = self.snapshots.wait_for_newer(last_epoch, timeout)
                if snap is not None:
                    last_epoch = snap.state.epoch
                    yield from self._stream_batch(snap, accounts)
        finally:
            self._streams.release()

    def _validate_stream_request(self, request: api_pb2.StreamMarginUpdatesRequest) -> list[bytes]:
        if not request.accounts:
            raise invalid_argument([FieldViolation("accounts", "give at least one account")])
        if len(request.accounts) > self.limits.max_stream_accounts:
            raise invalid_argument([FieldViolation("accounts", f"at most {self.limits.max_stream_accounts}")])
        bad = [FieldViolation(f"accounts[{i}]", "must be 0x followed by 40 hex digits")
               for i, text in enumerate(request.accounts) if parse_account(text) is None]
        if bad:
            raise invalid_argument(bad)
        return list(dict.fromkeys(parse_account(t) for t in request.accounts))  # type: ignore[misc]

    def _stream_batch(self, snap: EpochSnapshot, accounts: list[bytes]) -> Iterator[api_pb2.StreamMarginUpdatesResponse]:
        for account in accounts:
            report = self._get_report(snap, account)
            if report is not None:
                yield api_pb2.StreamMarginUpdatesResponse(report=report)

    def SimulateMargin(self, request: api_pb2.SimulateMarginRequest, context: Any) -> api_pb2.SimulateMarginResponse:
        return whatif.simulate_request(self.sandbox, request, context.time_remaining())

    def ListValidators(self, request: api_pb2.ListValidatorsRequest, context: Any) -> api_pb2.ListValidatorsResponse:
        vs = self.sources.get_validator_set()
        return api_pb2.ListValidatorsResponse(
            keyset_id=vs.keyset_id, threshold=vs.threshold, group_public_key=vs.group_public_key,
            validators=[api_pb2.Validator(index=v.index, peer_id=v.peer_id, public_key_share=v.public_key_share,
                                          address=format_address(v.address), is_self=v.index == vs.self_index)
                        for v in vs.validators])

    def GetParameters(self, request: api_pb2.GetParametersRequest, context: Any) -> api_pb2.GetParametersResponse:
        epoch: int | None = request.epoch if request.HasField("epoch") else None
        if epoch is None:
            latest = self.snapshots.get_latest()
            epoch = latest.state.epoch if latest is not None else None
        params = self.sources.get_parameters(epoch)
        if params is None:
            raise not_found("parameters", str(epoch), "no parameter set active at this epoch")
        return api_pb2.GetParametersResponse(version=params.version, activation_epoch=params.activation_epoch,
                                             params_hash=params.params_hash, encoded=params.encoded,
                                             params_json=params.params_json)

    def ListProposals(self, request: api_pb2.ListProposalsRequest, context: Any) -> api_pb2.ListProposalsResponse:
        if request.page_size > self.limits.max_page_size:
            raise invalid_argument([FieldViolation("page_size", f"at most {self.limits.max_page_size}")])
        size = request.page_size or 100
        found = self.sources.list_proposals(request.from_id, size + 1)
        page, more = found[:size], found[size:]
        return api_pb2.ListProposalsResponse(
            proposals=[api_pb2.Proposal(
                id=p.id, status=PROPOSAL_STATUS.get(p.status, api_pb2.PROPOSAL_STATUS_UNSPECIFIED),
                proposer=format_address(p.proposer), activation_epoch=p.activation_epoch, params_hash=p.params_hash,
                votes_for=p.votes_for, votes_against=p.votes_against, description=p.description) for p in page],
            next_from_id=more[0].id if more else 0)


COSTS = {"SimulateMargin": "simulate_cost"}


def _guard_unary(service: MarginService, name: str, method: Callable) -> Callable:
    cost_attr = COSTS.get(name)

    @functools.wraps(method)
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            service._admit(context, getattr(service.limits, cost_attr) if cost_attr else 1.0)
            response = method(request, context)
        except Exception as exc:
            abort = service._fail(context, name, exc)
            service._record(name, abort.code.name, started)
            apply_abort(context, abort)
        service._record(name, "OK", started)
        return response

    return handler


def _guard_stream(service: MarginService, name: str, method: Callable) -> Callable:
    @functools.wraps(method)
    def handler(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started = time.perf_counter()
        try:
            service._admit(context, 1.0)
            yield from method(request, context)
        except Exception as exc:
            abort = service._fail(context, name, exc)
            service._record(name, abort.code.name, started)
            apply_abort(context, abort)
        service._record(name, "OK", started)

    return handler


def make_guarded_service(service: MarginService) -> MarginService:
    """Wrap every RPC of `service` in its guard (rate limit, deadline, metrics, error mapping)."""
    for name in ("GetMargin", "GetSignedState", "SimulateMargin", "ListValidators", "GetParameters",
                 "ListProposals"):
        setattr(service, name, _guard_unary(service, name, getattr(service, name)))
    service.StreamMarginUpdates = _guard_stream(  # type: ignore[method-assign]
        service, "StreamMarginUpdates", service.StreamMarginUpdates)
    return service
