"""node.web over real HTTP on loopback: the JSON endpoints over a real SQLite store of signed states
(the API's snapshot cache and converters), the what-if path, errors naming the field, the static
files and nothing else of the filesystem, and the security headers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.api.convert import leaf_to_margin
from node.api.sandbox import Sandbox, SandboxConfig
from node.api.server import WHATIF_TASK
from node.api.snapshot import SnapshotCache
from node.metrics import EpochClock
from node.store import SQLiteStore
from node.web.server import MAX_BODY_BYTES, WebServer
from node.web.views import WebViews, get_scenarios
from tests.api.conftest import make_sources
from tests.store.factories import make_account, make_state

WHATIF = {"market": {"spot": {"BTC": 100000.0}, "forwards": [{"underlying": "BTC", "days_to_expiry": 30,
                                                              "price": 100400.0}],
                     "asset_prices": {"USDC": 1.0, "BTC": 100000.0}},
          "positions": [{"kind": "option", "underlying": "BTC", "days_to_expiry": 30, "strike": 110000,
                         "right": "call", "vol": 0.52, "quantity": -1}],
          "collateral": {"USDC": 10000}, "params": None}


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, SQLiteStore]]:
    store = SQLiteStore(tmp_path / "node.sqlite")
    for epoch in (3, 4, 6):  # epoch 5 never signed
        store.put_signed_state(*make_state(epoch, 12))
    snapshots = SnapshotCache(store)
    snapshots.start()
    clock = EpochClock(genesis_time=1000.0, period_s=10.0, now=lambda: 1000.0 + 8 * 10.0 + 1)  # wall-clock epoch 8
    sandbox = Sandbox(WHATIF_TASK, SandboxConfig(workers=1, nice=0, idle=False)).start()
    server = WebServer("127.0.0.1:0", WebViews(store, snapshots, make_sources(), None, clock, sandbox)).start()
    yield f"http://127.0.0.1:{server.port}", store
    server.stop()
    sandbox.stop()
    snapshots.stop()
    store.close()


def call(url: str, body: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            raw, code, headers = resp.read(), resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        raw, code, headers = err.read(), err.code, dict(err.headers)
    ctype = headers.get("Content-Type", "")
    return code, json.loads(raw) if ctype.startswith("application/json") else raw.decode(), headers


def test_timeline_marks_signed_skipped_and_pending_epochs(web: tuple[str, SQLiteStore]) -> None:
    base, _ = web
    code, doc, headers = call(base + "/api/epochs?limit=10")
    assert code == 200 and "default-src 'self'" in headers["Content-Security-Policy"]
    assert [(e["epoch"], e["status"]) for e in doc["epochs"]] == [
        (7, "pending"), (6, "signed"), (5, "pending"), (4, "signed"), (3, "signed")]
    six = doc["epochs"][1]
    assert six["signers"] == [0, 1, 3] and six["keyset_id"] == 1 and six["leaf_count"] == 12
    assert six["params_hash"].startswith("0x") and six["published"] == {}
    assert call(base + "/api/epochs?limit=2")[1]["epochs"][-1]["epoch"] == 6
    code, doc, _ = call(base + "/api/epochs?limit=0")
    assert code == 400 and doc["error"].startswith("limit:")
    assert call(base + "/api/epochs?limit=x")[1]["error"] == "limit: expected an integer, got 'x'"


def test_account_document_matches_the_api_converters(web: tuple[str, SQLiteStore]) -> None:
    base, store = web
    account = make_account(5)
    code, doc, _ = call(f"{base}/api/accounts/0x{account.hex().upper()}")
    assert code == 200 and doc["epoch"] == 6
    margin = leaf_to_margin(store.get_leaf(6, account))
    assert doc["initial_margin"] == margin.initial_margin_micro_usd and doc["equity"] == margin.equity_micro_usd
    assert doc["risk_array"] == list(margin.risk_array_micro_usd) and len(doc["risk_array"]) == 23
    assert doc["worst_scenario"] == margin.worst_scenario == 21
    assert doc["scenarios"] == get_scenarios() and doc["scenarios"][21] == {"s": 21, "k": -6, "vol": "none",
                                                                           "weight": 0.35}
    assert "joint" in doc["risk_array_kind"] and doc["proof_length"] > 0 and doc["proof_on_chain"] == {}
    assert call(f"{base}/api/accounts/0x{account.hex()}?epoch=3")[1]["epoch"] == 3
    code, doc, _ = call(f"{base}/api/accounts/0x{account.hex()}?epoch=5")
    assert code == 404 and doc["error"] == "epoch: no signed state for epoch 5"
    code, doc, _ = call(f"{base}/api/accounts/0x{'ab' * 20}")
    assert code == 404 and doc["error"].startswith("account: no leaf")
    from bridges.book_merge import AccountFailure

    state6 = store.get_signed_state(6)
    assert state6 is not None
    store.put_signed_state(state6, store.get_leaves(6), failures=[AccountFailure(
        "0x" + "ab" * 20, "collateral.ETH", "home oracle.asset.ETH: updated at 7, older than 600s")])
    code, doc, _ = call(f"{base}/api/accounts/0x{'ab' * 20}")
    assert code == 404 and doc["error"].endswith(
        "in epoch 6: its margin could not be computed (collateral.ETH: home oracle.asset.ETH: updated at 7, "
        "older than 600s)")
    code, doc, _ = call(f"{base}/api/accounts/0x12")
    assert code == 400 and doc["error"] == "account: must be 0x followed by 40 hex digits"


def test_at_risk_ranks_by_health(web: tuple[str, SQLiteStore]) -> None:
    base, _ = web
    code, doc, _ = call(base + "/api/accounts/at-risk?limit=4")
    assert code == 200 and doc["epoch"] == 6 and len(doc["accounts"]) == 4
    assert doc["ranked"] == 11  # of 12 leaves: the one with no maintenance margin cannot be liquidated
    health = [a["health_bps"] for a in doc["accounts"]]
    assert health == sorted(health)
    assert all(a["liquidatable"] == (a["equity"] < a["maintenance_margin"]) for a in doc["accounts"])


def test_whatif_posts_to_the_simulate_path(web: tuple[str, SQLiteStore]) -> None:
    from node.api import whatif

    base, _ = web
    code, doc, _ = call(base + "/api/whatif", json.dumps(WHATIF).encode())
    assert code == 200
    expected = json.loads(whatif.format_result_json(whatif.compute_simulation(whatif.load_payload(
        "whatif_json", json.dumps(WHATIF)))))
    assert doc["result"] == expected and doc["result"]["initial_margin"] > 0
    bad = dict(WHATIF, positions=[dict(WHATIF["positions"][0], vol=-1)])
    code, doc, _ = call(base + "/api/whatif", json.dumps(bad).encode())
    assert code == 400 and doc["violations"] and "vol" in doc["violations"][0]["field"]
    code, doc, _ = call(base + "/api/whatif", b"{not json")
    assert code == 400 and doc["violations"][0]["field"] == "whatif_json"
    code, doc, _ = call(base + "/api/whatif", b"x" * (MAX_BODY_BYTES + 1))
    assert code == 413


def test_static_files_only(web: tuple[str, SQLiteStore]) -> None:
    base, _ = web
    code, page, headers = call(base + "/")
    assert code == 200 and '<script src="/static/app.js">' in page and headers["Content-Type"].startswith("text/html")
    code, script, headers = call(base + "/static/app.js")
    assert code == 200 and "renderAccount" in script and headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/views.py", "/etc/passwd",
                 "/static/.hidden.js", "/api/nothing"):
        assert call(base + path)[0] == 404, path
