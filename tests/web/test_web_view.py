"""The web view in a real browser (headless Chromium over its DevTools protocol) against a live devnet
(real chains, four `clearingd start` processes): the rendered epoch timeline, the hedged and fragile
demo accounts' pages (margin, heat-map cells, proofs checked by both registries; the fragile account
liquidatable after the devnet's mark change) and the what-if form, each compared with what the node's
gRPC API answers. Screenshots are saved in the test's temp folder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from node.api.client import get_margin, open_api_channel
from node.devnet.seed import get_demo_accounts
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from tests.service.live_devnet import LiveDevnet, wait_for
from tests.web.browser import Browser, find_chromium

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_chromium() is None, reason="chromium missing "
                                                   "(scripts/setup.sh installs Debian's chromium)")]
CHAINS = ("31337", "31338")


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDevnet]:
    net = LiveDevnet(tmp_path_factory.mktemp("web-devnet"), crash_epoch=3).start()
    yield net
    net.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: CLEARING_SCREENSHOT_DIR when set (docs/screenshots holds a committed
    set made that way), else a temporary folder."""
    keep = os.environ.get("CLEARING_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(tmp_path_factory.mktemp("chromium") / "profile") as b:
        yield b


def grpc_call(address: str, method: str, request: Any) -> Any:
    channel = open_api_channel(address)
    try:
        return getattr(api_pb2_grpc.MarginServiceStub(channel), method)(request, timeout=10)
    finally:
        channel.close()


def get_report(address: str, account: str, epoch: int | None) -> Any:
    channel = open_api_channel(address)
    try:
        return get_margin(channel, account, epoch).report
    finally:
        channel.close()


def usd_text(text: str) -> float:
    return float(text.replace(",", ""))


def open_account(browser: Browser, url: str, account: str, until: str = "true", timeout_s: float = 60) -> dict:
    """Open the account page (again, while `until`, a JS expression over the rendered page, is false)."""
    def rendered() -> dict | None:
        browser.open("about:blank")  # a full load each time: the page fetches the account once per load
        browser.open(f"{url}#/account/{account}")
        page = browser.wait_for("document.getElementById('account-im') && ({epoch: Number(document.getElementById("
                                "'account').dataset.epoch), im: document.getElementById('account-im').dataset.microUsd})")
        return page if browser.evaluate(until) else None

    return wait_for(rendered, timeout_s, f"{account}'s page with {until}", poll_s=2.0)


def test_epoch_timeline_shows_the_signed_epochs(devnet: LiveDevnet, browser: Browser, shots: Path) -> None:
    devnet.wait_epochs(3)
    url = devnet.web[0]
    browser.open(url)
    rows_js = ("[...document.querySelectorAll('#timeline tbody tr')].map(r => ({epoch: Number(r.dataset.epoch), "
               "status: r.dataset.status, signers: r.querySelector('.signers')?.textContent, gas: Object.fromEntries("
               "[...r.querySelectorAll('td.published')].map(c => [c.dataset.chain, Number(c.dataset.gas)]))}))")

    def published_rows() -> list[dict] | None:
        found = browser.evaluate(rows_js) or []
        both = [r for r in found if r["status"] == "signed" and set(r["gas"]) == set(CHAINS)]
        return found if len(both) >= 2 else None

    rows = wait_for(published_rows, 60, "two signed epochs published on both chains in the timeline")
    signed = [r for r in rows if r["status"] == "signed"]
    assert [r["epoch"] for r in rows] == sorted((r["epoch"] for r in rows), reverse=True)
    for row in signed:
        state = grpc_call(devnet.apis[0], "GetSignedState", api_pb2.GetSignedStateRequest(epoch=row["epoch"])).state
        assert row["signers"] == ", ".join(str(s) for s in state.signers)
        assert all(100_000 < gas < 250_000 for gas in row["gas"].values())
    # the three demo accounts and the house (the venue that took the other side of every demo trade)
    browser.wait_for("document.querySelectorAll('#at-risk tbody tr').length === 4")
    browser.screenshot(shots / "epoch-timeline.png")
    assert (shots / "epoch-timeline.png").stat().st_size > 10_000


def test_hedged_account_page_matches_the_api(devnet: LiveDevnet, browser: Browser, shots: Path) -> None:
    devnet.wait_epochs(3)
    account = get_demo_accounts()["hedged"]
    verified = " && ".join(f"document.querySelector('#proofs tr[data-chain=\"{c}\"]')?.dataset.proof === 'verified'"
                           for c in CHAINS)
    page = open_account(browser, devnet.web[0], account, verified)
    report = get_report(devnet.apis[0], account, page["epoch"])
    m = report.margin
    assert int(page["im"]) == m.initial_margin_micro_usd > 0
    assert usd_text(browser.evaluate("document.getElementById('account-im').textContent")) == pytest.approx(
        m.initial_margin_micro_usd / 1e6, abs=0.006)
    assert int(browser.evaluate("document.getElementById('account-mm').dataset.microUsd")) == m.maintenance_margin_micro_usd
    assert int(browser.evaluate("document.getElementById('account-equity').dataset.microUsd")) == m.equity_micro_usd
    assert browser.evaluate("document.getElementById('account-status').textContent") == "not liquidatable"
    cells = browser.evaluate("[...document.querySelectorAll('#risk-heatmap td.cell')].map(c => "
                             "[Number(c.dataset.scenario), Number(c.dataset.usd), c.classList.contains('worst')])")
    assert sorted(c[0] for c in cells) == list(range(23)) == list(range(len(m.risk_array_micro_usd)))
    for scenario, value, worst in cells:
        assert value == pytest.approx(m.risk_array_micro_usd[scenario] / 1e6, abs=0.006)
        assert worst == (scenario == m.worst_scenario)
    assert "joint" in browser.evaluate("document.querySelector('.heatmap figcaption').textContent")
    browser.screenshot(shots / "account-hedged.png")


def test_fragile_account_liquidatable_after_the_mark_change(devnet: LiveDevnet, browser: Browser, shots: Path) -> None:
    account = get_demo_accounts()["fragile"]
    ws = devnet.wait(lambda: devnet.ws if devnet.ws and devnet.ws.crashed_at is not None else None, 120,
                     "the devnet's mark change")

    def liquidatable() -> Any:
        try:
            report = get_report(devnet.apis[0], account, None)
        except grpc.RpcError:
            return None  # e.g. this validator adopted the latest state without computing its leaves
        return report if report.margin.liquidatable else None

    flagged = devnet.wait(liquidatable, 120, "the fragile account liquidatable over gRPC")
    assert flagged.margin.epoch > (ws.crashed_at or 0)
    page = open_account(browser, devnet.web[0], account,
                        f"Number(document.getElementById('account').dataset.epoch) >= {flagged.margin.epoch}")
    report = get_report(devnet.apis[0], account, page["epoch"])
    assert report.margin.liquidatable is True
    assert int(page["im"]) == report.margin.initial_margin_micro_usd
    assert browser.evaluate("document.getElementById('account-status').textContent") == "liquidatable"
    worst = browser.evaluate("document.querySelector('#risk-heatmap td.worst')?.dataset.scenario")
    assert worst is not None and int(worst) == report.margin.worst_scenario
    browser.screenshot(shots / "account-fragile-liquidatable.png")
    browser.open(devnet.web[0] + "#/")
    first = browser.wait_for("document.querySelector('#at-risk tbody tr')?.dataset.account")
    assert first == account  # EIP-55, as get_demo_accounts gives it
    assert browser.evaluate("document.querySelector('#at-risk tbody tr .badge.liquidatable') !== null")


def test_whatif_form_posts_to_the_whatif_call(devnet: LiveDevnet, browser: Browser, shots: Path) -> None:
    browser.open(devnet.web[0] + "#/whatif")
    browser.wait_for("document.getElementById('whatif-form')")
    doc = json.loads(browser.evaluate("document.getElementById('whatif-input').value"))
    browser.evaluate("document.querySelector('#whatif-form button').click()")
    shown = usd_text(browser.wait_for("document.getElementById('whatif-im')?.textContent"))
    answer = grpc_call(devnet.apis[0], "SimulateMargin", api_pb2.SimulateMarginRequest(whatif_json=json.dumps(doc)))
    assert shown == pytest.approx(answer.initial_margin_micro_usd / 1e6, abs=0.006) and shown > 0
    worst = browser.evaluate("Number(document.querySelector('#risk-heatmap td.worst')?.dataset.scenario)")
    assert worst == answer.worst_scenario
    assert browser.evaluate("document.querySelectorAll('#whatif-scan tr').length") >= 2
    browser.screenshot(shots / "whatif.png")
