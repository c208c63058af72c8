"""The network file: a network's genesis (like CometBFT's genesis.json or drand's group file).

One JSON document every operator holds, version 1:
- `network_id`, `genesis_time` (unix seconds), `epoch_period_s` (whole seconds), `threshold`;
- `chains`: `chain_id`, `confirmations`, `lag_s`, and once deployed `contracts` (`registry`, `vault`,
  `ledger`, `oracle`, `deployer`, `start_block`); each operator supplies its own RPC URL (never here);
- `governance`: null, or the home chain's `Governance` (`chain_id`, `address`, `start_block`);
- `operators` (index order = share index - 1): `address` (operator key), `peer_id` (libp2p),
  `multiaddr` (where it listens, without `/p2p/`), `dkg_key` (X25519 key the genesis ceremony seals
  its share to; derived from the operator key, `derive_ceremony_key`);
- `keyset`: null until the ceremony (`clearingd dkg`), then the key set's public data: `keyset_id`,
  `threshold`, `group_key` (compressed G2) and `record` (hex `KeySetRecord`: commitments, holders,
  qualified dealers);
- `max_quote_age_s` (optional; absent = 0 = no bound): the oldest oracle value (by its `updatedAt`) an
  epoch may use, in seconds before the epoch's time; an older value fails the accounts that need it
  (`bridges.book_merge`). Every validator must apply the same bound, so it is part of the genesis; the
  field is left out of the document when 0, so files written before it keep their hash.

The file is built in three steps, each adding a part and changing the hash: `clearingd network new`
(parameters and operators), the ceremony (`keyset`), `clearingd deploy` (one chain's `contracts` per
run, and `governance` on the home chain). Canonical encoding: the validated document as JSON with
sorted keys, no whitespace, ASCII, integers only, checksummed addresses, lowercase hex; its hash is
SHA-256 of that encoding ("0x" + 64 hex), what operators compare out of band. `parse_network` refuses
unknown fields, wrong types and inconsistent parts with a `NetworkFileError` naming the field.
Persists only through `write_network_file` (atomic rename, mode 0644: public data).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from node.config import ConfigError

VERSION = 1
MAX_FILE_BYTES = 1 << 20
MAX_OPERATORS = 64
MAX_CHAINS = 32
MAX_UINT63 = (1 << 63) - 1
GENESIS_KEYSET_ID = 1
DKG_KEY_SIZE = 32
G2_SIZE = 96
MAX_QUOTE_AGE_S = 30 * 86_400
MULTIADDR_RE = re.compile(r"^/(ip4|ip6|dns|dns4|dns6)/[^/]+/tcp/(\d{1,5})$")
ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
DST_CEREMONY_KEY = b"CLEARING-V1-GENESIS-DKG-KEY"


class NetworkFileError(ConfigError):
    """The network file is malformed or inconsistent; the message names the field."""


@dataclass(frozen=True)
class Contracts:
    """One chain's deployed clearing contracts (checksummed addresses)."""

    registry: str
    vault: str
    ledger: str
    oracle: str
    deployer: str
    start_block: int


@dataclass(frozen=True)
class ChainSpec:
    chain_id: int
    confirmations: int = 0
    lag_s: int = 0
    contracts: Contracts | None = None


@dataclass(frozen=True)
class GovernanceSpec:
    chain_id: int
    address: str
    start_block: int


@dataclass(frozen=True)
class OperatorSpec:
    address: str
    peer_id: str
    multiaddr: str
    dkg_key: str  # 0x + 64 hex

    def get_bootstrap(self) -> str:
        return f"{self.multiaddr}/p2p/{self.peer_id}"


@dataclass(frozen=True)
class KeySetSpec:
    keyset_id: int
    threshold: int
    group_key: str  # 0x + compressed G2 hex
    record: str  # hex KeySetRecord (index 0)

    def get_keyset(self) -> Any:
        """The `node.crypto.dkg.KeySet` of the record."""
        from node.crypto.dkg import KeySet
        from node.pb.clearing.dkg.v1 import dkg_pb2

        return KeySet.from_record(dkg_pb2.KeySetRecord.FromString(bytes.fromhex(self.record)))


