"""`clearingd start`: run a node: the validator (p2p + consensus, `node.validator.run_validator`),
the public gRPC API, the admin socket and the metrics endpoint, all over one SQLite store.

Order: config (file < env < flags) -> JSON logging -> store -> secrets (registered for log
redaction) -> metrics HTTP -> API server -> admin socket -> registry watcher and web view (when
enabled) -> validator in the main thread until SIGTERM/SIGINT -> servers stopped, store closed.
`--no-validator` serves the API over the existing store without consensus (a read replica, or an
operator inspecting a stopped validator's data).
Persists through the store (and the validator's `status.json`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from node.cli.common import CliError, add_home_option, env_default, require_home, run
from node.config import NodeConfig, build_validator_config, load_config, load_validator_secrets

LOG = logging.getLogger("node.start")
STORE_FILE = "node.sqlite"
STATUS_FILE = "status.json"


def parse_overrides(args: argparse.Namespace) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--set {item!r}: expected section.key=value")
        overrides[key.strip()] = value
    named = {"api.listen": args.api_listen, "metrics.listen": args.metrics_listen, "node.log_level": args.log_level}
    overrides.update({k: v for k, v in named.items() if v})
    return overrides


def _register_secrets(secrets: Any) -> None:
    from node.logs import register_secret

    if secrets.share_sk is not None:
        register_secret(secrets.share_sk)
    for later in secrets.later:
        if later.share is not None:
            register_secret(later.share)
    register_secret(secrets.operator_key)
    register_secret(secrets.p2p_seed)


def _is_ready(api: Any, status_file: Path, validator: Any) -> bool:
    if api is not None and api.server is None:
        return False
    if validator is None:
        return True
    try:
        age = time.time() - status_file.stat().st_mtime
    except OSError:
        return False
    return age <= max(5.0, 3 * validator.status_interval_s)


def get_governance_reader(config: NodeConfig) -> Any:
    """A cached reader of the home chain's Governance contract, when `[governance]` is configured."""
    from node.api.governance import GovernanceReader

    gov, cons = config.values["governance"], config.values["consensus"]
    if not gov["rpc_url"]:
        return None
    return GovernanceReader(gov["rpc_url"], gov["address"], gov["confirmations"], cons["genesis_time"],
                            cons["epoch_period_s"], refresh_s=gov["refresh_s"])


def start_services(config: NodeConfig, store: Any, validator: Any, version: str) -> dict[str, Any]:
    """Metrics, API and admin servers over `store`; returns them by name (for `stop_services`)."""
    from node.api.admin import start_admin_server
    from node.api.live import LiveSources
    from node.api.sandbox import SandboxConfig
    from node.api.server import ApiServerConfig, start_api_server
    from node.api.service import ServiceLimits
    from node.metrics import MetricsServer, NodeMetrics, get_git_commit, read_status_file

    data_dir = config.get_path("node", "data_dir")
    status_file = data_dir / STATUS_FILE
    api_cfg = config.values["api"]
    sources = LiveSources(store, status_file, validator, network_id=config.get("node", "network_id"),
                          chains=tuple((c.chain_id, c.rpc_url) for c in config.chains), api_address=api_cfg["listen"],
                          metrics_address=config.get("metrics", "listen"), governance=get_governance_reader(config))
    metrics = NodeMetrics(store, status=lambda: read_status_file(status_file), clock=get_epoch_clock(config),
                          version=version, git_commit=get_git_commit()).install()
    metrics.init_chains([c.chain_id for c in config.chains])
    services: dict[str, Any] = {"metrics": None, "api": None, "admin": None, "pruner": None, "publications": None,
                                "web": None}
    if api_cfg["enabled"]:
        services["api"] = start_api_server(ApiServerConfig(
            listen=api_cfg["listen"], max_workers=api_cfg["max_workers"],
            max_concurrent_rpcs=api_cfg["max_concurrent_rpcs"], max_receive_bytes=api_cfg["max_receive_bytes"],
            max_send_bytes=api_cfg["max_send_bytes"],
            tls_cert_file=str(config.get_path("api", "tls_cert_file")) if api_cfg["tls_cert_file"] else "",
            tls_key_file=str(config.get_path("api", "tls_key_file")) if api_cfg["tls_key_file"] else "",
            tls_client_ca_file=str(config.get_path("api", "tls_client_ca_file")) if api_cfg["tls_client_ca_file"] else "",
            limits=ServiceLimits(rate_limit_rps=api_cfg["rate_limit_rps"], rate_limit_burst=api_cfg["rate_limit_burst"]),
            sandbox=SandboxConfig(workers=api_cfg["simulate_workers"], queue=api_cfg["simulate_queue"],
                                  timeout_s=api_cfg["simulate_timeout_s"], memory_mb=api_cfg["simulate_memory_mb"],
                                  nice=api_cfg["simulate_nice"], idle=api_cfg["simulate_idle"])),
            store, sources, observe=metrics.observe_api)
        sources.api_address = f"{api_cfg['listen'].rpartition(':')[0]}:{services['api'].port}"
    if config.get("metrics", "enabled"):
        services["metrics"] = MetricsServer(config.get("metrics", "listen"), metrics,
                                            ready=lambda: _is_ready(services["api"], status_file, validator)).start()
        sources.metrics_address = f"{config.get('metrics', 'listen').rpartition(':')[0]}:{services['metrics'].port}"
    services["admin"] = start_admin_server(config.get_path("admin", "socket"), store, sources, version)
    start_chain_views(config, store, validator, sources, services)
    if config.get("node", "keep_leaf_epochs") > 0 and hasattr(store, "prune_leaves"):
        from node.store import LeafPruner

        services["pruner"] = LeafPruner(store, config.get("node", "keep_leaf_epochs"),
                                        config.get("node", "prune_interval_s")).start()
    from node.api.server import freeze_startup_objects

    freeze_startup_objects()
    LOG.info("serving", extra={"api": sources.api_address, "metrics": sources.metrics_address,
                               "admin_socket": str(config.get_path("admin", "socket")),
                               "web": services["web"].url if services["web"] else None})
    return services


