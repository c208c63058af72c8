"""Node configuration: TOML file < `CLEARING_<SECTION>_<KEY>` environment < command-line flags.

One table (`SCHEMA`) declares every option with its type and default; each option is settable
from the environment (`CLEARING_API_LISTEN=...`; lists as comma-separated text, `chains` as a JSON
array) and from a flag (`--set api.listen=...`, plus the named flags of `clearingd start`). Errors
name the offending option (`ConfigError("api.max_workers: expected an integer, got 'x'")`).
Relative paths are resolved against the home folder. `build_validator_config` produces the network
engineer's `node.validator.ValidatorConfig`, with secrets read from the encrypted keystores.
Nothing is persisted here (`clearingd init` writes the file, see `render_config_toml`).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.ports import NodeError

ENV_PREFIX = "CLEARING_"
CONFIG_FILE = "config.toml"
MAX_CONFIG_BYTES = 1 << 20
MAX_CHAINS = 32

# section -> key -> default (the default's type is the option's type; lists hold strings).
SCHEMA: dict[str, dict[str, Any]] = {
    "node": {"network_id": 1, "index": 0, "data_dir": "data", "log_level": "INFO", "log_format": "json",
             "keep_leaf_epochs": 1000, "prune_interval_s": 60.0},
    "keys": {"dir": "keys", "passphrase_file": "", "share_file": "share.json", "operator_file": "operator.json",
             "p2p_file": "p2p.json"},
    "p2p": {"listen": "/ip4/127.0.0.1/tcp/4001", "bootstrap": [], "heartbeat_interval_s": 1.0},
    "consensus": {"genesis_time": 0.0, "epoch_period_s": 10.0, "inputs": "margin", "round_deadline_s": 0.0,
                  "publish_fallback_s": 3.0, "catchup_interval_s": 2.0, "status_interval_s": 1.0,
                  "home_chain_id": 0, "publish": True, "max_quote_age_s": 0},
    "validator_set": {"keyset_id": 1, "threshold": 1, "group_key": "", "operators": [], "public_shares": [],
                      "keyset_record": ""},
    "api": {"enabled": True, "listen": "127.0.0.1:50051", "max_workers": 8, "max_concurrent_rpcs": 256,
            "max_receive_bytes": 1 << 20, "max_send_bytes": 8 << 20, "rate_limit_rps": 2000.0,
            "rate_limit_burst": 4000.0, "tls_cert_file": "", "tls_key_file": "", "tls_client_ca_file": "",
            "simulate_workers": 2, "simulate_queue": 2, "simulate_timeout_s": 10.0, "simulate_memory_mb": 1024,
            "simulate_nice": 19, "simulate_idle": True},
    "governance": {"rpc_url": "", "address": "", "confirmations": 0, "refresh_s": 30.0},
    "chain_book": {"full_check_every": 50, "persist_every": 10},
    "admin": {"socket": "run/admin.sock"},
    "metrics": {"enabled": True, "listen": "127.0.0.1:9100"},
    "web": {"enabled": False, "listen": "127.0.0.1:9180"},
}
CHAIN_KEYS: dict[str, Any] = {"chain_id": 0, "rpc_url": "", "lag_s": 0, "confirmations": 0, "registry": "",
                              "vault": "", "ledger": "", "oracle": ""}
PATH_OPTIONS = {("node", "data_dir"), ("keys", "dir"), ("keys", "passphrase_file"), ("admin", "socket"),
                ("api", "tls_cert_file"), ("api", "tls_key_file"), ("api", "tls_client_ca_file")}


class ConfigError(NodeError):
    """The configuration (file, environment or flag) is malformed; the message names the option."""


@dataclass(frozen=True)
class ChainEndpoint:
    """One chain a node reads (and publishes to, when `registry` is set); one `[[chains]]` table."""

    chain_id: int
    rpc_url: str
    lag_s: int = 0
    confirmations: int = 0
    registry: str = ""  # MarginStateRegistry address (hex); empty: do not publish on this chain
    vault: str = ""  # CollateralVault, PositionLedger and MarketOracle addresses (inputs = "margin")
    ledger: str = ""
    oracle: str = ""


@dataclass(frozen=True)
class NodeConfig:
    """The resolved configuration: `values[section][key]`, chains, and the home folder."""

    home: Path
    values: Mapping[str, Mapping[str, Any]]
    chains: tuple[ChainEndpoint, ...]

    def get(self, section: str, key: str) -> Any:
        return self.values[section][key]

    def get_path(self, section: str, key: str) -> Path:
        """An option holding a path, resolved against the home folder ("" stays empty Path(''))."""
        value = self.values[section][key]
        if not value:
            return Path("")
        path = Path(value).expanduser()
        if section == "keys" and key.endswith("_file") and key != "passphrase_file":
            path = self.get_path("keys", "dir") / path
        return path if path.is_absolute() else self.home / path


def _coerce(name: str, default: Any, value: Any, from_text: bool) -> Any:
    """Convert `value` to the type of `default`; text (env, flags) is parsed."""
    kind = type(default)
    try:
        if kind is bool:
            if from_text and isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("1", "true", "yes")
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if kind is int:
            if isinstance(value, bool) or (not from_text and not isinstance(value, int)):
                raise ValueError(value)
            return int(value)
        if kind is float:
            if isinstance(value, bool) or (not from_text and not isinstance(value, int | float)):
                raise ValueError(value)
            return float(value)
        if kind is list:
            if from_text and isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(value)
            return list(value)
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    except (TypeError, ValueError):
        expected = {bool: "a boolean", int: "an integer", float: "a number", list: "a list of strings"}.get(
            kind, "a string")
        raise ConfigError(f"{name}: expected {expected}, got {value!r}"[:300]) from None


def _parse_chains(raw: Any, origin: str) -> tuple[ChainEndpoint, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_CHAINS:
        raise ConfigError(f"chains: expected a list of at most {MAX_CHAINS} tables ({origin})")
    chains = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ConfigError(f"chains[{i}]: expected a table ({origin})")
        unknown = set(item) - set(CHAIN_KEYS)
        if unknown:
            raise ConfigError(f"chains[{i}].{sorted(unknown)[0]}: unknown option ({origin})")
        values = {k: _coerce(f"chains[{i}].{k}", d, item.get(k, d), False) for k, d in CHAIN_KEYS.items()}
        if values["chain_id"] <= 0:
            raise ConfigError(f"chains[{i}].chain_id: must be > 0 ({origin})")
        chains.append(ChainEndpoint(**values))
    return tuple(chains)


def _apply_document(values: dict[str, dict[str, Any]], doc: Mapping[str, Any], origin: str) -> None:
    for section, table in doc.items():
        if section == "chains":
            continue
        if section not in SCHEMA:
            raise ConfigError(f"{section}: unknown section ({origin})")
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: expected a table ({origin})")
        for key, value in table.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"{section}.{key}: unknown option ({origin})")
            values[section][key] = _coerce(f"{section}.{key}", SCHEMA[section][key], value, False)


def _apply_text(values: dict[str, dict[str, Any]], section: str, key: str, text: str, origin: str) -> None:
    if section not in SCHEMA or key not in SCHEMA[section]:
        raise ConfigError(f"{section}.{key}: unknown option ({origin})")
    values[section][key] = _coerce(f"{section}.{key}", SCHEMA[section][key], text, True)


def get_env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


def load_config(home: Path | str, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, str] | None = None, config_file: Path | None = None) -> NodeConfig:
    """Resolve the configuration of the node at `home` (file < env < `overrides` {"sec.key": text})."""
    home = Path(home).expanduser().absolute()
    env = os.environ if env is None else env
    values = {s: dict(defaults) for s, defaults in SCHEMA.items()}
    path = config_file or home / CONFIG_FILE
    chains_raw: Any = []
    if path.exists():
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path.name}: larger than {MAX_CONFIG_BYTES} bytes")
        try:
            doc = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path.name}: not valid TOML ({exc})") from exc
        _apply_document(values, doc, path.name)
        chains_raw = doc.get("chains", [])
    for section, defaults in SCHEMA.items():
        for key in defaults:
            name = get_env_name(section, key)
            if name in env:
                _apply_text(values, section, key, env[name], name)
    if f"{ENV_PREFIX}CHAINS" in env:
        try:
            chains_raw = json.loads(env[f"{ENV_PREFIX}CHAINS"])
        except ValueError as exc:
            raise ConfigError(f"chains: {ENV_PREFIX}CHAINS is not a JSON array ({exc})") from exc
    for dotted, text in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if dotted == "chains":
            try:
                chains_raw = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"chains: --set chains is not a JSON array ({exc})") from exc
            continue
        _apply_text(values, section, key, text, f"--set {dotted}")
    config = NodeConfig(home=home, values=values, chains=_parse_chains(chains_raw, path.name))
    validate_config(config)
    return config


def validate_config(config: NodeConfig) -> None:
    """Range checks that the types alone do not catch."""
    v = config.values
    checks = [
        (v["node"]["index"] >= 0, "node.index: must be >= 0"),
        (v["node"]["log_format"] in ("json", "text"), "node.log_format: must be json or text"),
        (v["node"]["keep_leaf_epochs"] >= 0, "node.keep_leaf_epochs: must be >= 0 (0 keeps every epoch)"),
        (v["node"]["prune_interval_s"] >= 1, "node.prune_interval_s: must be >= 1"),
        (v["consensus"]["epoch_period_s"] > 0, "consensus.epoch_period_s: must be > 0"),
        (v["consensus"]["inputs"] in ("margin", "chain_pins", "fake"),
         "consensus.inputs: must be margin (production), chain_pins or fake (tests)"),
        (1 <= v["api"]["max_workers"] <= 256, "api.max_workers: must be in 1..256"),
        (1 <= v["api"]["max_concurrent_rpcs"] <= 100_000, "api.max_concurrent_rpcs: must be in 1..100000"),
        (1024 <= v["api"]["max_receive_bytes"] <= 64 << 20, "api.max_receive_bytes: must be in 1 KiB..64 MiB"),
        (1024 <= v["api"]["max_send_bytes"] <= 64 << 20, "api.max_send_bytes: must be in 1 KiB..64 MiB"),
        (v["api"]["rate_limit_burst"] >= 1, "api.rate_limit_burst: must be >= 1"),
        (1 <= v["api"]["simulate_workers"] <= 64, "api.simulate_workers: must be in 1..64"),
        (0 <= v["api"]["simulate_queue"] <= 1000, "api.simulate_queue: must be in 0..1000"),
        (0 < v["api"]["simulate_timeout_s"] <= 600, "api.simulate_timeout_s: must be in (0, 600]"),
        (512 <= v["api"]["simulate_memory_mb"] <= 65536, "api.simulate_memory_mb: must be in 512..65536"),
        (0 <= v["api"]["simulate_nice"] <= 19, "api.simulate_nice: must be in 0..19"),
        (bool(v["governance"]["rpc_url"]) == bool(v["governance"]["address"]),
         "governance.rpc_url: governance.rpc_url and governance.address are set together"),
        (v["governance"]["refresh_s"] >= 1, "governance.refresh_s: must be >= 1"),
        (0 <= v["consensus"]["max_quote_age_s"] <= 30 * 86_400,
         "consensus.max_quote_age_s: must be in 0..2592000 (0: no bound)"),
        (1 <= v["chain_book"]["full_check_every"] <= 1_000_000, "chain_book.full_check_every: must be in 1..1000000"),
        (1 <= v["chain_book"]["persist_every"] <= 1_000_000, "chain_book.persist_every: must be in 1..1000000"),
        (bool(v["api"]["tls_cert_file"]) == bool(v["api"]["tls_key_file"]),
         "api.tls_cert_file: api.tls_cert_file and api.tls_key_file are set together"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _hex(name: str, text: str) -> bytes:
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"{name}: not hex") from None


@dataclass(frozen=True)
class ValidatorSecrets:
    """Decrypted key material of a validator (never logged: register it with `node.logs`)."""

    share_sk: int | None  # None: a joining validator, or a retired share keystore (then `keyset` is set)
    operator_key: bytes
    p2p_seed: bytes
    keyset: Any = field(default=None, repr=False)  # node.crypto.dkg.KeySet from the share keystore
    later: tuple = field(default=(), repr=False)  # DkgResults of later key sets (keys/share-<id>.json)
    passphrase: Any = field(default=None, repr=False)  # node.crypto.keystore.Secret, to write new shares

    def __repr__(self) -> str:
        return "ValidatorSecrets([REDACTED])"


def build_validator_config(config: NodeConfig, secrets: ValidatorSecrets) -> Any:
    """The network engineer's `ValidatorConfig` for this node.

    Threshold, group key, key-set id and public shares come from the key-set record of the share
    keystore when `[validator_set]` leaves `public_shares` empty; operator addresses always come
    from `[validator_set].operators` (index i = BLS share index i + 1). A joining validator (no
    share keystore; its operator is not in `[validator_set].operators`) takes the public data from
    `[validator_set]` (`public_shares`, `group_key`, `threshold`, `keyset_id` and `keyset_record`,
    the hex `KeySetRecord` it needs to check the deals of the reshare that admits it). A member whose
    configured share was retired after a reshare (`node.crypto.keyshare.retire_share_keystore`) starts
    from the public part left in the share keystore, without a share of that key set.
    """
    from node.consensus.validation import ValidatorSet
    from node.validator import ValidatorConfig

    vs, cons = config.values["validator_set"], config.values["consensus"]
    governance_address = config.get("governance", "address")
    if governance_address:  # the node numbers governance epochs with its own clock: whole seconds only
        from node.governance_source import get_epoch_clock_seconds

        try:
            get_epoch_clock_seconds(cons["genesis_time"], cons["epoch_period_s"])
        except ValueError as exc:
            raise ConfigError(f"consensus.{exc} (required with governance.address)") from exc
    retired = secrets.share_sk is None and secrets.keyset is not None  # share erased after a reshare
    if secrets.share_sk is None and not retired and not (vs["operators"] and vs["public_shares"] and vs["group_key"]
                                                         and governance_address):
        raise ConfigError(f"{config.get_path('keys', 'share_file')}: no threshold share; import the DKG's keystore "
                          "with `clearingd keys import-share FILE`, or join a running network as a new validator "
                          "([validator_set] public data, keyset_record and [governance].address), or serve the "
                          "API only with --no-validator")
    try:
        operators = tuple(_hex("validator_set.operators", a) for a in vs["operators"])
        keyset = secrets.keyset
        if vs["public_shares"] or secrets.keyset is None:
            shares = tuple(_hex("validator_set.public_shares", p) for p in vs["public_shares"])
            keyset_id, threshold = vs["keyset_id"], vs["threshold"]
            group_key = _hex("validator_set.group_key", vs["group_key"])
            if keyset is None and vs["keyset_record"]:
                keyset = parse_keyset_record(vs["keyset_record"], keyset_id, group_key)
        else:
            ks = secrets.keyset
            shares = tuple(ks.get_public_share(i + 1) for i in range(len(operators)))
            keyset_id, threshold, group_key = ks.keyset_id, ks.threshold, ks.group_public_key
        vset = ValidatorSet(network_id=config.get("node", "network_id"), keyset_id=keyset_id,
                            operator_addresses=operators, public_shares=shares, threshold=threshold,
                            group_key=group_key)
        from node.p2p.envelope import get_operator_address

        joining = secrets.share_sk is None
        if joining and not retired and get_operator_address(secrets.operator_key) in operators:
            raise ConfigError(f"{config.get_path('keys', 'share_file')}: no threshold share, but this operator is "
                              "in [validator_set].operators; import the DKG's keystore with `clearingd keys import-share`")
        return ValidatorConfig(
            index=None if joining else config.get("node", "index"), validator_set=vset, share_sk=secrets.share_sk,
            keyset=keyset, later_shares=secrets.later, keys_dir=config.get_path("keys", "dir"),
            share_file=config.get_path("keys", "share_file"),
            passphrase=secrets.passphrase,
            operator_key=secrets.operator_key, p2p_seed=secrets.p2p_seed, listen=config.get("p2p", "listen"),
            bootstrap=tuple(config.get("p2p", "bootstrap")),
            chains=config.chains,
            home_chain_id=cons["home_chain_id"],
            publisher_key=secrets.operator_key if cons["publish"] else b"",
            genesis_time=cons["genesis_time"], epoch_period_s=cons["epoch_period_s"],
            data_dir=config.get_path("node", "data_dir"), inputs=cons["inputs"],
            round_deadline_s=cons["round_deadline_s"], publish_fallback_s=cons["publish_fallback_s"],
            heartbeat_interval_s=config.get("p2p", "heartbeat_interval_s"),
            catchup_interval_s=cons["catchup_interval_s"], status_interval_s=cons["status_interval_s"],
            governance_address=governance_address, max_quote_age_s=cons["max_quote_age_s"],
            book_full_check_every=config.get("chain_book", "full_check_every"),
            book_persist_every=config.get("chain_book", "persist_every"))
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"validator_set: {exc}") from exc


def parse_keyset_record(text: str, keyset_id: int, group_key: bytes) -> Any:
    """`[validator_set].keyset_record`: the configured key set's public `KeySetRecord` (hex)."""
    from node.crypto.dkg import KeySet
    from node.pb.clearing.dkg.v1 import dkg_pb2

    try:
        keyset = KeySet.from_record(dkg_pb2.KeySetRecord.FromString(_hex("validator_set.keyset_record", text)))
    except ConfigError:
        raise
    except Exception as exc:  # DecodeError or DkgError: name the option
        raise ConfigError(f"validator_set.keyset_record: not a valid KeySetRecord ({exc})") from exc
    if keyset.keyset_id != keyset_id or keyset.group_public_key != group_key:
        raise ConfigError("validator_set.keyset_record: key-set id or group key differ from [validator_set]")
    return keyset


