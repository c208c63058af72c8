"""Admin service on its UNIX socket (mode 0600, never TCP) and the public API over TLS."""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.api.admin import start_admin_server
from node.api.client import open_admin_channel, open_api_channel
from node.api.errors import ApiError, get_field_violations
from node.api.server import ApiServerConfig, start_api_server
from node.api.sources import ChainStatusInfo, KeySetStatusInfo, NodeStatusInfo, PeerInfo, ReshareStatusInfo
from node.pb.clearing.admin.v1 import admin_pb2, admin_pb2_grpc
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from node.store import SQLiteStore
from tests.api.conftest import EPOCHS, fill_store, make_sources
from tests.store.factories import make_evidence


@pytest.fixture
def admin(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = SQLiteStore(tmp_path / "n.sqlite")
    fill_store(store)
    store.record_signing(EPOCHS[-1], b"\x01" * 32)
    store.put_evidence(make_evidence(2, 1))
    sources = make_sources()
    sources.status = NodeStatusInfo(7, 2, "peer2", False, chains=(ChainStatusInfo(31337, 10, 8, True, 1),),
                                    api_address="127.0.0.1:1",
                                    keysets=(KeySetStatusInfo(1, 2, 4, 3, True, False),
                                             KeySetStatusInfo(2, -1, 4, 3, False, True)),
                                    reshares=(ReshareStatusInfo(5, 2, "failed", 40, 2, "attempt 4: no deal"),))
    sources.peers = (PeerInfo("peer0", ("/ip4/127.0.0.1/tcp/1",), 0), PeerInfo("peer9"))
    sock = tmp_path / "run" / "admin.sock"
    server = start_admin_server(sock, store, sources, "9.9.9")
    channel = open_admin_channel(sock)
    yield admin_pb2_grpc.AdminServiceStub(channel), sock, sources
    channel.close()
    server.stop(0.2)
    store.close()


def test_admin_socket_is_private_and_answers_status(admin) -> None:  # type: ignore[no-untyped-def]
    stub, sock, _ = admin
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    st = stub.GetStatus(admin_pb2.GetStatusRequest(), timeout=5)
    assert (st.version, st.network_id, st.validator_index, st.peer_id) == ("9.9.9", 7, 2, "peer2")
    assert (st.has_latest_state, st.latest_epoch, st.has_last_signed, st.last_signed_epoch) == (True, 3, True, 3)
    assert (st.peer_count, st.evidence_count, st.syncing) == (2, 1, False)
    assert [(c.chain_id, c.head_block, c.pinned_block, c.healthy) for c in st.chains] == [(31337, 10, 8, True)]
    assert [(k.keyset_id, k.index, k.n, k.threshold, k.has_share, k.pending) for k in st.keysets] == [
        (1, 2, 4, 3, True, False), (2, -1, 4, 3, False, True)]
    assert [(r.proposal_id, r.keyset_id, r.state, r.activation_epoch, r.attempts, r.error) for r in st.reshares] == [
        (5, 2, "failed", 40, 2, "attempt 4: no deal")]


def test_admin_peers_evidence_and_reread(admin) -> None:  # type: ignore[no-untyped-def]
    stub, _, sources = admin
    peers = stub.ListPeers(admin_pb2.ListPeersRequest(), timeout=5).peers
    assert [(p.peer_id, list(p.addrs), p.validator_index) for p in peers] == [
        ("peer0", ["/ip4/127.0.0.1/tcp/1"], 0), ("peer9", [], -1)]
    ev = stub.ListEvidence(admin_pb2.ListEvidenceRequest(), timeout=5).evidence
    assert [(e.kind, e.epoch, e.signer_index, e.first) for e in ev] == [
        ("equivocation", 2, 1, make_evidence(2, 1).first)]
    resp = stub.TriggerReread(admin_pb2.TriggerRereadRequest(epoch=5, reason="split digest"), timeout=5)
    assert resp.accepted and sources.reread_requests[0][:2] == (5, "split digest")


def test_invalid_admin_requests(admin) -> None:  # type: ignore[no-untyped-def]
    stub, _, sources = admin
    with pytest.raises(grpc.RpcError) as err:
        stub.TriggerReread(admin_pb2.TriggerRereadRequest(reason="x" * 201), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in get_field_violations(err.value)] == ["reason"]
    with pytest.raises(grpc.RpcError) as err:
        stub.ListEvidence(admin_pb2.ListEvidenceRequest(limit=10_001), timeout=5)
    assert [v.field for v in get_field_violations(err.value)] == ["limit"]
    assert sources.reread_requests == []


def test_invalid_admin_socket_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "admin.sock"
    path.write_text("not a socket")
    store = SQLiteStore(tmp_path / "n.sqlite")
    with pytest.raises(ApiError, match="not a socket"):
        start_admin_server(path, store, make_sources(), "1")
    store.close()
    assert path.read_text() == "not a socket"


def make_tls_files(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def test_api_over_tls(tmp_path: Path) -> None:
    cert, key = make_tls_files(tmp_path)
    store = SQLiteStore(tmp_path / "n.sqlite")
    fill_store(store)
    server = start_api_server(ApiServerConfig(listen="localhost:0", tls_cert_file=str(cert), tls_key_file=str(key)),
                              store, make_sources())
    try:
        with open_api_channel(f"localhost:{server.port}", ca_file=str(cert)) as channel:
            state = api_pb2_grpc.MarginServiceStub(channel).GetSignedState(api_pb2.GetSignedStateRequest(), timeout=5)
            assert state.state.epoch == EPOCHS[-1]
        with grpc.insecure_channel(f"localhost:{server.port}") as plain, pytest.raises(grpc.RpcError):
            api_pb2_grpc.MarginServiceStub(plain).GetSignedState(api_pb2.GetSignedStateRequest(), timeout=2)
    finally:
        server.stop(0.2)
        store.close()


def test_invalid_tls_config_needs_cert_and_key(tmp_path: Path) -> None:
    cert, _ = make_tls_files(tmp_path)
    store = SQLiteStore(tmp_path / "n.sqlite")
    with pytest.raises(ApiError, match=r"tls_cert_file and api\.tls_key_file"):
        start_api_server(ApiServerConfig(listen="127.0.0.1:0", tls_cert_file=str(cert)), store, make_sources())
    store.close()
