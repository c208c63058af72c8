"""A live devnet for the integration-kit tests (module scope): two anvil chains with the registry
deployed and seeded, four validators (threshold 3) as real OS processes signing epochs and publishing
them on both chains; the BTC mark falls after the first signed epoch so that the `fragile` demo
account becomes liquidatable. Also compiles the example consumer with the pinned solcjs against the
committed interface files only (`bridges/contracts/interfaces/`), nothing else of the project."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from clearing_client import ApiError, ClearingClient
from node.devnet.runner import DevnetOptions, DevnetRun, setup, start_validator
from node.devnet.seed import apply_crash, get_demo_accounts

REPO = Path(__file__).resolve().parents[2]
INTERFACES = REPO / "bridges" / "contracts" / "interfaces"
CONSUMER = REPO / "docs" / "integration" / "MarginGatedLender.sol"
START_TIMEOUT_S = 240.0
T = TypeVar("T")


def wait_for(fn: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = 0.5) -> T:
    """Poll `fn` until it returns a truthy value (ApiError counts as not yet) or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except ApiError as exc:
            last = exc
        time.sleep(poll_s)
    raise AssertionError(f"{what}: not within {timeout_s} s (last error: {last})")


@dataclass
class Devnet:
    run: DevnetRun
    endpoints: list[str]
    accounts: dict[str, str]  # demo account name -> checksummed address
    crash_after_epoch: int

    def client(self, **kw: Any) -> ClearingClient:
        return ClearingClient(self.endpoints, **kw)


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    home = tmp_path_factory.mktemp("devnet")
    run = DevnetRun(DevnetOptions(home=home, validators=4, threshold=3, crash_epoch=None))
    try:
        setup(run, lambda _line: None)
        (home / "logs").mkdir(exist_ok=True)
        run.processes = [start_validator(h, home / "logs") for h in run.homes]
        net = Devnet(run, [h.api_address for h in run.homes], get_demo_accounts(), 0)
        with net.client(timeout_s=5, passes=1) as client:
            state = wait_for(lambda: client.get_signed_state(), START_TIMEOUT_S, "a first signed state")
        apply_crash(run.seeded, run.market_time)
        net.crash_after_epoch = state.epoch
        yield net
    finally:
        run.stop()


def compile_consumer() -> dict[str, Any]:
    """The example consumer compiled with the pinned solcjs from its file and the interface files only."""
    spec = importlib.util.spec_from_file_location("compile_contracts", REPO / "scripts" / "compile_contracts.py")
    assert spec is not None and spec.loader is not None
    solc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(solc)
    sources = {f"interfaces/{p.name}": p.read_text() for p in sorted(INTERFACES.glob("*.sol"))}
    sources[CONSUMER.name] = CONSUMER.read_text()
    version, output = solc.run_solc(solc.get_standard_input(sources))
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e.get("severity") == "error"]
    assert not errors, errors
    assert version.startswith(solc.SOLC_VERSION_PREFIX)
    contract = output["contracts"][CONSUMER.name]["MarginGatedLender"]
    return {"abi": contract["abi"], "bytecode": "0x" + contract["evm"]["bytecode"]["object"]}


@pytest.fixture(scope="module")
def consumer_artifact() -> dict[str, Any]:
    return compile_consumer()