@dataclass(frozen=True)
class Network:
    network_id: int
    genesis_time: int
    epoch_period_s: int
    threshold: int
    chains: tuple[ChainSpec, ...]
    operators: tuple[OperatorSpec, ...]
    governance: GovernanceSpec | None = None
    keyset: KeySetSpec | None = None
    max_quote_age_s: int = 0  # 0: no bound on the age of oracle values
    version: int = field(default=VERSION)

    @property
    def home_chain_id(self) -> int:
        return self.governance.chain_id if self.governance else self.chains[0].chain_id

    @property
    def is_deployed(self) -> bool:
        return all(c.contracts is not None for c in self.chains)

    def get_chain(self, chain_id: int) -> ChainSpec:
        for chain in self.chains:
            if chain.chain_id == chain_id:
                return chain
        raise NetworkFileError(f"chains: chain {chain_id} is not a chain of network {self.network_id} "
                               f"({', '.join(str(c.chain_id) for c in self.chains)})")

    def find_operator(self, address: str) -> int | None:
        """0-based index of `address` among the operators, None when it is not one."""
        wanted = address.lower()
        return next((i for i, op in enumerate(self.operators) if op.address.lower() == wanted), None)

    def get_stage(self) -> str:
        """`genesis` (no key set yet), `keyset` (ceremony done), `deployed` (every chain deployed)."""
        if self.keyset is None:
            return "genesis"
        return "deployed" if self.is_deployed else "keyset"

    def with_keyset(self, keyset: Any) -> Network:
        """This network with the public data of a ceremony's `KeySet`."""
        spec = KeySetSpec(keyset_id=keyset.keyset_id, threshold=keyset.threshold,
                          group_key="0x" + keyset.group_public_key.hex(),
                          record=keyset.to_record().SerializeToString(deterministic=True).hex())
        return validate_network(replace(self, keyset=spec))

    def with_contracts(self, chain_id: int, contracts: Contracts, governance: GovernanceSpec | None) -> Network:
        chains = tuple(replace(c, contracts=contracts) if c.chain_id == chain_id else c for c in self.chains)
        self.get_chain(chain_id)
        return validate_network(replace(self, chains=chains, governance=governance or self.governance))


# --- encoding ----------------------------------------------------------------------------------------


def network_to_dict(net: Network) -> dict[str, Any]:
    def chain(c: ChainSpec) -> dict[str, Any]:
        contracts = None if c.contracts is None else {
            "registry": c.contracts.registry, "vault": c.contracts.vault, "ledger": c.contracts.ledger,
            "oracle": c.contracts.oracle, "deployer": c.contracts.deployer, "start_block": c.contracts.start_block}
        return {"chain_id": c.chain_id, "confirmations": c.confirmations, "lag_s": c.lag_s, "contracts": contracts}

    optional = {"max_quote_age_s": net.max_quote_age_s} if net.max_quote_age_s else {}
    return {
        **optional,
        "version": net.version, "network_id": net.network_id, "genesis_time": net.genesis_time,
        "epoch_period_s": net.epoch_period_s, "threshold": net.threshold,
        "chains": [chain(c) for c in net.chains],
        "governance": None if net.governance is None else {
            "chain_id": net.governance.chain_id, "address": net.governance.address,
            "start_block": net.governance.start_block},
        "operators": [{"address": o.address, "peer_id": o.peer_id, "multiaddr": o.multiaddr, "dkg_key": o.dkg_key}
                      for o in net.operators],
        "keyset": None if net.keyset is None else {
            "keyset_id": net.keyset.keyset_id, "threshold": net.keyset.threshold,
            "group_key": net.keyset.group_key, "record": net.keyset.record},
    }


