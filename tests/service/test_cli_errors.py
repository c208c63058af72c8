"""Errors of the operator read commands through the real entry point (`node.cli.main.main`, in process for
speed; one subprocess checks the installed path): `--json` answers on stdout also on errors
(`{"error", "exit_code"}`, as `status --json` does), a named home that does not exist is named with the
`clearingd init` to run (never replaced by defaults), and usage errors exit 2 before any remote is contacted.
No chain and no node are started: the remotes are closed loopback ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridges.anvil import get_free_port
from node.cli.main import main
from tests.risk.helpers import SPEC_DOCUMENT
from tests.service.test_cli import REPO, make_home

ACCOUNT = "0x" + "07" * 20
ADDRESS = "0x" + "11" * 20


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


Clearingd = Callable[..., Result]


@pytest.fixture
def clearingd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Clearingd:
    """`clearingd ARGV...` with keyword arguments as extra environment, in an environment without CLEARING_*
    and with a HOME of its own (the default home `~/.clearingd` is absent)."""
    for name in [k for k in os.environ if k.startswith("CLEARING_")]:
        monkeypatch.delenv(name)
    (tmp_path / "user").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "user"))

    def call(*argv: str, **env: str) -> Result:
        capsys.readouterr()
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)
    return call


def json_error(out: Result, code: int) -> str:
    """The error of a failed `--json` call: exit `code`, one JSON object on stdout, the same line on stderr."""
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    doc = json.loads(out.stdout)
    assert set(doc) == {"error", "exit_code"} and doc["exit_code"] == code, doc
    assert out.stderr.strip() == f"error: {doc['error']}"
    return str(doc["error"])


def assert_names_missing_home(message: str, missing: Path) -> None:
    assert message.startswith(f"no node home at {missing}") and "clearingd init" in message, message
    assert not missing.exists()


def test_invalid_margin_get_of_a_stopped_node_answers_like_status(tmp_path: Path, clearingd: Clearingd) -> None:
    home, _ = make_home(tmp_path, with_share=False)
    api = f"127.0.0.1:{get_free_port()}"  # nobody listens there
    out = clearingd("margin", "get", ACCOUNT, "--home", str(home), "--json", "--timeout", "2", CLEARING_API_LISTEN=api)
    error = json_error(out, 1)
    assert error.startswith("UNAVAILABLE: ") and api in error  # the home's api.listen, not a default
    status = clearingd("status", "--home", str(home), "--json")
    assert "not running" in json_error(status, 1)  # the same shape and exit code as `status --json`
    text = subprocess.run([sys.executable, "-m", "node.cli.main", "margin", "get", ACCOUNT, "--home", str(home),
                           "--timeout", "2"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CLEARING_API_LISTEN": api})
    assert text.returncode == 1 and text.stdout == "" and text.stderr.startswith("error: UNAVAILABLE: ")


def test_invalid_margin_get_with_a_missing_home(tmp_path: Path, clearingd: Clearingd) -> None:
    missing = tmp_path / "missing"
    out = clearingd("margin", "get", ACCOUNT, "--home", str(missing), "--json", "--timeout", "2")
    assert_names_missing_home(json_error(out, 2), missing)
    by_env = clearingd("margin", "get", ACCOUNT, "--json", "--timeout", "2", CLEARING_HOME=str(missing))
    assert_names_missing_home(json_error(by_env, 2), missing)


def test_margin_get_without_a_home_keeps_the_config_defaults(clearingd: Clearingd) -> None:
    """No --home, no CLEARING_HOME, no ~/.clearingd: the config's defaults and environment apply, as before."""
    api = f"127.0.0.1:{get_free_port()}"
    out = clearingd("margin", "get", ACCOUNT, "--json", "--timeout", "2", CLEARING_API_LISTEN=api)
    assert api in json_error(out, 1)


def test_invalid_simulate_document_answers_json_naming_the_field(tmp_path: Path, clearingd: Clearingd) -> None:
    doc = json.loads(json.dumps(SPEC_DOCUMENT))
    doc["positions"][0]["strike"] = -5
    (tmp_path / "whatif.json").write_text(json.dumps(doc))
    out = clearingd("margin", "simulate", str(tmp_path / "whatif.json"), "--json")
    assert json_error(out, 2) == "positions[0].strike: -5 outside [1e-12, 1e+12]"
    absent = clearingd("margin", "simulate", str(tmp_path / "absent.json"), "--json")
    assert json_error(absent, 2).startswith("document: cannot read ")


