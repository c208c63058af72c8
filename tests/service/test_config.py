"""node.config: TOML < CLEARING_* env < flags, typed options with named errors, chains, rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import SCHEMA, ConfigError, get_env_name, load_config, render_config_toml

TOML = """
[node]
network_id = 9
index = 2
[api]
listen = "127.0.0.1:6000"
rate_limit_rps = 50
[p2p]
bootstrap = ["/ip4/127.0.0.1/tcp/1/p2p/A"]
[[chains]]
chain_id = 31337
rpc_url = "http://127.0.0.1:8545"
confirmations = 2
"""


def write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)
    return home


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(tmp_path, env={})
    for section, options in SCHEMA.items():
        for key, default in options.items():
            assert config.get(section, key) == default
    assert config.get_path("admin", "socket") == tmp_path.absolute() / "run/admin.sock"
    assert config.get_path("keys", "share_file") == tmp_path.absolute() / "keys/share.json"


def test_file_then_env_then_flags(tmp_path: Path) -> None:
    home = write(tmp_path, TOML)
    config = load_config(home, env={})
    assert (config.get("node", "network_id"), config.get("api", "listen"), config.get("api", "rate_limit_rps")) == (
        9, "127.0.0.1:6000", 50.0)
    assert config.chains[0].chain_id == 31337 and config.chains[0].confirmations == 2
    env = {"CLEARING_API_LISTEN": "127.0.0.1:7000", "CLEARING_NODE_INDEX": "3",
           "CLEARING_P2P_BOOTSTRAP": "a, b", "CLEARING_METRICS_ENABLED": "false",
           "CLEARING_CHAINS": '[{"chain_id": 5, "rpc_url": "http://x"}]'}
    config = load_config(home, env=env)
    assert (config.get("api", "listen"), config.get("node", "index")) == ("127.0.0.1:7000", 3)
    assert config.get("p2p", "bootstrap") == ["a", "b"] and config.get("metrics", "enabled") is False
    assert [c.chain_id for c in config.chains] == [5]
    config = load_config(home, env=env, overrides={"api.listen": "127.0.0.1:8000", "node.index": "4"})
    assert (config.get("api", "listen"), config.get("node", "index")) == ("127.0.0.1:8000", 4)
    assert config.get("node", "network_id") == 9  # untouched layers stay


def test_every_option_has_an_env_var(tmp_path: Path) -> None:
    special = {("node", "log_format"): ("text", "text"), ("consensus", "inputs"): ("fake", "fake"),
               ("api", "max_receive_bytes"): ("4096", 4096), ("api", "max_send_bytes"): ("4096", 4096),
               ("api", "simulate_memory_mb"): ("768", 768), ("api", "simulate_nice"): ("5", 5)}
    for section, options in SCHEMA.items():
        for key, default in options.items():
            if (section, key) in (("api", "tls_cert_file"), ("api", "tls_key_file"), ("governance", "rpc_url"),
                                  ("governance", "address")):
                continue  # only valid together (checked below)
            text, expected = special.get((section, key), {
                bool: ("false" if default else "true", not default), int: ("7", 7), float: ("7.5", 7.5),
                list: ("x, y", ["x", "y"]), str: ("v", "v")}[type(default)])
            assert expected != default, (section, key)
            config = load_config(tmp_path, env={get_env_name(section, key): text})
            assert config.get(section, key) == expected, (section, key)
    both = load_config(tmp_path, env={"CLEARING_API_TLS_CERT_FILE": "c", "CLEARING_API_TLS_KEY_FILE": "k"})
    assert both.get_path("api", "tls_key_file") == tmp_path.absolute() / "k"
    gov = load_config(tmp_path, env={"CLEARING_GOVERNANCE_RPC_URL": "http://x", "CLEARING_GOVERNANCE_ADDRESS": "0x1"})
    assert (gov.get("governance", "rpc_url"), gov.get("governance", "address")) == ("http://x", "0x1")


@pytest.mark.parametrize(("text", "env", "message"), [
    ("[api]\nmax_workers = 'many'\n", {}, "api.max_workers: expected an integer"),
    ("[api]\nlisten = 5\n", {}, "api.listen: expected a string"),
    ("[nope]\nx = 1\n", {}, "nope: unknown section"),
    ("[api]\nlistne = 'x'\n", {}, "api.listne: unknown option"),
    ("[api\n", {}, "not valid TOML"),
    ("", {"CLEARING_API_MAX_WORKERS": "x"}, "api.max_workers: expected an integer"),
    ("", {"CLEARING_METRICS_ENABLED": "maybe"}, "metrics.enabled: expected a boolean"),
    ("", {"CLEARING_API_MAX_WORKERS": "0"}, "api.max_workers: must be in 1..256"),
    ("", {"CLEARING_CONSENSUS_EPOCH_PERIOD_S": "-1"}, "consensus.epoch_period_s: must be > 0"),
    ("", {"CLEARING_API_TLS_CERT_FILE": "c.pem"}, "api.tls_cert_file"),
    ("", {"CLEARING_GOVERNANCE_ADDRESS": "0x1"}, "governance.rpc_url"),
    ("[[chains]]\nchain_id = 0\n", {}, r"chains\[0\].chain_id: must be > 0"),
    ("[[chains]]\nchain_id = 1\nrpc = 'x'\n", {}, r"chains\[0\].rpc: unknown option"),
    ("", {"CLEARING_CHAINS": "{"}, "chains: CLEARING_CHAINS is not a JSON array"),
])
def test_invalid_config_names_the_option(tmp_path: Path, text: str, env: dict, message: str) -> None:
    home = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        load_config(home, env=env)


def test_invalid_flag_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"api.nope: unknown option \(--set api.nope\)"):
        load_config(tmp_path, env={}, overrides={"api.nope": "1"})


def test_rendered_config_round_trips(tmp_path: Path) -> None:
    home = write(tmp_path, TOML)
    config = load_config(home, env={})
    other = write(tmp_path / "b", render_config_toml(config.values, config.chains))
    again = load_config(other, env={})
    assert again.values == config.values and again.chains == config.chains


def _joining_home(tmp_path: Path, record_hex: str) -> tuple[object, object]:
    """A home whose operator is not in the configured set and that holds no share keystore."""
    from node.config import ValidatorSecrets
    from node.crypto.dkg import run_dkg_in_process

    results = {r.index: r for r in run_dkg_in_process(4, 3).results.values()}
    ks = results[1].keyset
    record = ks.to_record().SerializeToString().hex() if record_hex == "real" else record_hex
    text = f"""
