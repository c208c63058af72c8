"""`ClearingClient`: the public API of several validators behind one object, with failover.

Every public RPC (`MarginService`) is a method returning typed results (`clearing_client.types`).
A unary call goes to the endpoints in turn, starting from the one that answered last: UNAVAILABLE,
DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION (a syncing node) and NOT_FOUND of an epoch
(a validator that does not hold that epoch's leaves) move on to the next endpoint; after a full pass
the client waits `backoff_s` (doubling) and passes again, at most `passes` times. NOT_FOUND of an
account that every endpoint gave is final (`NotFound`); INVALID_ARGUMENT and the other codes are
final at once (`ApiError`). Each attempt has its own deadline (`timeout_s`).

With `group_public_key` (96-byte compressed G2; the trust anchor, e.g. read from a registry with
`clearing_client.chain.read_group_key`) every margin report and signed state is verified locally
before it is returned: leaf -> proof -> root, pins -> inputs digest, fields -> digest, the group
BLS signature over it (`clearing_client.formats`); a report that does not verify counts as a failed
attempt (the next validator is asked) and, from every validator, raises `VerificationError`.
Bounded: per-attempt deadlines, `passes`; channels are opened once per endpoint. Nothing persisted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from clearing_client.formats import (
    VerificationError,
    inputs_digest,
    leaf_hash,
    process_proof,
    state_digest,
    verify_bls,
)
from clearing_client.types import MarginReport, Parameters, Proposal, SignedState, Simulation, ValidatorSet
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc

DEFAULT_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = 8 << 20
RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                         grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION,
                         grpc.StatusCode.NOT_FOUND})
T = TypeVar("T")


class ApiError(Exception):
    """A call failed at every endpoint, or with a final status; `code` is the last gRPC status."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class NotFound(ApiError):
    """Every endpoint answered NOT_FOUND for the account (no leaf in the state asked about)."""


def open_channel(address: str, ca_file: str = "") -> grpc.Channel:
    """A channel to one node's public API; TLS when `ca_file` (PEM of the server's CA) is given."""
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    if ca_file:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes())
        return grpc.secure_channel(address, creds, options=options)
    return grpc.insecure_channel(address, options=options)


def get_not_found_resource(err: grpc.RpcError) -> str:
    """The `ResourceInfo.resource_type` of a NOT_FOUND (e.g. "account", "epoch"), or ""."""
    try:
        for key, value in (err.trailing_metadata() or ()):  # type: ignore[attr-defined]
            if key == "grpc-status-details-bin":
                for detail in status_pb2.Status.FromString(value).details:
                    info = error_details_pb2.ResourceInfo()
                    if detail.Unpack(info):
                        return info.resource_type
    except (AttributeError, DecodeError):  # no rich status attached
        pass
    return ""


