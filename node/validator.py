"""The validator process: configuration, composition of p2p + consensus, and the trio main loop.

`ValidatorConfig` (frozen) is what `node.config` produces and what `python -m node.validator
--config FILE` (JSON or TOML) reads. `serve_validator(config, store, ...)` runs the libp2p host and
the epoch engine until cancelled; `run_validator(config, store, ...)` wraps it in `trio.run` with a
graceful stop on SIGTERM/SIGINT. Blocking work (web3, SQLite, risk) runs via `trio.to_thread`.
A validator whose operator is not in the configured set (`index` None, no share) is a JOINING
validator: it follows the epochs and adopts states, and signs once a reshare voted by governance has
given it a share (`node.consensus.keychange`).
Persists: everything through the given `Store`; a `status.json` snapshot (metrics, phases, latencies,
the unix time each recent epoch's signed state was held (`signed_at`), peer scores, traffic, key sets,
reshares) in `data_dir`, rewritten atomically every `status_interval_s`; new shares from reshares as
encrypted keystores `keys_dir/share-<id>.json`; erases the keystore of a share whose key set a newer one
replaced (`make_share_eraser`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from node.config import ChainEndpoint
from node.consensus.engine import EngineParams, EpochEngine, Secrets
from node.consensus.inputs import ChainPinSource, FakeInputSource, InputSource
from node.consensus.publishing import NullPublisher, StatePublisher
from node.consensus.validation import EpochWindow, ValidatorSet
from node.p2p.host import GossipHost, HostConfig
from node.ports import Store, SystemClock

log = logging.getLogger("node.validator")

STATUS_FILE = "status.json"
STORE_FILE = "node.sqlite"
PUBLISH_FEE_CAP_WEI = 200 * 10**9


@dataclass(frozen=True)
class ValidatorConfig:
    index: int | None  # 0-based position in the validator set (BLS share index index + 1); None: joining
    validator_set: ValidatorSet
    share_sk: int | None
    operator_key: bytes  # 32 bytes
    p2p_seed: bytes  # 32 bytes, libp2p identity
    listen: str
    bootstrap: tuple[str, ...]
    chains: tuple[ChainEndpoint, ...]
    genesis_time: float
    epoch_period_s: float
    data_dir: Path
    inputs: str = "chain_pins"  # "margin" (production), "chain_pins" (pins only, no accounts), "fake" (tests)
    round_deadline_s: float = 0.0  # 0: three epoch periods
    book_full_check_every: int = 50  # epochs between full re-reads that check the chain books
    book_persist_every: int = 10  # epochs between saves of the chain books (data_dir/books.sqlite)
    publish_fallback_s: float = 3.0
    heartbeat_interval_s: float = 1.0
    catchup_interval_s: float = 2.0
    status_interval_s: float = 1.0
    home_chain_id: int = 0  # 0: the first chain
    publisher_key: bytes = field(default=b"", repr=False)  # 32-byte key paying publishState; empty: no publishing
    governance_address: str = ""  # Governance contract on the home chain; empty: the genesis schedule (RRA-1)
    max_quote_age_s: int = 0  # oldest oracle value an epoch uses (the network file's); 0: no bound
    keyset: Any = field(default=None, repr=False)  # node.crypto.dkg.KeySet of validator_set (to reshare it)
    later_shares: tuple = field(default=(), repr=False)  # DkgResults of later key sets held from earlier runs
    keys_dir: Path | None = None  # where new shares are written (with `passphrase`); None: kept in memory only
    share_file: Path | None = None  # keystore of the configured key set's share (erased once retired)
    passphrase: Any = field(default=None, repr=False)  # node.crypto.keystore.Secret
    extra: dict[str, Any] = field(default_factory=dict)  # test hooks (e.g. a byzantine mode); ignored here

    def __post_init__(self) -> None:
        if (self.index is None) != (self.share_sk is None):
            raise ValueError("index/share_sk: a joining validator has neither, a member both")
        if self.index is not None and not 0 <= self.index < self.validator_set.n:
            raise ValueError(f"index: {self.index} outside 0..{self.validator_set.n - 1}")
        if len(self.operator_key) != 32 or len(self.p2p_seed) != 32:
            raise ValueError("operator_key/p2p_seed: expected 32 bytes each")
        if self.epoch_period_s <= 0:
            raise ValueError(f"epoch_period_s: must be > 0, got {self.epoch_period_s}")
        if self.inputs not in ("margin", "chain_pins", "fake"):
            raise ValueError(f"inputs: unknown input source {self.inputs!r}")
        if self.max_quote_age_s < 0:
            raise ValueError(f"max_quote_age_s: must be >= 0 (0: no bound), got {self.max_quote_age_s}")

    @property
    def topic(self) -> str:
        """One topic per network: the members of every key set (old, new, pending) share one mesh."""
        return f"/clearing/{self.validator_set.network_id}/consensus/1"


def _hex(value: str) -> bytes:
    return bytes.fromhex(value.removeprefix("0x"))


def parse_config(raw: dict[str, Any]) -> ValidatorConfig:
    """Build a ValidatorConfig from a decoded JSON/TOML document (hex strings for bytes)."""
    vs = raw["validator_set"]
    vset = ValidatorSet(network_id=int(vs["network_id"]), keyset_id=int(vs["keyset_id"]),
                        operator_addresses=tuple(_hex(a) for a in vs["operators"]),
                        public_shares=tuple(_hex(p) for p in vs["public_shares"]),
                        threshold=int(vs["threshold"]), group_key=_hex(vs["group_key"]))
    secrets = raw["secrets"]
    keyset = None
    if vs.get("keyset_record"):
        from node.config import parse_keyset_record

        keyset = parse_keyset_record(vs["keyset_record"], vset.keyset_id, vset.group_key)
    chains = tuple(ChainEndpoint(chain_id=int(c["chain_id"]), rpc_url=str(c["rpc_url"]),
                                 lag_s=int(c.get("lag_s", 0)), confirmations=int(c.get("confirmations", 0)),
                                 registry=str(c.get("registry", "")), vault=str(c.get("vault", "")),
                                 ledger=str(c.get("ledger", "")), oracle=str(c.get("oracle", "")))
                   for c in raw.get("chains", []))
    optional: dict[str, Any] = {k: raw[k] for k in ("inputs", "round_deadline_s", "publish_fallback_s", "heartbeat_interval_s",
                                    "catchup_interval_s", "status_interval_s", "home_chain_id", "governance_address",
                                    "book_full_check_every", "book_persist_every", "max_quote_age_s")
                                if k in raw}
    if secrets.get("publisher_key"):
        optional["publisher_key"] = _hex(secrets["publisher_key"])
    if raw.get("keys_dir"):
        from node.crypto.keystore import Secret

        optional["keys_dir"] = Path(raw["keys_dir"])
        optional["passphrase"] = Secret(str(secrets["passphrase"]).encode())
    joining = raw.get("index") is None
    return ValidatorConfig(index=None if joining else int(raw["index"]), validator_set=vset,
                           share_sk=None if joining else int(secrets["share"], 16), keyset=keyset,
                           operator_key=_hex(secrets["operator_key"]), p2p_seed=_hex(secrets["p2p_seed"]),
                           listen=str(raw["listen"]), bootstrap=tuple(raw.get("bootstrap", [])), chains=chains,
                           genesis_time=float(raw["genesis_time"]), epoch_period_s=float(raw["epoch_period_s"]),
                           data_dir=Path(raw["data_dir"]), extra=dict(raw.get("extra", {})), **optional)


def load_config(path: Path) -> ValidatorConfig:
    text = path.read_text()
    raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    return parse_config(raw)


def _build_clients(config: ValidatorConfig) -> list[Any]:
    from bridges.chain import ChainClient, ChainConfig

    return [ChainClient(ChainConfig(chain_id=c.chain_id, rpc_url=c.rpc_url, lag_s=c.lag_s,
                                    confirmations=c.confirmations, timeout_s=2.0, max_attempts=2, backoff_s=0.2))
            for c in config.chains]


def build_input_source(config: ValidatorConfig) -> InputSource:
    if config.inputs == "fake":
        return FakeInputSource([c.chain_id for c in config.chains] or [1])
    if config.inputs == "chain_pins":
        return ChainPinSource(_build_clients(config))
    from node.consensus.margin_inputs import MarginInputSource

    deployments = {c.chain_id: {"vault": c.vault, "ledger": c.ledger, "oracle": c.oracle} for c in config.chains}
    clients = _build_clients(config)
    home_chain_id = config.home_chain_id or config.chains[0].chain_id
    governance_for = None
    if config.governance_address:  # the parameter schedule read from the chain at each epoch's home pin
        from node.governance_source import build_governance_source

        home = next((c for c in clients if c.chain_id == home_chain_id), None)
        if home is None:
            raise ValueError(f"home_chain_id: {home_chain_id} is not one of the configured chains")
        vs = config.validator_set
        source = build_governance_source(home, config.governance_address, vs.operator_addresses, vs.threshold,
                                         config.genesis_time, config.epoch_period_s,  # genesis key set: GENESIS_KEYSET_ID
                                         data_dir=config.data_dir)
        governance_for = source.get_state
    from node.book_store import BookStore

    return MarginInputSource(clients, deployments, home_chain_id, config.validator_set.network_id,
                             config.validator_set.keyset_id, governance_for=governance_for,
                             max_quote_age_s=config.max_quote_age_s or None,
                             book_store=BookStore(config.data_dir / "books.sqlite"),
                             full_check_every=config.book_full_check_every,
                             persist_every=config.book_persist_every)


def build_publisher(config: ValidatorConfig) -> StatePublisher:
    """`publishState` on every chain with a registry, paid by `publisher_key`; else a NullPublisher."""
    targets = [c for c in config.chains if c.registry]
    if not config.publisher_key or not targets:
        return NullPublisher()
    from bridges.chain import ChainClient, ChainConfig
    from bridges.publisher import FeePolicy, Publisher
    from node.consensus.publishing import ChainPublishers

    publishers = [Publisher(ChainClient(ChainConfig(chain_id=c.chain_id, rpc_url=c.rpc_url, timeout_s=5.0)),
                            c.registry, config.publisher_key, FeePolicy(fee_cap=PUBLISH_FEE_CAP_WEI))
                  for c in targets]
    return ChainPublishers(publishers)


def build_engine(config: ValidatorConfig, store: Store, inputs: InputSource, publisher: StatePublisher,
                 engine_factory: Callable[..., EpochEngine] = EpochEngine) -> EpochEngine:
    window = EpochWindow(genesis_time=config.genesis_time, period_s=config.epoch_period_s)
    params = EngineParams(round_deadline_s=config.round_deadline_s or 3 * config.epoch_period_s,
                          publish_fallback_s=config.publish_fallback_s,
                          heartbeat_interval_s=config.heartbeat_interval_s,
                          catchup_interval_s=config.catchup_interval_s,
                          partial_resend_s=max(1.0, config.epoch_period_s / 2))
    secrets = Secrets(config.share_sk, config.operator_key, keyset=config.keyset, later=config.later_shares)
    return engine_factory(config.validator_set, config.index, secrets, store, inputs, publisher, window, params,
                          SystemClock(), on_share=make_share_writer(config), on_retire=make_share_eraser(config))


def make_share_writer(config: ValidatorConfig) -> Callable[[Any], None] | None:
    """Write a share from a reshare to `keys_dir/share-<keyset id>.json` (encrypted, mode 0600)."""
    if config.keys_dir is None or config.passphrase is None:
        return None
    keys_dir, passphrase = config.keys_dir, config.passphrase

    def write(result: Any) -> None:
        from node.config import get_share_path
        from node.crypto.keyshare import write_share_keystore

        path = get_share_path(keys_dir, result.keyset.keyset_id)
        write_share_keystore(path, result, passphrase)
        log.info("new share written", extra={"keyset_id": result.keyset.keyset_id, "file": path.name})

    return write


def make_share_eraser(config: ValidatorConfig) -> Callable[[int, int], None] | None:
    """Erase the keystore of a retired key set's share (a newer key set signed a state): a share of a later
    key set (`keys_dir/share-<id>.json`) is removed; the configured one (`share_file`) keeps only its
    public part (`retire_share_keystore`), from which the node still starts. Bytes are zeroed first."""
    if config.keys_dir is None or config.passphrase is None:
        return None
    keys_dir, share_file, passphrase = config.keys_dir, config.share_file, config.passphrase
    configured = config.validator_set.keyset_id

    def erase(keyset_id: int, retired_by: int) -> None:
        from node.config import get_share_path
        from node.crypto.keyshare import retire_share_keystore
        from node.crypto.keystore import erase_keystore

        path = share_file if keyset_id == configured else get_share_path(keys_dir, keyset_id)
        if path is None or not path.is_file():
            log.info("retired share has no keystore file: nothing to erase", extra={"keyset_id": keyset_id})
            return
        if keyset_id == configured:
            retire_share_keystore(path, passphrase, retired_by)
        else:
            erase_keystore(path)
        log.info("retired share erased", extra={"keyset_id": keyset_id, "path": path.name,
                                                "retired_by_keyset": retired_by})

    return erase


def get_signed_times(engine: EpochEngine) -> dict[str, float]:
    """Unix time at which this node came to hold each recent epoch's signed state (its own aggregation or an
    adoption), from the rounds' monotonic marks; epochs held without a round here (catch-up) are absent."""
    offset = time.time() - trio.current_time()
    return {str(e): round(r.signed_at + offset, 3) for e, r in list(engine.rounds.items()) if r.signed_at is not None}