def test_invalid_oracle_show_files_are_usage_errors_before_the_chain(tmp_path: Path,
                                                                     clearingd: Clearingd) -> None:
    from bridges.deploy import Deployment

    dead = f"http://127.0.0.1:{get_free_port()}"  # no chain: a file error must not wait for it
    out = clearingd("oracle", "show", "--rpc-url", dead, "--network-file", str(tmp_path / "none.json"))
    assert json_error(out, 2) == f"--network-file: {tmp_path / 'none.json'}: no such network file"
    out = clearingd("oracle", "show", "--rpc-url", dead, "--deployment", str(tmp_path / "none.json"))
    assert json_error(out, 2).startswith(f"--deployment: cannot read {tmp_path / 'none.json'}")
    (tmp_path / "bad.json").write_text("{}")
    out = clearingd("oracle", "show", "--rpc-url", dead, "--deployment", str(tmp_path / "bad.json"))
    assert json_error(out, 2).startswith("--deployment bad.json: ")
    out = clearingd("oracle", "show", "--rpc-url", dead)
    assert json_error(out, 2) == "give --network-file (env CLEARING_NETWORK_FILE) or --deployment"
    deployment = Deployment(chain_id=31337, network_id=1, keyset_id=1, registry=ADDRESS, vault=ADDRESS,
                            ledger=ADDRESS, oracle=ADDRESS, tokens=(), deployer=ADDRESS, start_block=0)
    (tmp_path / "deployment.json").write_text(deployment.to_json())
    out = clearingd("oracle", "show", "--rpc-url", dead, "--deployment", str(tmp_path / "deployment.json"))
    json_error(out, 1)  # a good file and an unreachable chain: the remote failed


def test_invalid_params_show_with_a_missing_home(tmp_path: Path, clearingd: Clearingd) -> None:
    missing = tmp_path / "missing"
    out = clearingd("params", "show", "--home", str(missing), "--json")
    assert_names_missing_home(json_error(out, 2), missing)  # never the genesis set
    by_env = clearingd("params", "show", "--json", CLEARING_HOME=str(missing))
    assert_names_missing_home(json_error(by_env, 2), missing)
    default = clearingd("params", "show", "--json")  # no home named: the genesis set, as before
    assert default.returncode == 0 and json.loads(default.stdout)["source"] == "genesis (no chain configured)"


def test_invalid_keys_with_a_missing_home(tmp_path: Path, clearingd: Clearingd) -> None:
    missing = tmp_path / "missing"
    for argv in (["keys", "show", "operator"], ["keys", "list"], ["keys", "import-share", str(tmp_path / "s.json")]):
        out = clearingd(*argv, "--home", str(missing), "--json")
        assert_names_missing_home(json_error(out, 2), missing)
        text = clearingd(*argv, "--home", str(missing))
        assert text.returncode == 2 and text.stdout == "" and "no such keystore" not in text.stderr
        assert_names_missing_home(text.stderr.strip().removeprefix("error: "), missing)


def test_invalid_gov_list_without_a_network_clock(tmp_path: Path, clearingd: Clearingd) -> None:
    """Without a genesis time and an epoch period `gov list` refuses (before contacting the chain) rather
    than number epochs from a guess."""
    chain = ("--rpc-url", f"http://127.0.0.1:{get_free_port()}", "--governance-address", ADDRESS)
    unknown = "the network's genesis time and epoch period are unknown"
    assert unknown in json_error(clearingd("gov", "list", *chain, "--json"), 2)
    assert unknown in json_error(clearingd("gov", "list", *chain, "--genesis-time", "1000", "--json"), 2)
    assert unknown in json_error(clearingd("gov", "list", *chain, "--epoch-period", "60", "--json"), 2)
    home, _ = make_home(tmp_path, with_share=False)  # init's config: [consensus].genesis_time = 0 (not set)
    assert unknown in json_error(clearingd("gov", "list", "--home", str(home), *chain, "--json"), 2)
    text = clearingd("gov", "list", "--home", str(home), *chain)
    assert text.returncode == 2 and text.stdout == "" and unknown in text.stderr
    missing = tmp_path / "missing"
    out = clearingd("gov", "list", "--home", str(missing), *chain, "--genesis-time", "1000",
                    "--epoch-period", "60", "--json")
    assert_names_missing_home(json_error(out, 2), missing)