def encode_canonical(net: Network) -> bytes:
    """The canonical encoding the hash is taken over."""
    return json.dumps(network_to_dict(net), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def compute_network_hash(net: Network) -> str:
    return "0x" + hashlib.sha256(encode_canonical(net)).hexdigest()


def render_network(net: Network) -> str:
    """The file's text: the canonical document, indented for people (same content, same hash)."""
    return json.dumps(network_to_dict(net), sort_keys=True, indent=2, ensure_ascii=True) + "\n"


# --- parsing -----------------------------------------------------------------------------------------


def _table(doc: Any, name: str, keys: Sequence[str], optional: Sequence[str] = ()) -> Mapping[str, Any]:
    """`doc` as an object holding every one of `keys`, any of `optional` and nothing else."""
    if not isinstance(doc, dict):
        raise NetworkFileError(f"{name}: expected an object")
    unknown = sorted(set(doc) - set(keys) - set(optional))
    if unknown:
        raise NetworkFileError(f"{name}.{unknown[0]}: unknown field")
    missing = [k for k in keys if k not in doc]
    if missing:
        raise NetworkFileError(f"{name}.{missing[0]}: missing")
    return doc


def _int(value: Any, name: str, low: int = 0, high: int = MAX_UINT63) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise NetworkFileError(f"{name}: expected an integer, got {value!r}"[:200])
    if not low <= value <= high:
        raise NetworkFileError(f"{name}: {value} outside {low}..{high}")
    return value


def _address(value: Any, name: str) -> str:
    from eth_utils import to_checksum_address

    if not isinstance(value, str) or not ADDRESS_RE.match(value):
        raise NetworkFileError(f"{name}: expected a 0x-prefixed 20-byte hex address, got {value!r}"[:200])
    return to_checksum_address(value)


def _hex(value: Any, name: str, size: int | None = None) -> str:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise NetworkFileError(f"{name}: expected 0x-prefixed hex")
    try:
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raise NetworkFileError(f"{name}: not hex") from None
    if size is not None and len(raw) != size:
        raise NetworkFileError(f"{name}: expected {size} bytes, got {len(raw)}")
    return "0x" + raw.hex()


def parse_operator(doc: Any, name: str = "operator") -> OperatorSpec:
    t = _table(doc, name, ("address", "peer_id", "multiaddr", "dkg_key"))
    peer_id, multiaddr = t["peer_id"], t["multiaddr"]
    if not isinstance(peer_id, str) or not re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]{40,80}", peer_id):
        raise NetworkFileError(f"{name}.peer_id: expected a base58 libp2p peer id, got {peer_id!r}"[:200])
    match = MULTIADDR_RE.match(multiaddr) if isinstance(multiaddr, str) else None
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise NetworkFileError(f"{name}.multiaddr: expected /ip4|ip6|dns/HOST/tcp/PORT (no /p2p/), got {multiaddr!r}"[:200])
    return OperatorSpec(address=_address(t["address"], f"{name}.address"), peer_id=peer_id, multiaddr=multiaddr,
                        dkg_key=_hex(t["dkg_key"], f"{name}.dkg_key", DKG_KEY_SIZE))


def _parse_contracts(doc: Any, name: str) -> Contracts | None:
    if doc is None:
        return None
    t = _table(doc, name, ("registry", "vault", "ledger", "oracle", "deployer", "start_block"))
    return Contracts(**{k: _address(t[k], f"{name}.{k}") for k in ("registry", "vault", "ledger", "oracle", "deployer")},
                     start_block=_int(t["start_block"], f"{name}.start_block"))


def _parse_chain(doc: Any, name: str) -> ChainSpec:
    t = _table(doc, name, ("chain_id", "confirmations", "lag_s", "contracts"))
    return ChainSpec(chain_id=_int(t["chain_id"], f"{name}.chain_id", 1), confirmations=_int(
        t["confirmations"], f"{name}.confirmations", 0, 1024), lag_s=_int(t["lag_s"], f"{name}.lag_s", 0, 86_400),
        contracts=_parse_contracts(t["contracts"], f"{name}.contracts"))


def _parse_governance(doc: Any) -> GovernanceSpec | None:
    if doc is None:
        return None
    t = _table(doc, "governance", ("chain_id", "address", "start_block"))
    return GovernanceSpec(chain_id=_int(t["chain_id"], "governance.chain_id", 1),
                          address=_address(t["address"], "governance.address"),
                          start_block=_int(t["start_block"], "governance.start_block"))


