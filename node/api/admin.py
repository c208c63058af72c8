"""`clearing.admin.v1.AdminService` on a UNIX domain socket only (mode 0600; its folder is created
0700 when missing, an existing one is used only if no other user can write to it, and never chmod-ed).

The operator's view of the node: status (store epochs, signing record, sync, peers, chains),
peers, evidence, and a request to re-read chain inputs. Whoever can open the socket is the
operator, so it is never bound to TCP. Bounded: one small thread pool, evidence page size.
Reads the store; persists nothing (a re-read request is handed to `NodeSources`).
"""

from __future__ import annotations

import os
import stat
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from node.api.convert import evidence_to_pb
from node.api.errors import ApiError, FieldViolation, apply_abort, invalid_argument
from node.api.sources import MAX_REASON_CHARS, NodeSources
from node.pb.clearing.admin.v1 import admin_pb2, admin_pb2_grpc
from node.ports import Store

MAX_EVIDENCE_PAGE = 10_000
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, store: Store, sources: NodeSources, version: str) -> None:
        self.store = store
        self.sources = sources
        self.version = version
        self.started = time.monotonic()

    def GetStatus(self, request: admin_pb2.GetStatusRequest, context: Any) -> admin_pb2.GetStatusResponse:
        st = self.sources.get_status()
        latest = self.store.get_latest_signed_state()
        signed = self.store.get_last_signed()
        return admin_pb2.GetStatusResponse(
            version=self.version, network_id=st.network_id, validator_index=st.validator_index,
            peer_id=st.peer_id, has_latest_state=latest is not None, latest_epoch=latest.epoch if latest else 0,
            has_last_signed=signed is not None, last_signed_epoch=signed[0] if signed else 0,
            syncing=self.sources.is_syncing(), peer_count=len(self.sources.list_peers()),
            uptime_seconds=int(time.monotonic() - self.started),
            chains=[admin_pb2.ChainStatus(chain_id=c.chain_id, head_block=c.head_block, pinned_block=c.pinned_block,
                                          healthy=c.healthy, rpc_errors=c.rpc_errors) for c in st.chains],
            api_address=st.api_address, metrics_address=st.metrics_address,
            evidence_count=len(self.store.list_evidence(MAX_EVIDENCE_PAGE)),
            keysets=[admin_pb2.KeySetStatus(keyset_id=k.keyset_id, index=k.index, n=k.n, threshold=k.threshold,
                                            has_share=k.has_share, pending=k.pending) for k in st.keysets],
            reshares=[admin_pb2.ReshareStatus(proposal_id=r.proposal_id, keyset_id=r.keyset_id, state=r.state,
                                              activation_epoch=r.activation_epoch, attempts=r.attempts,
                                              error=r.error) for r in st.reshares],
            epochs_skipped=[admin_pb2.EpochSkips(reason=reason, count=count) for reason, count in st.epochs_skipped],
            has_last_skipped=st.last_skipped is not None,
            last_skipped_epoch=st.last_skipped[0] if st.last_skipped else 0,
            last_skipped_reason=st.last_skipped[1] if st.last_skipped else "")

    def ListPeers(self, request: admin_pb2.ListPeersRequest, context: Any) -> admin_pb2.ListPeersResponse:
        return admin_pb2.ListPeersResponse(peers=[
            admin_pb2.Peer(peer_id=p.peer_id, addrs=list(p.addrs), validator_index=p.validator_index)
            for p in self.sources.list_peers()])

    def TriggerReread(self, request: admin_pb2.TriggerRereadRequest, context: Any) -> admin_pb2.TriggerRereadResponse:
        if len(request.reason) > MAX_REASON_CHARS:
            apply_abort(context, invalid_argument([FieldViolation("reason", f"at most {MAX_REASON_CHARS} characters")]))
        epoch = request.epoch if request.HasField("epoch") else None
        accepted, detail = self.sources.request_reread(epoch, request.reason)
        return admin_pb2.TriggerRereadResponse(accepted=accepted, detail=detail)

    def ListEvidence(self, request: admin_pb2.ListEvidenceRequest, context: Any) -> admin_pb2.ListEvidenceResponse:
        if request.limit > MAX_EVIDENCE_PAGE:
            apply_abort(context, invalid_argument([FieldViolation("limit", f"at most {MAX_EVIDENCE_PAGE}")]))
        limit = request.limit or 100
        return admin_pb2.ListEvidenceResponse(evidence=[evidence_to_pb(e) for e in self.store.list_evidence(limit)])


def prepare_socket_path(path: Path) -> None:
    """Create the socket's folder (0700) if it is missing; refuse an existing folder that others could
    write to or that belongs to another user (its mode is never changed); remove a stale socket and
    refuse any other file at the path."""
    if len(str(path)) > MAX_SOCKET_PATH:
        raise ApiError(f"admin socket path {path} is longer than {MAX_SOCKET_PATH} characters")
    folder = path.parent
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
        os.chmod(folder, 0o700)  # only a folder this call created (the umask may have narrowed it)
    except FileExistsError:
        check_socket_folder(folder)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ApiError(f"admin socket path {path} exists and is not a socket")
        path.unlink()


def check_socket_folder(folder: Path) -> None:
    """An existing socket folder must be a directory owned by this user and not writable by others
    (group- or world-writable only with the sticky bit, like /tmp)."""
    st = folder.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ApiError(f"admin socket folder {folder} exists and is not a directory")
    if st.st_uid != os.geteuid():
        raise ApiError(f"admin socket folder {folder} is owned by uid {st.st_uid}, not by this user "
                       f"(uid {os.geteuid()}): choose a folder of your own for [admin].socket")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise ApiError(f"admin socket folder {folder} is group- or world-writable without the sticky bit "
                       f"(mode {stat.S_IMODE(st.st_mode):04o}): others could replace the socket")


class AdminServer:
    def __init__(self, server: grpc.Server, path: Path) -> None:
        self.server = server
        self.path = path

    def stop(self, grace_s: float = 1.0) -> None:
        self.server.stop(grace_s).wait(grace_s + 1)
        self.path.unlink(missing_ok=True)


def start_admin_server(socket_path: str | Path, store: Store, sources: NodeSources, version: str) -> AdminServer:
    path = Path(socket_path).absolute()
    prepare_socket_path(path)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="admin"),
                         options=[("grpc.max_receive_message_length", 64 << 10)], maximum_concurrent_rpcs=8)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminService(store, sources, version), server)
    umask = os.umask(0o177)  # the socket is created 0600: no moment in which others may connect
    try:
        if server.add_insecure_port(f"unix:{path}") == 0:
            raise ApiError(f"admin socket {path}: cannot bind")
        server.start()
    finally:
        os.umask(umask)
    os.chmod(path, 0o600)
    return AdminServer(server, path)