[node]
index = 4
[governance]
rpc_url = "http://127.0.0.1:8545"
address = "0x{'11' * 20}"
[consensus]
genesis_time = 1000
epoch_period_s = 3
[validator_set]
keyset_id = {ks.keyset_id}
threshold = 3
group_key = "0x{ks.group_public_key.hex()}"
operators = {["0x" + bytes([i + 1]).hex() * 20 for i in range(4)]!r}
public_shares = {["0x" + ks.get_public_share(i).hex() for i in range(1, 5)]!r}
keyset_record = "{record}"
"""
    config = load_config(write(tmp_path, text.replace("'", '"')), env={})
    secrets = ValidatorSecrets(share_sk=None, operator_key=bytes([9]) * 32, p2p_seed=bytes([8]) * 32)
    return config, (secrets, ks)


def test_joining_validator_config_has_no_index_and_the_genesis_keyset(tmp_path: Path) -> None:
    from node.config import build_validator_config

    config, (secrets, ks) = _joining_home(tmp_path, "real")
    vc = build_validator_config(config, secrets)
    assert vc.index is None and vc.share_sk is None
    assert vc.keyset.commitments == ks.commitments and vc.validator_set.n == 4
    assert vc.topic == f"/clearing/{vc.validator_set.network_id}/consensus/1"  # one mesh for every key set


def test_invalid_joining_validator_keyset_record(tmp_path: Path) -> None:
    from node.config import build_validator_config

    config, (secrets, _) = _joining_home(tmp_path, "00ff")
    with pytest.raises(ConfigError, match=r"validator_set\.keyset_record"):
        build_validator_config(config, secrets)
