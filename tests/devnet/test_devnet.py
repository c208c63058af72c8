"""End to end on the devnet (the README's main job): two anvil chains, four validator processes with
the dealerless key, the demo book, epochs signed and published on both chains, and a protocol-side
client that reads margin over gRPC and verifies the proof against each chain's registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.devnet.runner import DevnetOptions, run_devnet


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home: Path = tmp_path_factory.mktemp("devnet")
    lines: list[str] = []
    result = run_devnet(DevnetOptions(home=home, epochs=5, epoch_period_s=3.0, crash_epoch=2), lines.append)
    assert result, "\n".join(lines)
    return {**result, "home_dir": str(home)}


@pytest.mark.slow
def test_every_epoch_signed_identically_and_published_on_both_chains(summary: dict) -> None:
    assert summary["epochs_observed"] >= 5
    assert summary["epochs_signed"] == summary["epochs_observed"]
    assert set(summary["published"]) == {"31337", "31338"}
    for epochs in summary["published_epochs"].values():
        assert epochs == sorted(set(epochs)) and len(epochs) >= summary["epochs_observed"] - 1
    assert all(len(s) >= 3 for s in summary["signers_by_epoch"].values())
    assert summary["publish_gas"]["max"] is not None and summary["publish_gas"]["max"] < 200_000


@pytest.mark.slow
def test_devnet_network_bounds_quote_age_in_every_home(summary: dict) -> None:
    from node.config import load_config
    from node.network_file import load_network_file

    home = Path(summary["home_dir"])
    assert load_network_file(home / "network.json").max_quote_age_s == 86_400
    configs = sorted(p.parent for p in home.glob("v*/config.toml"))
    assert len(configs) == 4
    assert all(load_config(h, env={}).get("consensus", "max_quote_age_s") == 86_400 for h in configs)


@pytest.mark.slow
def test_grpc_margin_proofs_verify_against_every_chain_registry(summary: dict) -> None:
    assert summary["proof_verified_on_chain"] is True
    for account in summary["accounts"].values():
        assert account["proof_verified_on_chain"] == {"31337": True, "31338": True}


@pytest.mark.slow
def test_hedged_account_needs_far_less_than_its_legs(summary: dict) -> None:
    hedged = summary["accounts"]["hedged"]["initial_margin"]
    assert 0 < hedged < 0.5 * summary["hedged_sum_of_leg_margins"]
    assert hedged < summary["accounts"]["unhedged"]["initial_margin"]


@pytest.mark.slow
def test_mark_change_flags_fragile_account_liquidatable_on_both_chains(summary: dict) -> None:
    crash = summary["mark_change_after_epoch"]
    flagged = summary["fragile_first_liquidatable_epoch"]
    assert crash is not None and flagged is not None
    # the first epoch whose pinned home-chain block holds the new marks (whatever the load): between the
    # first epoch that pins the change's first transaction and the one that pins its last
    first, last = summary["mark_change_pinned_epochs"]
    assert crash < first <= flagged <= last
    before = [e for e in summary["im_by_epoch"] if int(e) <= crash]
    assert before and all(summary["im_by_epoch"][e]["fragile"] < summary["accounts"]["fragile"]["initial_margin"]
                          for e in before)
    fragile = summary["accounts"]["fragile"]
    assert summary["checked_epoch"] >= flagged
    assert fragile["liquidatable"] is True
    assert fragile["liquidatable_on_chain"] == {"31337": True, "31338": True}
    assert summary["accounts"]["hedged"]["liquidatable_on_chain"] == {"31337": False, "31338": False}


def get_children(pid: int) -> set[int]:
    """Pids whose parent is `pid` (from /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_sigterm_stops_every_validator_and_chain(tmp_path: Path) -> None:
    """`clearingd devnet` (no --epochs) stopped by SIGTERM once its validators run: it exits, and none
    of its children (two anvil chains, four validators) survives it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    home = tmp_path / "devnet"
    log = (tmp_path / "devnet.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "node.cli.main", "devnet", "--home", str(home), "--no-crash"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 240
        children: set[int] = set()
        while time.monotonic() < deadline and len(children) < 6:  # 2 chains + 4 validators
            assert proc.poll() is None, (tmp_path / "devnet.log").read_text()[-2000:]
            if "validators: 4 processes" in (tmp_path / "devnet.log").read_text():
                children = get_children(proc.pid)
            time.sleep(0.5)
        assert len(children) == 6, (children, (tmp_path / "devnet.log").read_text()[-2000:])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) in (0, 130)
        deadline = time.monotonic() + 10
        while any(is_alive(c) for c in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [c for c in children if is_alive(c)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
