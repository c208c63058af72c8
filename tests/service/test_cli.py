"""Operator commands: `init` (layout, modes, refusal to overwrite), `keys`, `version`, and a real node
started with `clearingd start` (one-validator network with a DKG share, fake chain inputs) read
through `status`, `/readyz`, `/metrics` and the gRPC API, stopped by SIGTERM and by SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from bridges.anvil import get_free_port
from bridges.statecodec import compute_state_digest
from node.cli.main import main
from node.crypto import threshold
from node.crypto.dkg_bus import run_dkg_in_process
from node.crypto.keyshare import write_share_keystore
from node.crypto.keystore import Secret
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
PASS = "correct horse battery"


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node.cli.main", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def make_home(tmp_path: Path, with_share: bool = True) -> tuple[Path, Path]:
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASS + "\n")
    os.chmod(pass_file, 0o600)
    args = ["init", "--home", str(tmp_path / "home"), "--passphrase-file", str(pass_file), "--scrypt-n", "1024"]
    if with_share:
        share = tmp_path / "share1.json"
        write_share_keystore(share, run_dkg_in_process(1, 1).results["1"], Secret(PASS.encode()), scrypt_n=1024)
        args += ["--share-keystore", str(share)]
    assert main(args) == 0
    return tmp_path / "home", pass_file


def test_init_layout_modes_and_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home, _ = make_home(tmp_path)
    capsys.readouterr()
    for folder in ("", "keys", "data", "run"):
        assert stat.S_IMODE((home / folder).stat().st_mode) == 0o700, folder
    for name in ("operator", "p2p", "share"):
        assert stat.S_IMODE((home / "keys" / f"{name}.json").stat().st_mode) == 0o600
        assert PASS not in (home / "keys" / f"{name}.json").read_text()
    assert stat.S_IMODE((home / "config.toml").stat().st_mode) == 0o600
    assert main(["keys", "list", "--home", str(home), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    kinds = {k["name"]: k for k in listed["keystores"]}
    assert set(kinds) == {"operator", "p2p", "share"}
    assert kinds["operator"]["address"].startswith("0x") and kinds["p2p"]["peer_id"].startswith("12D3")
    assert kinds["share"]["index"] == 1 and kinds["share"]["threshold"] == 1
    assert kinds["share"]["public_share"] == kinds["share"]["group_public_key"]  # 1-of-1: share key = group key
    from node.config import parse_keyset_record  # what a joining validator configures from it

    record = parse_keyset_record(kinds["share"]["keyset_record"], kinds["share"]["keyset_id"],
                                 bytes.fromhex(kinds["share"]["group_public_key"][2:]))
    assert "0x" + record.get_public_share(1).hex() == kinds["share"]["public_share"]
    assert main(["keys", "show", "operator", "--home", str(home), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["address"] == kinds["operator"]["address"]


def test_invalid_init_over_an_existing_home_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home, pass_file = make_home(tmp_path, with_share=False)
    before = {p.name: p.read_bytes() for p in (home / "keys").iterdir()}
    config = (home / "config.toml").read_bytes()
    code = main(["init", "--home", str(home), "--passphrase-file", str(pass_file), "--scrypt-n", "1024"])
    assert code == 2 and "refusing to overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (home / "keys").iterdir()} == before
    assert (home / "config.toml").read_bytes() == config
    assert main(["init", "--home", str(home), "--passphrase-file", str(pass_file), "--scrypt-n", "1024",
                 "--force"]) == 0
    assert (home / "keys" / "operator.json").read_bytes() != before["operator.json"]


def test_invalid_init_without_passphrase(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLEARING_KEYSTORE_PASSPHRASE", raising=False)
    monkeypatch.delenv("CLEARING_KEYS_PASSPHRASE_FILE", raising=False)
    assert main(["init", "--home", str(tmp_path / "h")]) == 2
    assert "CLEARING_KEYSTORE_PASSPHRASE is not set" in capsys.readouterr().err
    assert not (tmp_path / "h" / "keys").exists()


def test_version_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["store_schema"] == 3 and "clearing.api.v1" in doc["api"] and doc["libraries"]["grpcio"]


def test_invalid_status_without_a_node_home(tmp_path: Path) -> None:
    result = run_cli(["status", "--home", str(tmp_path), "--json"])
    assert result.returncode == 2 and json.loads(result.stdout)["error"].startswith(f"no node home at {tmp_path}")


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def node_env(home: Path, genesis: float) -> dict[str, str]:
    address = json.loads(run_cli(["keys", "show", "operator", "--home", str(home), "--json"]).stdout)["address"]
    api, metrics, p2p = get_free_port(), get_free_port(), get_free_port()
    return {"CLEARING_VALIDATOR_SET_OPERATORS": address, "CLEARING_CONSENSUS_INPUTS": "fake",
            "CLEARING_CONSENSUS_GENESIS_TIME": str(genesis), "CLEARING_CONSENSUS_EPOCH_PERIOD_S": "1",
            "CLEARING_P2P_LISTEN": f"/ip4/127.0.0.1/tcp/{p2p}", "CLEARING_API_LISTEN": f"127.0.0.1:{api}",
            "CLEARING_METRICS_LISTEN": f"127.0.0.1:{metrics}"}


def get_status(home: Path) -> dict | None:
    result = run_cli(["status", "--home", str(home), "--json"], timeout=30)
    return json.loads(result.stdout) if result.returncode == 0 else None


@pytest.mark.slow
def test_start_serves_real_signed_states_and_stops_cleanly(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    env = node_env(home, time.time())
    log = (tmp_path / "node.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "node.cli.main", "start", "--home", str(home)], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
    try:
        status = wait_for(lambda: (s := get_status(home)) and s["has_latest_state"] and s["latest_epoch"] >= 2 and s,
                          90, "signed states")
        assert status["validator_index"] == 0 and status["has_last_signed"]
        # skipped rounds by reason come from status.json (which may trail the store): poll for them
        status = wait_for(lambda: (s := get_status(home)) and s["epochs_skipped"] and s, 30, "skip counters")
        assert {s["reason"] for s in status["epochs_skipped"]} == {"overrun", "deadline", "inputs_unavailable",
                                                                   "loop_late"}
        text_status = run_cli(["status", "--home", str(home)], timeout=30)
        assert text_status.returncode == 0 and "epochs skipped: " in text_status.stdout
        metrics_url = "http://" + env["CLEARING_METRICS_LISTEN"]

        def is_ready() -> bool:  # /readyz follows the age of status.json: poll, do not read it once
            try:
                with urllib.request.urlopen(metrics_url + "/readyz", timeout=5) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_for(is_ready, 30, "/readyz 200")

        def read_metrics() -> str:
            with urllib.request.urlopen(metrics_url + "/metrics", timeout=5) as resp:
                return resp.read().decode()

        # the engine's counters reach /metrics through status.json, rewritten every status_interval_s:
        # it may trail the store (which the wait above reads) by one interval
        text = wait_for(lambda: (t := read_metrics()) and "states_aggregated" in t and t, 10, "engine counters")
        assert "clearing_epoch " in text and 'clearing_consensus_events_total{event="states_aggregated"}' in text
        with grpc.insecure_channel(env["CLEARING_API_LISTEN"]) as channel:
            stub = api_pb2_grpc.MarginServiceStub(channel)
            state = stub.GetSignedState(api_pb2.GetSignedStateRequest(), timeout=5).state
            group = stub.ListValidators(api_pb2.ListValidatorsRequest(), timeout=5)
        digest = compute_state_digest(state.network_id, state.keyset_id, state.epoch, state.inputs_digest,
                                      state.params_hash, state.root, state.leaf_count)
        assert digest == state.digest and threshold.group_verify(group.group_public_key, digest, state.signature)
        assert group.validators[0].is_self and group.threshold == 1
        missing = run_cli(["margin", "get", "0x" + "11" * 20, "--home", str(home)], env=env)
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
        log_text = (tmp_path / "node.log").read_text()
        for line in log_text.splitlines():
            json.loads(line)  # every log line is one JSON object
        assert PASS not in log_text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not (home / "run" / "admin.sock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


@pytest.mark.slow
def test_node_killed_with_sigkill_restarts_and_goes_on_signing(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    env = {**os.environ, **node_env(home, time.time())}
    cmd = [sys.executable, "-m", "node.cli.main", "start", "--home", str(home)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    started = wait_for(lambda: (s := get_status(home)) and s["has_last_signed"] and s, 90, "first signature")
    first = wait_for(lambda: (s := get_status(home)) and s["last_signed_epoch"] > started["last_signed_epoch"] and s,
                     60, "a second signature")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        restarted = wait_for(lambda: (s := get_status(home)) and s["last_signed_epoch"] > first["last_signed_epoch"]
                             and s, 90, "a signature after the restart")
        wait_for(lambda: (s := get_status(home)) and s["last_signed_epoch"] > restarted["last_signed_epoch"] and s,
                 60, "a second signature after the restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    from node.crypto.keyshare import load_share_keystore
    from node.store import SQLiteStore

    group = load_share_keystore(home / "keys" / "share.json", Secret(PASS.encode())).keyset.group_public_key
    with SQLiteStore(home / "data" / "node.sqlite") as store:
        assert store.check_integrity() == "ok"
        states = store.list_signed_states(0, 10_000)
        epochs = [s.epoch for s in states]
        assert epochs == sorted(set(epochs)) and len(epochs) >= 4
        assert any(e <= first["last_signed_epoch"] for e in epochs) and epochs[-1] > first["last_signed_epoch"]
        assert all(threshold.group_verify(group, s.digest, s.signature) for s in states)


def test_margin_get_from_a_read_replica(tmp_path: Path) -> None:
    """`start --no-validator` serves an existing store; `margin get --json` returns a verifiable proof."""
    from eth_utils import to_checksum_address

    from bridges.merkle import verify_proof
    from node.store import SQLiteStore
    from tests.store.factories import get_test_keyset, make_account, make_state

    home, _ = make_home(tmp_path, with_share=False)
    with SQLiteStore(home / "data" / "node.sqlite") as store:
        store.put_signed_state(*make_state(4, 50))
    api = f"127.0.0.1:{get_free_port()}"
    env = {"CLEARING_API_LISTEN": api, "CLEARING_METRICS_ENABLED": "false", "CLEARING_START_NO_VALIDATOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "node.cli.main", "start", "--home", str(home)], cwd=REPO,
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        account = "0x" + make_account(7).hex()
        result = wait_for(lambda: (r := run_cli(["margin", "get", account, "--home", str(home), "--json"], env=env))
                          .returncode == 0 and r, 60, "margin get")
        doc = json.loads(result.stdout)
        assert doc["margin"]["account"] == to_checksum_address(account) and doc["margin"]["epoch"] == 4
        assert doc["leaf_index"] == 6 and doc["leaf_values"]["account"] == to_checksum_address(account)
        leaf, root = bytes.fromhex(doc["leaf"][2:]), bytes.fromhex(doc["state"]["root"][2:])
        from bridges.merkle import make_keccak

        k = make_keccak()
        assert verify_proof(root, k(k(leaf)), [bytes.fromhex(p[2:]) for p in doc["proof"]])
        assert threshold.group_verify(get_test_keyset()[0], bytes.fromhex(doc["state"]["digest"][2:]),
                                      bytes.fromhex(doc["state"]["signature"][2:]))
        text = run_cli(["margin", "get", account, "--home", str(home)], env=env)
        assert text.returncode == 0 and f"{to_checksum_address(account)} at epoch 4" in text.stdout
        bad = run_cli(["margin", "get", "0x123", "--home", str(home)], env=env)
        assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "account" in bad.stderr
        status = get_status(home)
        assert status is not None and status["latest_epoch"] == 4 and status["validator_index"] == -1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_invalid_start_without_a_share_names_the_fix(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path, with_share=False)
    result = run_cli(["start", "--home", str(home)])
    assert result.returncode == 2 and "keys import-share" in result.stderr and "--no-validator" in result.stderr
    bad = run_cli(["start", "--home", str(home), "--set", "api.max_workers=lots"])
    assert bad.returncode == 2 and "api.max_workers: expected an integer" in bad.stderr


def test_version_flag() -> None:
    out = run_cli(["--version"])
    assert out.returncode == 0 and out.stdout.startswith("clearingd ")


def test_invalid_status_of_a_stopped_node_is_quick_and_says_what_to_do(tmp_path: Path) -> None:
    home, _ = make_home(tmp_path)
    started = time.monotonic()
    out = run_cli(["status", "--home", str(home), "--json"])
    assert out.returncode == 1 and time.monotonic() - started < 6  # no gRPC wait: the socket is missing
    doc = json.loads(out.stdout)
    assert "not running" in doc["error"] and f"clearingd start --home {home}" in doc["error"]
    import socket

    stale = home / "run" / "admin.sock"  # a socket file left behind, nobody listening
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    out = run_cli(["status", "--home", str(home), "--json"])
    assert out.returncode == 1 and "nobody listens" in json.loads(out.stdout)["error"]
    text = run_cli(["status", "--home", str(home)])
    assert text.stdout == "" and text.stderr.startswith("error: the node is not running")


def test_invalid_missing_home_is_named_and_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for argv in (["start", "--home", str(missing)], ["status", "--home", str(missing), "--json"],
                 ["dkg", "--home", str(missing), "--json"]):
        out = run_cli(argv)
        assert out.returncode == 2, argv
        assert f"no node home at {missing}" in out.stderr and "clearingd init" in out.stderr, argv
        assert not missing.exists(), argv
    assert "clearingd init" in json.loads(run_cli(["status", "--home", str(missing), "--json"]).stdout)["error"]


def test_init_leaves_the_mode_of_an_existing_folder(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o750)
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASS + "\n")
    os.chmod(pass_file, 0o600)
    assert main(["init", "--home", str(home), "--passphrase-file", str(pass_file), "--scrypt-n", "1024"]) == 0
    assert stat.S_IMODE(home.stat().st_mode) == 0o750  # not created here: left alone
    assert stat.S_IMODE((home / "keys").stat().st_mode) == 0o700  # created here


def test_gov_signs_with_the_keystore_init_wrote(tmp_path: Path) -> None:
    """`gov` reads the operator keystore of the home (init's format) with the home's passphrase file."""
    from node.cli.gov import get_operator_key
    from node.cli.keys import describe_keystore

    home, _ = make_home(tmp_path, with_share=False)
    import argparse

    from eth_account import Account

    args = argparse.Namespace(key_file=None, passphrase_file="", dev_key=None, home=str(home))
    key = get_operator_key(args)
    assert Account.from_key(key).address == describe_keystore(home / "keys" / "operator.json")["address"]