def _parse_keyset(doc: Any) -> KeySetSpec | None:
    if doc is None:
        return None
    t = _table(doc, "keyset", ("keyset_id", "threshold", "group_key", "record"))
    record = t["record"]
    if not isinstance(record, str) or not re.fullmatch(r"([0-9a-f]{2})+", record):
        raise NetworkFileError("keyset.record: expected lowercase hex (a KeySetRecord)")
    return KeySetSpec(keyset_id=_int(t["keyset_id"], "keyset.keyset_id", 1, (1 << 32) - 1),
                      threshold=_int(t["threshold"], "keyset.threshold", 1, MAX_OPERATORS),
                      group_key=_hex(t["group_key"], "keyset.group_key", G2_SIZE), record=record)


def parse_network(doc: Any) -> Network:
    """A validated `Network` from a decoded JSON document."""
    t = _table(doc, "network", ("version", "network_id", "genesis_time", "epoch_period_s", "threshold", "chains",
                                "governance", "operators", "keyset"), optional=("max_quote_age_s",))
    if t["version"] != VERSION or isinstance(t["version"], bool):
        raise NetworkFileError(f"version: expected {VERSION}, got {t['version']!r}")
    for name, limit in (("chains", MAX_CHAINS), ("operators", MAX_OPERATORS)):
        if not isinstance(t[name], list) or not 1 <= len(t[name]) <= limit:
            raise NetworkFileError(f"{name}: expected a list of 1..{limit} entries")
    net = Network(
        network_id=_int(t["network_id"], "network_id", 1), genesis_time=_int(t["genesis_time"], "genesis_time"),
        epoch_period_s=_int(t["epoch_period_s"], "epoch_period_s", 1, 86_400),
        threshold=_int(t["threshold"], "threshold", 1, MAX_OPERATORS),
        chains=tuple(_parse_chain(c, f"chains[{i}]") for i, c in enumerate(t["chains"])),
        operators=tuple(parse_operator(o, f"operators[{i}]") for i, o in enumerate(t["operators"])),
        governance=_parse_governance(t["governance"]), keyset=_parse_keyset(t["keyset"]),
        max_quote_age_s=_int(t.get("max_quote_age_s", 0), "max_quote_age_s", 0, MAX_QUOTE_AGE_S))
    return validate_network(net)


def validate_network(net: Network) -> Network:
    """Cross-field checks; returns `net` unchanged."""
    n = len(net.operators)
    if not 1 <= net.threshold <= n:
        raise NetworkFileError(f"threshold: {net.threshold} outside 1..{n} (the number of operators)")
    checks: tuple[tuple[str, list[Any]], ...] = (
        ("chains[].chain_id", [c.chain_id for c in net.chains]),
        ("operators[].address", [o.address.lower() for o in net.operators]),
        ("operators[].peer_id", [o.peer_id for o in net.operators]),
        ("operators[].dkg_key", [o.dkg_key for o in net.operators]))
    for what, values in checks:
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise NetworkFileError(f"{what}: {dupes[0]} appears more than once")
    if net.governance is not None:
        net.get_chain(net.governance.chain_id)
    if net.keyset is not None:
        _validate_keyset(net, net.keyset)
    return net


def _validate_keyset(net: Network, spec: KeySetSpec) -> None:
    from node.crypto.errors import CryptoError

    try:
        keyset = spec.get_keyset()
    except (CryptoError, ValueError) as exc:
        raise NetworkFileError(f"keyset.record: not a valid KeySetRecord ({exc})") from exc
    except Exception as exc:  # protobuf DecodeError
        raise NetworkFileError(f"keyset.record: not a KeySetRecord ({type(exc).__name__})") from exc
    checks = [
        (keyset.keyset_id == spec.keyset_id == GENESIS_KEYSET_ID, f"keyset.keyset_id: the genesis key set is "
                                                                 f"{GENESIS_KEYSET_ID}"),
        (keyset.threshold == spec.threshold == net.threshold, "keyset.threshold: differs from the network's threshold"),
        ("0x" + keyset.group_public_key.hex() == spec.group_key, "keyset.group_key: differs from the record's"),
        (keyset.holders == tuple(range(1, len(net.operators) + 1)), "keyset.record: holders are not the operators"),
        (keyset.to_record().SerializeToString(deterministic=True).hex() == spec.record,
         "keyset.record: not in canonical form (index must be 0)"),
    ]
    for ok, message in checks:
        if not ok:
            raise NetworkFileError(message)