SHARE_GLOB = "share-*.json"


def get_share_path(keys_dir: Path, keyset_id: int) -> Path:
    """Where a share of a key set made by a reshare is kept (`share.json` holds the configured one)."""
    return keys_dir / f"share-{keyset_id}.json"


def load_validator_secrets(config: NodeConfig) -> ValidatorSecrets:
    """The validator's secrets decrypted from its keystores (passphrase file or env).

    The share keystore is optional: without it the node is a joining validator (see
    `build_validator_config`). Shares of later key sets (`keys/share-<id>.json`, written by the
    node after a reshare) are loaded too."""
    from node.crypto.keyshare import load_share_keystore
    from node.crypto.keystore import load_keystore, load_passphrase

    has_file = bool(config.get("keys", "passphrase_file"))
    passphrase = load_passphrase(config.get_path("keys", "passphrase_file") if has_file else None)
    share_file = config.get_path("keys", "share_file")
    share = load_share_keystore(share_file, passphrase) if share_file.is_file() else None
    operator = load_keystore(config.get_path("keys", "operator_file"), passphrase).secret.reveal()
    p2p = load_keystore(config.get_path("keys", "p2p_file"), passphrase).secret.reveal()
    if share is not None and share.index is not None and share.index != config.get("node", "index") + 1:
        raise ConfigError(f"node.index: {config.get('node', 'index')} but the share keystore holds share "
                          f"index {share.index} (expected node.index + 1)")
    later = tuple(sorted((load_share_keystore(p, passphrase) for p in config.get_path("keys", "dir").glob(SHARE_GLOB)),
                         key=lambda r: r.keyset.keyset_id))
    return ValidatorSecrets(share_sk=None if share is None or share.share is None else int(share.share),
                            operator_key=operator,
                            p2p_seed=p2p, keyset=None if share is None else share.keyset, later=later,
                            passphrase=passphrase)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(value)


def render_config_toml(values: Mapping[str, Mapping[str, Any]], chains: tuple[ChainEndpoint, ...] = ()) -> str:
    """A complete config.toml (every option written out, so operators see them all)."""
    lines = ["# clearingd node configuration. Every option can also be set by the environment",
             "# (CLEARING_<SECTION>_<KEY>) or by `clearingd start --set section.key=value`.", ""]
    for section, defaults in SCHEMA.items():
        lines.append(f"[{section}]")
        for key in defaults:
            lines.append(f"{key} = {_toml_value(values.get(section, {}).get(key, defaults[key]))}")
        lines.append("")
    for chain in chains:
        lines.append("[[chains]]")
        for key in CHAIN_KEYS:
            lines.append(f"{key} = {_toml_value(getattr(chain, key))}")
        lines.append("")
    return "\n".join(lines)
