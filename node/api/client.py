"""Client helpers for the CLI, the benchmark and tests: channels to the public API (TCP, optional
TLS) and to the admin socket, and conversions of responses to plain JSON-ready dicts.

Bounded: every call takes a deadline (`timeout_s`); channels use the same message size limits as the
server. Bytes are rendered as 0x-hex, amounts stay integers (micro-USD). Nothing is persisted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from node.pb.clearing.admin.v1 import admin_pb2, admin_pb2_grpc
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc

DEFAULT_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = 8 << 20


def open_api_channel(address: str, ca_file: str = "") -> grpc.Channel:
    """A channel to the public API; TLS when `ca_file` (PEM of the server's CA) is given."""
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    if ca_file:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(ca_file).read_bytes())
        return grpc.secure_channel(address, creds, options=options)
    return grpc.insecure_channel(address, options=options)


def open_admin_channel(socket_path: str | Path) -> grpc.Channel:
    return grpc.insecure_channel(f"unix:{Path(socket_path).absolute()}")


def get_margin(channel: grpc.Channel, account: str, epoch: int | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> api_pb2.GetMarginResponse:
    request = api_pb2.GetMarginRequest(account=account)
    if epoch is not None:
        request.epoch = epoch
    return api_pb2_grpc.MarginServiceStub(channel).GetMargin(request, timeout=timeout_s)


def get_admin_status(channel: grpc.Channel, timeout_s: float = DEFAULT_TIMEOUT_S) -> admin_pb2.GetStatusResponse:
    return admin_pb2_grpc.AdminServiceStub(channel).GetStatus(admin_pb2.GetStatusRequest(), timeout=timeout_s)


def report_to_dict(report: api_pb2.MarginReport) -> dict[str, Any]:
    """A `MarginReport` as a JSON-ready dict (amounts integer micro-USD, bytes 0x-hex)."""
    return message_to_dict(report)


def message_to_dict(message: Any) -> dict[str, Any]:
    """Proto message -> dict with snake_case names, integers as integers, bytes as 0x-hex."""
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


__all__ = [
    "get_admin_status",
    "get_margin",
    "message_to_dict",
    "open_admin_channel",
    "open_api_channel",
    "report_to_dict",
]