def get_status(engine: EpochEngine, host: GossipHost) -> dict[str, Any]:
    status = engine.get_status()
    status["signed_at"] = get_signed_times(engine)
    status["peer_id"] = str(host.peer_id)
    status["scores"] = host.scores.get_snapshot()
    status["rejections"] = dict(host.scores.rejections)
    status["traffic"] = {"messages_out": host.messages_out, "bytes_out": host.bytes_out,
                         "messages_in": host.messages_in, "bytes_in": host.bytes_in}
    return status


async def _status_loop(config: ValidatorConfig, engine: EpochEngine, host: GossipHost) -> None:
    path = config.data_dir / STATUS_FILE
    while True:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(get_status(engine, host)))
        os.replace(tmp, path)
        await trio.sleep(config.status_interval_s)


async def serve_validator(config: ValidatorConfig, store: Store, *, inputs: InputSource | None = None,
                          publisher: StatePublisher | None = None,
                          engine_factory: Callable[..., EpochEngine] = EpochEngine,
                          task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run p2p + consensus until cancelled; `task_status.started((engine, host))` once both run."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = build_engine(config, store, inputs or build_input_source(config), publisher or build_publisher(config),
                          engine_factory)
    host = GossipHost(HostConfig(p2p_seed=config.p2p_seed, listen=config.listen, bootstrap=config.bootstrap,
                                 topic=config.topic), validate=engine.validator.validate_gossip,
                      deliver=engine.deliver, serve=engine.serve_catchup)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await nursery.start(engine.run, host)
        nursery.start_soon(_status_loop, config, engine, host)
        log.info("validator running", extra={"index": config.index, "peer": str(host.peer_id), "listen": config.listen})
        task_status.started((engine, host))


async def _serve_until_signal(config: ValidatorConfig, store: Store, **kwargs: Any) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: serve_validator(config, store, **kwargs))
            async for signum in signals:
                log.info("stopping on signal", extra={"signal": int(signum)})
                nursery.cancel_scope.cancel()
                break


def run_validator(config: ValidatorConfig, store: Store, **kwargs: Any) -> None:
    """Blocking entry: serve until SIGTERM/SIGINT (must be called from the main thread)."""
    trio.run(lambda: _serve_until_signal(config, store, **kwargs))


def main(argv: list[str] | None = None, engine_factory: Callable[..., EpochEngine] = EpochEngine) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.validator", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="validator config (JSON or TOML)")
    parser.add_argument("--log-level", default=os.environ.get("CLEARING_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    from node.logs import setup_logging

    setup_logging(args.log_level)
    config = load_config(args.config)
    from node.store import SQLiteStore

    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(config.data_dir / STORE_FILE)
    try:
        run_validator(config, store, engine_factory=engine_factory)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
