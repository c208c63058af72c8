"""Canonical gRPC status codes with rich details (`google.rpc.Status` in the trailing metadata key
`grpc-status-details-bin`, as grpcio-status does), raised from servicer code and read by clients.

Servicer code raises `RpcAbort` (built by `invalid_argument`, `not_found`, ...); the servicer
wrapper applies it with `apply_abort`. Invariants: every abort carries a `google.rpc.Status` whose `code` equals the gRPC status code and
whose `message` equals the status details string; `INVALID_ARGUMENT` always carries a `BadRequest`
with at least one `FieldViolation` naming the field; `RESOURCE_EXHAUSTED` from the rate limiter
carries `RetryInfo`. Nothing is persisted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from node.ports import NodeError

DETAILS_KEY = "grpc-status-details-bin"
MAX_MESSAGE_CHARS = 500


class ApiError(NodeError):
    """Base of the API package's errors (configuration and serving failures)."""


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: `field` is the path (e.g. `accounts[2]`), `description` why."""

    field: str
    description: str


class _RichStatus(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


class RpcAbort(ApiError):
    """A request ends with a non-OK status; raised in servicer code, applied by `apply_abort`."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Sequence[object] = ()) -> None:
        super().__init__(message[:MAX_MESSAGE_CHARS])
        self.code = code
        self.message = message[:MAX_MESSAGE_CHARS]
        self.details = tuple(details)

    def to_status(self) -> status_pb2.Status:
        packed = []
        for d in self.details:
            item = any_pb2.Any()
            item.Pack(d)  # type: ignore[arg-type]
            packed.append(item)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=packed)


def apply_abort(context: grpc.ServicerContext, abort: RpcAbort) -> NoReturn:
    """End the RPC with the abort's code, message and google.rpc details (trailing metadata)."""
    blob = abort.to_status().SerializeToString()
    context.abort_with_status(_RichStatus(abort.code, abort.message, ((DETAILS_KEY, blob),)))
    raise AssertionError("unreachable: abort_with_status raises")


def invalid_argument(violations: Sequence[FieldViolation]) -> RpcAbort:
    """INVALID_ARGUMENT with a BadRequest listing every violation."""
    bad = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description[:MAX_MESSAGE_CHARS])
        for v in violations])
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return RpcAbort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {summary}", [bad])


def not_found(resource_type: str, name: str, what: str) -> RpcAbort:
    info = error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=name, description=what)
    return RpcAbort(grpc.StatusCode.NOT_FOUND, f"{resource_type} {name}: {what}", [info])


def failed_precondition(subject: str, description: str) -> RpcAbort:
    """FAILED_PRECONDITION, e.g. while the node is syncing or has no signed state yet."""
    failure = error_details_pb2.PreconditionFailure(violations=[
        error_details_pb2.PreconditionFailure.Violation(type="STATE", subject=subject, description=description)])
    return RpcAbort(grpc.StatusCode.FAILED_PRECONDITION, f"{subject}: {description}", [failure])


def resource_exhausted(retry_after_s: float, what: str) -> RpcAbort:
    """RESOURCE_EXHAUSTED with RetryInfo telling the client when a request will be admitted."""
    seconds = max(retry_after_s, 0.001)
    whole = math.floor(seconds)
    delay = duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
    quota = error_details_pb2.QuotaFailure(violations=[
        error_details_pb2.QuotaFailure.Violation(subject="client", description=what)])
    return RpcAbort(grpc.StatusCode.RESOURCE_EXHAUSTED, what, [error_details_pb2.RetryInfo(retry_delay=delay), quota])


def get_rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status a server attached to a failed call, or None."""
    metadata = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in metadata or ():
        if key == DETAILS_KEY:
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    return None


def get_field_violations(error: grpc.RpcError) -> list[FieldViolation]:
    """The BadRequest field violations of a failed call (empty when none)."""
    status = get_rich_status(error)
    out: list[FieldViolation] = []
    for detail in status.details if status else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return out


def get_retry_delay(error: grpc.RpcError) -> float | None:
    """The RetryInfo delay in seconds of a failed call, or None."""
    status = get_rich_status(error)
    for detail in status.details if status else ():
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


