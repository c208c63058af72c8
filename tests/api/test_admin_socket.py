"""The admin socket's folder: created 0700 when missing; an existing folder is never chmod-ed, and is
refused when other users could write to it (real gRPC server on a real UNIX socket)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from node.api.admin import start_admin_server
from node.api.client import open_admin_channel
from node.api.errors import ApiError
from node.pb.clearing.admin.v1 import admin_pb2, admin_pb2_grpc
from node.store import SQLiteStore
from tests.api.conftest import make_sources


def serve_and_ask(sock: Path, store: SQLiteStore) -> str:
    server = start_admin_server(sock, store, make_sources(), "9.9.9")
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        with open_admin_channel(sock) as channel:
            return admin_pb2_grpc.AdminServiceStub(channel).GetStatus(admin_pb2.GetStatusRequest(), timeout=5).version
    finally:
        server.stop(0.2)


def get_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o1777, 0o1770])
def test_admin_socket_does_not_chmod_existing_folder(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    store = SQLiteStore(tmp_path / "n.sqlite")
    try:
        assert serve_and_ask(shared / "admin.sock", store) == "9.9.9"
    finally:
        store.close()
    assert get_mode(shared) == mode


def test_admin_socket_folder_created_0700_when_missing(tmp_path: Path) -> None:
    sock = tmp_path / "home" / "run" / "admin.sock"
    store = SQLiteStore(tmp_path / "n.sqlite")
    try:
        assert serve_and_ask(sock, store) == "9.9.9"
    finally:
        store.close()
    assert get_mode(sock.parent) == 0o700


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o722])
def test_admin_socket_refuses_folder_others_can_write(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    store = SQLiteStore(tmp_path / "n.sqlite")
    try:
        with pytest.raises(ApiError, match=f"{shared}.*without the sticky bit"):
            start_admin_server(shared / "admin.sock", store, make_sources(), "1")
    finally:
        store.close()
    assert get_mode(shared) == mode and not (shared / "admin.sock").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_admin_socket_refuses_folder_of_another_user(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    store = SQLiteStore(tmp_path / "n.sqlite")
    try:
        with pytest.raises(ApiError, match=f"{theirs} is owned by uid 65534"):
            start_admin_server(theirs / "admin.sock", store, make_sources(), "1")
    finally:
        store.close()
    assert get_mode(theirs) == 0o755 and theirs.stat().st_uid == 65534


def test_admin_status_shows_skipped_epochs(tmp_path: Path) -> None:
    """Skipped rounds travel status.json -> LiveSources -> GetStatus (the fields `clearingd status` prints)."""
    from dataclasses import replace

    from node.api.live import get_skip_status

    status = {"epochs_skipped": {"overrun": 3, "deadline": 1, "inputs_unavailable": 0, "loop_late": 0},
              "last_skipped": [120, "overrun"]}
    skips = get_skip_status(status)
    assert skips == {"epochs_skipped": (("deadline", 1), ("inputs_unavailable", 0), ("loop_late", 0), ("overrun", 3)),
                     "last_skipped": (120, "overrun")}
    assert get_skip_status({}) == {"epochs_skipped": (), "last_skipped": None}
    sources = make_sources()
    sources.status = replace(sources.status, **skips)
    store = SQLiteStore(tmp_path / "n.sqlite")
    sock = tmp_path / "run" / "admin.sock"
    server = start_admin_server(sock, store, sources, "9.9.9")
    try:
        with open_admin_channel(sock) as channel:
            st = admin_pb2_grpc.AdminServiceStub(channel).GetStatus(admin_pb2.GetStatusRequest(), timeout=5)
    finally:
        server.stop(0.2)
        store.close()
    assert [(s.reason, s.count) for s in st.epochs_skipped] == list(skips["epochs_skipped"])
    assert (st.has_last_skipped, st.last_skipped_epoch, st.last_skipped_reason) == (True, 120, "overrun")
