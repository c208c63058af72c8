"""`clearingd status [--peers] [--evidence] [--json]`: the node's status read from its admin
socket (`[admin].socket` in the home folder's config, or `--socket`). A missing home, or a node
that is not running (no socket, or nobody listening on it), is reported at once with the next step
(exit code 2 and 1), as JSON too with `--json`. Exit code 1 when the node does not answer.
Persists nothing."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

from node.cli.common import add_home_option, add_json_option, emit, env_default, get_home, require_home, run
from node.config import load_config
from node.ports import NodeError

TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 1.0


class NodeNotRunning(NodeError):
    """Nobody serves the admin socket."""


def check_listening(path: Path, home: Path) -> None:
    """Raise NodeNotRunning (with the next step) unless a process accepts connections on the socket."""
    start = f"start it with `clearingd start --home {home}`"
    if not path.exists():
        raise NodeNotRunning(f"the node is not running (no admin socket at {path}); {start}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(CONNECT_TIMEOUT_S)
        try:
            probe.connect(str(path))
        except OSError as exc:
            raise NodeNotRunning(f"the node is not running (nobody listens on {path}: {exc.strerror or exc}); "
                                 f"{start}") from None


def handle_status(args: argparse.Namespace) -> int:
    from node.api.client import message_to_dict, open_admin_channel
    from node.pb.clearing.admin.v1 import admin_pb2, admin_pb2_grpc

    home = get_home(args)
    path = Path(args.socket) if args.socket else load_config(require_home(args)).get_path("admin", "socket")
    check_listening(path, home)
    with open_admin_channel(path) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        status = stub.GetStatus(admin_pb2.GetStatusRequest(), timeout=TIMEOUT_S)
        doc: dict[str, Any] = message_to_dict(status)
        if args.peers:
            doc["peers"] = message_to_dict(stub.ListPeers(admin_pb2.ListPeersRequest(), timeout=TIMEOUT_S))["peers"]
        if args.evidence:
            doc["evidence"] = message_to_dict(stub.ListEvidence(admin_pb2.ListEvidenceRequest(limit=100),
                                                                timeout=TIMEOUT_S))["evidence"]
    lines = [
        f"clearingd {status.version}  network {status.network_id}  validator {status.validator_index}",
        f"latest signed state: {status.latest_epoch if status.has_latest_state else 'none'}",
        f"last signed epoch:   {status.last_signed_epoch if status.has_last_signed else 'none'}",
        f"syncing: {status.syncing}  peers: {status.peer_count}  uptime: {status.uptime_seconds}s  "
        f"evidence: {status.evidence_count}",
        f"api: {status.api_address or '-'}  metrics: {status.metrics_address or '-'}",
    ]
    if status.epochs_skipped:
        lines.append("epochs skipped: " + ", ".join(f"{s.reason} {s.count}" for s in status.epochs_skipped)
                     + (f" (last: epoch {status.last_skipped_epoch}, {status.last_skipped_reason})"
                        if status.has_last_skipped else ""))
    lines += [f"  chain {c.chain_id}: head {c.head_block}, pinned {c.pinned_block}, "
              f"{'healthy' if c.healthy else 'UNREACHABLE'}" for c in status.chains]
    lines += [f"  key set {k.keyset_id}: {k.threshold} of {k.n}, "
              + ("not a member" if k.index < 0 else f"index {k.index}")
              + (", pending (reshare running)" if k.pending else ", share held" if k.has_share else ", no share")
              for k in status.keysets]
    lines += [f"  reshare for proposal {r.proposal_id} -> key set {r.keyset_id} (activation epoch "
              f"{r.activation_epoch}): {r.state}, {r.attempts} attempt(s)" + (f", {r.error}" if r.error else "")
              for r in status.reshares]
    lines += [f"  peer {p['peer_id']} (validator {p['validator_index']})" for p in doc.get("peers", [])]
    lines += [f"  evidence {e['kind']} epoch {e['epoch']} signer {e['signer_index']}" for e in doc.get("evidence", [])]
    emit(args, doc, "\n".join(lines))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("status", help="the running node's status (admin socket)")
    add_home_option(p)
    add_json_option(p)
    p.add_argument("--socket", default=env_default("CLEARING_ADMIN_SOCKET", ""),
                   help="admin socket path (env CLEARING_ADMIN_SOCKET; default from the home's config)")
    p.add_argument("--peers", action="store_true", help="also list peers")
    p.add_argument("--evidence", action="store_true", help="also list misbehaviour evidence")
    p.set_defaults(func=run(handle_status))