class ClearingClient:
    """The public API of several validators (host:port each) with failover; thread-safe."""

    def __init__(self, endpoints: Sequence[str], *, ca_file: str = "", timeout_s: float = DEFAULT_TIMEOUT_S,
                 passes: int = 3, backoff_s: float = 0.2, group_public_key: bytes | None = None,
                 network_id: int | None = None) -> None:
        if not endpoints:
            raise ValueError("endpoints: give at least one validator API address")
        self.endpoints = list(endpoints)
        self.timeout_s, self.passes, self.backoff_s = timeout_s, max(1, passes), backoff_s
        self.group_public_key, self.network_id = group_public_key, network_id
        self._channels = {e: open_channel(e, ca_file) for e in self.endpoints}
        self._stubs = {e: api_pb2_grpc.MarginServiceStub(c) for e, c in self._channels.items()}
        self._preferred = 0
        self._lock = threading.Lock()
        self.failovers = 0  # attempts that moved on to another endpoint (for monitoring)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> ClearingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- failover ---------------------------------------------------------------------------------
    def _order(self) -> list[str]:
        with self._lock:
            start = self._preferred
        return self.endpoints[start:] + self.endpoints[:start]

    def _count_failover(self) -> None:
        with self._lock:
            self.failovers += 1

    def _call(self, method: str, request: Any, convert: Callable[[Any, str], T]) -> T:
        last: Exception | None = None
        backoff = self.backoff_s
        for attempt in range(self.passes):
            if attempt:
                time.sleep(backoff)
                backoff *= 2
            accounts_missing = 0
            for endpoint in self._order():
                try:
                    response = getattr(self._stubs[endpoint], method)(request, timeout=self.timeout_s)
                    result = convert(response, endpoint)
                except grpc.RpcError as err:
                    code = err.code()  # type: ignore[attr-defined]
                    if code not in RETRY_CODES:
                        raise ApiError(f"{endpoint}: {code.name}: {err.details()}", code) from err  # type: ignore[attr-defined]
                    if code == grpc.StatusCode.NOT_FOUND and get_not_found_resource(err) != "epoch":
                        accounts_missing += 1
                    last = ApiError(f"{endpoint}: {code.name}: {err.details()}", code)  # type: ignore[attr-defined]
                    self._count_failover()
                    continue
                except VerificationError as exc:
                    last = VerificationError(f"{endpoint}: {exc}")
                    self._count_failover()
                    continue
                with self._lock:
                    self._preferred = self.endpoints.index(endpoint)
                return result
            if accounts_missing == len(self.endpoints):
                raise NotFound(f"every validator: {last}", grpc.StatusCode.NOT_FOUND)
        if isinstance(last, VerificationError):
            raise last
        raise ApiError(f"{method} failed at every endpoint ({self.passes} passes); last: {last}",
                       getattr(last, "code", None))

    # -- verification ------------------------------------------------------------------------------
    def verify_state(self, state: SignedState) -> None:
        """Raise VerificationError unless the state's digest recomputes and the group signed it."""
        if self.network_id is not None and state.network_id != self.network_id:
            raise VerificationError(f"state: network {state.network_id}, expected {self.network_id}")
        pins = [(p.chain_id, p.block_number, p.block_hash) for p in state.pins]
        if inputs_digest(pins) != state.inputs_digest:
            raise VerificationError(f"epoch {state.epoch}: inputs digest does not match the pins")
        digest = state_digest(state.network_id, state.keyset_id, state.epoch, state.inputs_digest,
                              state.params_hash, state.root, state.leaf_count)
        if digest != state.digest:
            raise VerificationError(f"epoch {state.epoch}: digest does not recompute from the state's fields")
        if self.group_public_key is not None and not verify_bls(self.group_public_key, digest, state.signature):
            raise VerificationError(f"epoch {state.epoch}: group signature does not verify")

    def verify_report(self, report: MarginReport, account: str | None = None) -> None:
        """Raise VerificationError unless the leaf is the account's and proves into the signed root."""
        if account is not None and report.leaf_values.account.lower() != account.lower():
            raise VerificationError(f"leaf: account {report.leaf_values.account}, asked {account}")
        m, leaf = report.margin, report.leaf_values
        if (m.equity_micro_usd, m.initial_margin_micro_usd, m.maintenance_margin_micro_usd, m.liquidatable) != (
                leaf.equity, leaf.im, leaf.mm, leaf.liquidatable) or m.epoch != report.state.epoch:
            raise VerificationError("margin: the numbers differ from the signed leaf")
        if process_proof(leaf_hash(report.leaf), report.proof) != report.state.root:
            raise VerificationError(f"epoch {report.state.epoch}: the proof does not lead to the signed root")
        self.verify_state(report.state)

    def _verifying(self) -> bool:
        return self.group_public_key is not None

    # -- RPCs ---------------------------------------------------------------------------------------
    def get_margin(self, account: str, epoch: int | None = None) -> MarginReport:
        """An account's margin in the newest state a validator can serve (or `epoch`), with its proof."""
        request = api_pb2.GetMarginRequest(account=account)
        if epoch is not None:
            request.epoch = epoch

        def convert(response: api_pb2.GetMarginResponse, endpoint: str) -> MarginReport:
            report = MarginReport.from_pb(response.report, endpoint)
            if self._verifying():
                self.verify_report(report, account)
            return report

        return self._call("GetMargin", request, convert)

    def get_signed_state(self, epoch: int | None = None) -> SignedState:
        request = api_pb2.GetSignedStateRequest()
        if epoch is not None:
            request.epoch = epoch

        def convert(response: api_pb2.GetSignedStateResponse, endpoint: str) -> SignedState:
            state = SignedState.from_pb(response.state)
            if self._verifying():
                self.verify_state(state)
            return state

        return self._call("GetSignedState", request, convert)

    def simulate_margin(self, whatif: str | dict) -> Simulation:
        """What-if margin of a RISK_SPEC section 6 document (JSON text or a dict)."""
        text = whatif if isinstance(whatif, str) else json.dumps(whatif)
        return self._call("SimulateMargin", api_pb2.SimulateMarginRequest(whatif_json=text),
                          lambda r, _e: Simulation.from_pb(r))

    def list_validators(self) -> ValidatorSet:
        return self._call("ListValidators", api_pb2.ListValidatorsRequest(), lambda r, _e: ValidatorSet.from_pb(r))

    def get_parameters(self, epoch: int | None = None) -> Parameters:
        request = api_pb2.GetParametersRequest()
        if epoch is not None:
            request.epoch = epoch
        return self._call("GetParameters", request, lambda r, _e: Parameters.from_pb(r))

    def list_proposals(self, from_id: int = 0, page_size: int = 0) -> tuple[list[Proposal], int]:
        """(proposals, next_from_id; 0 when there are no more)."""
        request = api_pb2.ListProposalsRequest(from_id=from_id, page_size=page_size)
        return self._call("ListProposals", request,
                          lambda r, _e: ([Proposal.from_pb(p) for p in r.proposals], r.next_from_id))

    def stream_margin_updates(self, accounts: Sequence[str], send_current: bool = True,
                              timeout_s: float = 60.0) -> Iterator[MarginReport]:
        """New signed values of `accounts` until `timeout_s`; from the first endpoint that accepts the
        stream (a stream is not resumed on another endpoint: call again on error)."""
        request = api_pb2.StreamMarginUpdatesRequest(accounts=list(accounts), send_current=send_current)
        last: grpc.RpcError | None = None
        for endpoint in self._order():
            call = self._stubs[endpoint].StreamMarginUpdates(request, timeout=timeout_s)
            started = False
            try:
                for response in call:
                    started = True
                    report = MarginReport.from_pb(response.report, endpoint)
                    if self._verifying():
                        self.verify_report(report)
                    yield report
                return
            except grpc.RpcError as err:
                if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
                    return
                if started:
                    raise ApiError(f"{endpoint}: stream ended: {err.details()}", err.code()) from err  # type: ignore[attr-defined]
                last = err
        raise ApiError(f"StreamMarginUpdates failed at every endpoint; last: {last}")


def message_to_dict(message: Any) -> dict[str, Any]:
    """Proto message -> JSON-ready dict: snake_case names, integers as integers, bytes as 0x-hex."""
    out: dict[str, Any] = {}
    for fd in message.DESCRIPTOR.fields:
        value = getattr(message, fd.name)
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            out[fd.name] = dict(value)
        elif fd.is_repeated:
            out[fd.name] = [_convert_field(fd, v) for v in value]
        elif fd.message_type is not None:
            out[fd.name] = message_to_dict(value) if message.HasField(fd.name) else None
        else:
            out[fd.name] = _convert_field(fd, value)
    return out


def _convert_field(fd: Any, value: Any) -> Any:
    if fd.message_type is not None:
        return message_to_dict(value)
    if fd.type == fd.TYPE_BYTES:
        return "0x" + bytes(value).hex()
    if fd.enum_type is not None:
        return fd.enum_type.values_by_number[value].name if value in fd.enum_type.values_by_number else value
    return value