def load_network_file(path: Path | str) -> Network:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise NetworkFileError(f"{path.name}: larger than {MAX_FILE_BYTES} bytes")
        doc = json.loads(path.read_text(encoding="ascii"))
    except FileNotFoundError:
        raise NetworkFileError(f"{path}: no such network file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise NetworkFileError(f"{path.name}: not a readable JSON network file ({exc})") from exc
    return parse_network(doc)


def write_network_file(path: Path | str, net: Network) -> str:
    """Write `net` atomically (mode 0644: public data); returns its hash."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(render_network(net))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return compute_network_hash(net)


def is_successor(old: Network, new: Network) -> bool:
    """True when `new` is `old` or a later step of it: the same parameters and operators, and only parts
    that `old` lacked added (the key set, chains' contracts, governance), never one changed."""
    def same_or_added(a: Any, b: Any) -> bool:
        return a is None or a == b

    return (replace(old, keyset=None, governance=None, chains=tuple(replace(c, contracts=None) for c in old.chains))
            == replace(new, keyset=None, governance=None, chains=tuple(replace(c, contracts=None) for c in new.chains))
            and same_or_added(old.keyset, new.keyset) and same_or_added(old.governance, new.governance)
            and all(same_or_added(a.contracts, b.contracts) for a, b in zip(old.chains, new.chains, strict=True)))


def find_config_conflicts(net: Network, config: Any) -> list[str]:
    """The options of a home's `NodeConfig` that contradict `net` where every validator must agree (what
    an epoch reads and when): each as "option: config has X, the network file Y". Empty when consistent."""
    cons = config.values["consensus"]
    wanted: list[tuple[str, Any, Any]] = [
        ("node.network_id", config.get("node", "network_id"), net.network_id),
        ("consensus.genesis_time", cons["genesis_time"], float(net.genesis_time)),
        ("consensus.epoch_period_s", cons["epoch_period_s"], float(net.epoch_period_s)),
        ("consensus.home_chain_id", cons["home_chain_id"], net.home_chain_id),
        ("consensus.max_quote_age_s", cons["max_quote_age_s"], net.max_quote_age_s)]
    configured = {c.chain_id: c for c in config.chains}
    for spec in net.chains:
        mine = configured.get(spec.chain_id)
        if mine is None:
            wanted.append((f"chains[chain_id={spec.chain_id}]", "absent", "present"))
            continue
        wanted += [(f"chains[chain_id={spec.chain_id}].{k}", getattr(mine, k), getattr(spec, k))
                   for k in ("lag_s", "confirmations")]
        if spec.contracts is not None:
            wanted += [(f"chains[chain_id={spec.chain_id}].{k}", getattr(mine, k).lower(),
                        getattr(spec.contracts, k).lower()) for k in ("registry", "vault", "ledger", "oracle")]
    return [f"{name}: config has {mine!r}, the network file {listed!r}"
            for name, mine, listed in wanted if mine != listed]


# --- the ceremony key ------------------------------------------------------------------------------


def derive_ceremony_key(operator_key: bytes) -> Any:
    """The X25519 key an operator's genesis-ceremony share is sealed to (HKDF-SHA256 of the operator key):
    no extra keystore, and the same key whenever the ceremony is rerun."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=DST_CEREMONY_KEY, info=b"x25519").derive(operator_key)
    return X25519PrivateKey.from_private_bytes(seed)


def make_operator_entry(operator_key: bytes, peer_id: str, multiaddr: str) -> OperatorSpec:
    """This operator's entry of a network file (validated)."""
    from eth_keys import keys

    dkg_key = derive_ceremony_key(operator_key).public_key().public_bytes_raw()
    return parse_operator({"address": keys.PrivateKey(operator_key).public_key.to_checksum_address(),
                           "peer_id": peer_id, "multiaddr": multiaddr, "dkg_key": "0x" + dkg_key.hex()})


def operator_to_dict(op: OperatorSpec) -> dict[str, str]:
    return {"address": op.address, "peer_id": op.peer_id, "multiaddr": op.multiaddr, "dkg_key": op.dkg_key}
