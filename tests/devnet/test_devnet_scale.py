"""`clearingd devnet --accounts N` as a real process: N load accounts seeded by real transactions on both
anvil chains before the validators start, trades and mark moves every epoch while they run, every epoch
signed at every validator, and the summary's epoch latencies (epoch start -> state held at every
validator, from each validator's status.json)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ACCOUNTS = 300
EPOCHS = 4
RUN_TIMEOUT_S = 1200


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home: Path = tmp_path_factory.mktemp("devnet-scale")
    proc = subprocess.run(
        [sys.executable, "-m", "node.cli.main", "devnet", "--home", str(home), "--accounts", str(ACCOUNTS),
         "--epochs", str(EPOCHS), "--json"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_every_epoch_is_signed_at_every_validator(summary: dict) -> None:
    assert summary["epochs_observed"] >= EPOCHS
    assert summary["epochs_signed"] == summary["epochs_observed"]
    assert summary["unsigned_epochs"] == []
    assert all(summary["identical_by_epoch"].values())


@pytest.mark.slow
def test_load_accounts_are_in_every_signed_state(summary: dict) -> None:
    load = summary["load"]
    assert load["accounts"] == ACCOUNTS
    assert load["trades"] == 2 * 5 * (ACCOUNTS // 2)  # two chains, five rounds of disjoint pairs
    demo_and_house = len(summary["accounts"]) + 1
    assert all(n == ACCOUNTS + demo_and_house for n in summary["leaf_count_by_epoch"].values())
    traffic = load["traffic"]
    assert traffic["epochs"] >= 1 and traffic["trades"] > 0 and traffic["transactions"] > 0
    assert traffic["failures"] == 0, traffic["last_error"]


@pytest.mark.slow
def test_summary_carries_epoch_latencies(summary: dict) -> None:
    latencies = summary["epoch_latency_ms"]
    assert set(latencies) == set(summary["identical_by_epoch"])
    assert summary["epoch_latency_unknown"] == []
    values = sorted(latencies.values())
    assert all(isinstance(v, int) and 0 < v < 60_000 for v in values)
    assert summary["epoch_latency_p50_ms"] == round(statistics.median(values))
    assert min(values) <= summary["epoch_latency_p50_ms"] <= summary["epoch_latency_p90_ms"] <= max(values)
