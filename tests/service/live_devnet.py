"""A running devnet for tests that look at a live network: `node.devnet.runner.run_devnet` (real anvil
chains, four `clearingd start` processes with metrics and the web view) driven from a background
thread until the test stops it, plus helpers to scrape `/metrics` and wait for epochs by polling."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from node.devnet.runner import DevnetOptions, DevnetRun, WatchState, run_devnet

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: str, timeout_s: float = 5.0) -> Samples:
    """Every sample of `http://address/metrics`: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout_s) as resp:
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): float(s.value)
            for family in text_string_to_metric_families(text) for s in family.samples}


def get_value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
        except OSError:
            value = None  # a server not up yet
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(poll_s)


class LiveDevnet:
    """`start()` returns once the validators run; `stop()` ends the run (validators, then chains)."""

    def __init__(self, home: Path, crash_epoch: int | None = 3, epoch_period_s: float = 3.0) -> None:
        self.home = home
        self.options = DevnetOptions(home=home, epochs=None, epoch_period_s=epoch_period_s, crash_epoch=crash_epoch)
        self.lines: list[str] = []
        self.run: DevnetRun | None = None
        self.ws: WatchState | None = None
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="devnet", daemon=True)

    def _main(self) -> None:
        try:
            self.summary = run_devnet(self.options, self.lines.append, is_finished=self._is_finished)
        except BaseException as exc:  # reported by the waiting test
            self.error = exc

    def _is_finished(self, run: DevnetRun, ws: WatchState) -> bool:
        self.run, self.ws = run, ws
        return self._stop.is_set()

    def _check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"devnet failed: {self.error!r}\n" + "\n".join(self.lines))

    def start(self, timeout_s: float = 180.0) -> LiveDevnet:
        self._thread.start()
        self.wait(lambda: self.run is not None, timeout_s, "the validators to start")
        return self

    def wait(self, condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
        def checked() -> Any:
            self._check()
            return condition()

        try:
            return wait_for(checked, timeout_s, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\ndevnet output:\n" + "\n".join(self.lines[-20:])) from None

    def wait_epochs(self, count: int, timeout_s: float = 120.0) -> WatchState:
        """Until `count` epochs are signed by every validator (as the devnet's watch loop records them)."""
        return self.wait(lambda: self.ws if self.ws is not None and self.ws.done >= count else None, timeout_s,
                         f"{count} signed epochs")

    @property
    def metrics(self) -> list[str]:
        assert self.run is not None
        return [h.metrics_address for h in self.run.homes]

    @property
    def web(self) -> list[str]:
        assert self.run is not None
        return [f"http://{w}/" for w in self.run.web]

    @property
    def apis(self) -> list[str]:
        assert self.run is not None
        return [h.api_address for h in self.run.homes]

    def stop(self, timeout_s: float = 180.0) -> dict[str, Any] | None:
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError("the devnet did not stop")
        return self.summary
