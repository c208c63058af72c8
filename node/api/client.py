"""Client helpers of the node's own tools (CLI, benchmark, devnet, tests), on top of the public
`clearing_client` package (one way to open an API channel and render a response): the admin socket
channel, which is node-internal, and thin wrappers kept for their callers.

Bounded: every call takes a deadline (`timeout_s`). Nothing is persisted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from clearing_client import ClearingClient, message_to_dict
from clearing_client import open_channel as open_api_channel
from node.pb.clearing.admin.v1 import admin_pb2, admin_pb2_grpc
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc

DEFAULT_TIMEOUT_S = 5.0


def open_admin_channel(socket_path: str | Path) -> grpc.Channel:
    return grpc.insecure_channel(f"unix:{Path(socket_path).absolute()}")


def get_margin(channel: grpc.Channel, account: str, epoch: int | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S) -> api_pb2.GetMarginResponse:
    """One `GetMargin` on one channel, the raw response (no failover: `ClearingClient` has it)."""
    request = api_pb2.GetMarginRequest(account=account)
    if epoch is not None:
        request.epoch = epoch
    return api_pb2_grpc.MarginServiceStub(channel).GetMargin(request, timeout=timeout_s)


def get_admin_status(channel: grpc.Channel, timeout_s: float = DEFAULT_TIMEOUT_S) -> admin_pb2.GetStatusResponse:
    return admin_pb2_grpc.AdminServiceStub(channel).GetStatus(admin_pb2.GetStatusRequest(), timeout=timeout_s)


def report_to_dict(report: api_pb2.MarginReport) -> dict[str, Any]:
    """A `MarginReport` as a JSON-ready dict (amounts integer micro-USD, bytes 0x-hex)."""
    return message_to_dict(report)


__all__ = [
    "ClearingClient",
    "get_admin_status",
    "get_margin",
    "message_to_dict",
    "open_admin_channel",
    "open_api_channel",
    "report_to_dict",
]