def get_epoch_clock(config: NodeConfig) -> Any:
    from node.metrics import EpochClock

    cons = config.values["consensus"]
    return EpochClock(cons["genesis_time"], cons["epoch_period_s"]) if cons["genesis_time"] > 0 else None


def start_chain_views(config: NodeConfig, store: Any, validator: Any, sources: Any, services: dict[str, Any]) -> None:
    """The registries' watcher (metrics: last published epoch, publisher balance) and the web view."""
    from node.publications import build_watcher

    publisher = ""
    if validator is not None and validator.publisher_key:
        from eth_account import Account

        publisher = Account.from_key(validator.publisher_key).address
    if config.get("metrics", "enabled") or config.get("web", "enabled"):
        services["publications"] = build_watcher(config.chains, publisher, config.get("consensus", "epoch_period_s"))
        if services["publications"] is not None:
            services["publications"].start()
    if config.get("web", "enabled"):
        from node.api.snapshot import SnapshotCache
        from node.web.server import WebServer
        from node.web.views import WebViews

        snapshots = services["api"].snapshots if services["api"] is not None else None
        if snapshots is None:
            snapshots = services["snapshots"] = SnapshotCache(store)
            snapshots.start()
        sandbox = services["api"].sandbox if services["api"] is not None else None
        views = WebViews(store, snapshots, sources, services["publications"], get_epoch_clock(config), sandbox)
        services["web"] = WebServer(config.get("web", "listen"), views).start()


def stop_services(services: dict[str, Any]) -> None:
    for name in ("web", "snapshots", "publications", "pruner", "api", "admin", "metrics"):
        if services.get(name) is not None:
            services[name].stop()


def wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def check_network_file(config: NodeConfig) -> None:
    """Refuse to start when the home's network file (if any) and its config disagree on what every validator
    must agree on: a node that read other blocks or another quote-age bound would sign other states."""
    from node.cli.init import NETWORK_FILE
    from node.network_file import find_config_conflicts, load_network_file

    path = config.home / NETWORK_FILE
    if not path.is_file():
        return
    conflicts = find_config_conflicts(load_network_file(path), config)
    if conflicts:
        raise CliError(f"{path}: the config contradicts the network file ({'; '.join(conflicts)}); rerun "
                       f"`clearingd init --home {config.home} --network-file {path}` or fix the option")


def handle_start(args: argparse.Namespace) -> int:
    from node.cli.version import get_version
    from node.logs import setup_logging
    from node.store import SQLiteStore

    config = load_config(require_home(args), overrides=parse_overrides(args))
    check_network_file(config)
    setup_logging(config.get("node", "log_level"), config.get("node", "log_format"))
    data_dir = config.get_path("node", "data_dir")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    validator = None
    if not args.no_validator:
        secrets = load_validator_secrets(config)
        _register_secrets(secrets)
        validator = build_validator_config(config, secrets)
    store = SQLiteStore(data_dir / STORE_FILE)
    services: dict[str, Any] = {}
    try:
        services = start_services(config, store, validator, get_version())
        if validator is not None:
            from node.validator import run_validator

            run_validator(validator, store)
        else:
            wait_for_signal()
    finally:
        stop_services(services)
        store.close()
        LOG.info("stopped")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("start", help="run the node: validator, gRPC API, admin socket, metrics")
    add_home_option(p)
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override one config option (repeatable); env CLEARING_<SECTION>_<KEY> works too")
    p.add_argument("--api-listen", default="", help="api.listen (env CLEARING_API_LISTEN)")
    p.add_argument("--metrics-listen", default="", help="metrics.listen (env CLEARING_METRICS_LISTEN)")
    p.add_argument("--log-level", default="", help="node.log_level (env CLEARING_NODE_LOG_LEVEL)")
    p.add_argument("--no-validator", action="store_true",
                   default=env_default("CLEARING_START_NO_VALIDATOR", "") in ("1", "true"),
                   help="serve the API over the store without running consensus (env CLEARING_START_NO_VALIDATOR=1)")
    p.set_defaults(func=run(handle_start))
