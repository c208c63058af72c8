"""`clearingd devnet`: the project's main job on one machine.

Starts two (or more) real anvil chains and runs the operators' path (`node.devnet.homes`): one node
home per validator (`clearingd init`: encrypted keystores, mode 0600), the network file (`clearingd
network operator`, `network new`, `init --network-file`), the genesis key ceremony between the
validator processes (`clearingd dkg`, one OS process each, over loopback libp2p), `clearingd deploy
--demo` on every chain (production contracts with the ceremony's group key, `Governance` on the home
chain, demo tokens; anvil's dev key 0 as deployer), the demo book (`node.devnet.seed.seed_book`),
1 s interval mining (so pins confirm), `init --network-file` with the deployed file, then every
validator as its own OS process (`clearingd start`: libp2p, consensus, publisher, gRPC, metrics)
and watches the epochs. With `joining` > 0 it also creates that many JOINING homes (operators
outside the genesis set, configured from the network file without a share), funds their operators
and starts them like the others: they follow the epochs until governance adds them. At `crash_epoch` it moves BTC to 90,000 so the `fragile`
account falls under MM. It prints a live line per epoch, or with `--json` one summary at the end:
epochs signed, states published per chain, publish gas, the demo accounts' margin read over gRPC,
and whether each `GetMargin` proof verifies against every chain's registry.
With `accounts` > 0 (`--accounts N`) the chains start with a larger block gas limit, N more accounts are
seeded with real transactions before the validators start (`node.devnet.load`), and a background thread
makes ~1% of them trade and moves every mark on every chain in each epoch period.
Latency: each validator's `status.json` `signed_at` (when it came to hold each epoch's signed state) is
collected while watching; the summary's `epoch_latency_ms` is, per epoch, the time from the epoch's start
(genesis + e * period) to the state held at EVERY member, with its p50 and p90.

The watch loop records an epoch once every MEMBER of the set signing it (default: the genesis
set; a demo passes the governance-derived set per epoch) holds a signed state for it; an epoch no
member holds once all are `UNSIGNED_AFTER_EPOCHS` past it is recorded as unsigned (a gap).

Persists: the devnet home folder (node homes, logs, `devnet.json`); the chains live only as long
as the run. Ctrl-C (or `epochs` reached) stops validators, then chains, and exits cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridges.anvil import AnvilChain, get_free_port, rpc_call, start_chains
from node.devnet.homes import (
    DevnetError,
    NetworkPlan,
    NodeHome,
    add_bootstrap,
    configure_homes,
    create_network,
    deploy_chains,
    join_home,
    write_deployer_keystore,
    write_passphrase,
)
from node.devnet.seed import (
    SeededChain,
    apply_crash,
    compute_isolated_leg_margins,
    get_demo_accounts,
)

STARTUP_GRACE_S = 8.0  # validator processes import libp2p, web3, numpy before genesis
MAX_RUN_S_PER_EPOCH = 20.0
POLL_S = 0.5
UNSIGNED_AFTER_EPOCHS = 3  # members this far past an epoch they lack: no catch-up will bring it
STALL_EPOCHS = 10  # no epoch recorded for this many periods after the first: the network stalled
# With --accounts the pins lag the epoch start by 3 s: with 1 s blocks and one confirmation the pin for T_e
# is then final AT T_e, so an epoch's first computation succeeds instead of retrying until the pinned
# block's successor is confirmed (~2 s after T_e, which alone would miss a 1.5 s latency target).
LOAD_PIN_LAG_S = 3
# Each validator reads every account's positions (one view call per account and chain) at its first epoch.
COLD_READ_S_PER_ACCOUNT = 0.03


@dataclass(frozen=True)
class DevnetOptions:
    home: Path
    validators: int = 4
    threshold: int = 3
    chain_ids: tuple[int, ...] = (31337, 31338)
    network_id: int = 1
    epochs: int | None = None  # None: until Ctrl-C
    epoch_period_s: float = 3.0
    crash_epoch: int | None = 3  # the mark change; None: no crash
    json_output: bool = False
    joining: int = 0  # joining homes (no share; outside the genesis set) started with the others
    accounts: int = 0  # load accounts seeded before the validators start, trading every epoch (node.devnet.load)


@dataclass
class DevnetRun:
    options: DevnetOptions
    chains: list[AnvilChain] = field(default_factory=list)
    seeded: list[SeededChain] = field(default_factory=list)
    homes: list[NodeHome] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)
    governance: str = ""
    web: list[str] = field(default_factory=list)  # each validator's web view (host:port), `[web]` turned on
    genesis_time: float = 0.0
    market_time: int = 0  # the time the demo expiries are counted from
    market_lock: threading.Lock = field(default_factory=threading.Lock)  # mark changes: demo crash vs load
    load: Any = None  # node.devnet.load.LoadDriver while --accounts traffic runs
    load_summary: dict[str, Any] = field(default_factory=dict)
    status_paths: dict[int, Path] = field(default_factory=dict)  # node index -> status.json

    @property
    def genesis_homes(self) -> list[NodeHome]:
        """The genesis set's homes (node indices 0..validators-1); joining homes follow them."""
        return self.homes[: self.options.validators]

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()
        for p in self.processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.processes:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        for c in self.chains:
            c.stop()


def start_validator(home: NodeHome, log_dir: Path, web_listen: str = "") -> subprocess.Popen:
    log = open(log_dir / f"v{home.index}.log", "ab")  # noqa: SIM115 - owned by the process
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if web_listen:
        env |= {"CLEARING_WEB_ENABLED": "true", "CLEARING_WEB_LISTEN": web_listen}
    return subprocess.Popen([sys.executable, "-m", "node.cli.main", "start", "--home", str(home.path)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def setup(run: DevnetRun, say: Callable[[str], None]) -> None:
    """Chains, homes and the key ceremony, contracts, demo book, configs; no validator started yet."""
    from bridges.deploy import Deployment, get_dev_key
    from node.devnet.seed import seed_book

    opts = run.options
    if opts.epoch_period_s != int(opts.epoch_period_s) or opts.epoch_period_s < 1:
        raise DevnetError(f"--epoch-period: {opts.epoch_period_s} is not a whole number of seconds >= 1 (the network "
                          "file and governance count whole seconds)")
    opts.home.mkdir(parents=True, exist_ok=True)
    if opts.accounts:
        from node.devnet.load import start_load_chains

        run.chains = start_load_chains(list(opts.chain_ids))
    else:
        run.chains = start_chains(list(opts.chain_ids))
    say(f"chains: {', '.join(f'{c.chain_id}@{c.rpc_url}' for c in run.chains)}")
    pass_file = write_passphrase(opts.home)
    run.genesis_time = float(int(time.time() + STARTUP_GRACE_S))
    lag_s = LOAD_PIN_LAG_S if opts.accounts else 0
    plan = NetworkPlan(opts.network_id, int(run.genesis_time), int(opts.epoch_period_s), opts.threshold,
                       tuple((c.chain_id, 1, lag_s) for c in run.chains))
    genesis, network_file = create_network(opts.home, plan, [("127.0.0.1", get_free_port()) for _ in
                                                             range(opts.validators)], pass_file, say)
    joining = [join_home(opts.home / f"v{i}", i, pass_file, opts.network_id, ("127.0.0.1", get_free_port()))
               for i in range(opts.validators, opts.validators + opts.joining)]
    if joining:
        say(f"joining: {', '.join(f'v{h.index} {h.address}' for h in joining)} (no share; not in the genesis set)")
    deployed = deploy_chains(network_file, [c.rpc_url for c in run.chains],
                             write_deployer_keystore(opts.home, bytes.fromhex(get_dev_key(0)[2:]), pass_file), pass_file)
    run.governance = str(deployed[0]["governance"])
    run.market_time = int(time.time())
    run.seeded = [seed_book(c.rpc_url, i, Deployment.from_json(json.dumps(d["deployment"])), run.market_time)
                  for i, (c, d) in enumerate(zip(run.chains, deployed, strict=True))]
    if opts.accounts:
        from node.devnet.load import seed_load

        run.load_summary = seed_load(run.seeded, opts.accounts, run.market_time, say)
    for c in run.chains:
        for h in genesis + joining:  # operators pay for publishing
            rpc_call(c.rpc_url, "anvil_setBalance", [h.address, hex(10**21)])
        rpc_call(c.rpc_url, "evm_setIntervalMining", [1])
    say(f"contracts deployed (clearingd deploy) and seeded on {len(run.chains)} chains; governance at {run.governance}; "
        f"network hash {deployed[-1]['network_hash'][:18]}...")
    if opts.accounts:  # trades and mark moves from the middle of epoch 1 on, once the validators run
        from node.devnet.load import LoadDriver, get_load_addresses

        run.load = LoadDriver(run.seeded, get_load_addresses(opts.accounts), run.market_time, run.genesis_time,
                              opts.epoch_period_s, run.market_lock)
        run.load.start()
    homes = genesis + joining
    run.homes = configure_homes(homes, network_file, {c.chain_id: c.rpc_url for c in run.chains},
                                [f"127.0.0.1:{get_free_port()}" for _ in homes],
                                [f"127.0.0.1:{get_free_port()}" for _ in homes])
    if joining:
        add_bootstrap(run.homes[: opts.validators], run.homes[opts.validators:])
    run.web = [f"127.0.0.1:{get_free_port()}" for _ in run.homes]
    (opts.home / "devnet.json").write_text(json.dumps({
        "network_file": str(network_file),
        "chains": [json.loads(s.deployment.to_json()) | {"rpc_url": s.rpc_url} for s in run.seeded],
        "governance": run.governance, "genesis_time": run.genesis_time,
        "validators": [{"home": str(h.path), "address": h.address, "api": h.api_address,
                        "metrics": h.metrics_address, "web": f"http://{w}/"} for h, w in zip(run.homes, run.web, strict=True)],
        "demo_accounts": get_demo_accounts()}, indent=2))


def get_latest_states(run: DevnetRun) -> list[Any]:
    """Each validator's latest signed state over gRPC (None where it has none or does not answer)."""
    import grpc

    from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc

    states: list[Any] = []
    for h in run.homes:
        try:
            with grpc.insecure_channel(h.api_address) as channel:
                states.append(api_pb2_grpc.MarginServiceStub(channel).GetSignedState(
                    api_pb2.GetSignedStateRequest(), timeout=2).state)
        except grpc.RpcError:
            states.append(None)
    return states


def decode_leaf(leaf: bytes) -> tuple[Any, ...]:
    from eth_abi import decode
    from eth_utils import to_checksum_address

    from bridges.statecodec import LEAF_ABI_TYPES

    account, *rest = decode(list(LEAF_ABI_TYPES), leaf)
    return (to_checksum_address(account), *rest)


def get_demo_margins(run: DevnetRun, epoch: int) -> dict[str, Any]:
    """Demo accounts' margin (micro-USD -> USD) at `epoch` over gRPC, from the first validator that
    serves all of them (a validator may hold the epoch's state only after catching up)."""
    import grpc

    from node.api.client import get_margin, open_api_channel

    accounts = get_demo_accounts()
    for h in run.homes:
        channel = open_api_channel(h.api_address)
        try:
            margins = {name: get_margin(channel, account, epoch).report.margin for name, account in accounts.items()}
        except grpc.RpcError:
            continue
        finally:
            channel.close()
        return {name: {"initial_margin": m.initial_margin_micro_usd / 1e6,
                       "maintenance_margin": m.maintenance_margin_micro_usd / 1e6,
                       "equity": m.equity_micro_usd / 1e6, "liquidatable": m.liquidatable}
                for name, m in margins.items()}
    return {}


def get_registry(chain: SeededChain) -> Any:
    """The chain's MarginStateRegistry as a web3 contract (what a protocol would call)."""
    from eth_utils import to_checksum_address
    from web3 import Web3

    from bridges.artifacts import get_abi

    return Web3(Web3.HTTPProvider(chain.rpc_url)).eth.contract(
        address=to_checksum_address(chain.deployment.registry), abi=get_abi("MarginStateRegistry"))


def get_margin_reports(run: DevnetRun, epoch: int) -> tuple[int, dict[str, Any]]:
    """(node index, report per demo account) at `epoch` from the first validator that serves every
    demo account's leaf (one that adopted the state from a peer holds no leaves of it)."""
    import grpc

    from node.api.client import get_margin, open_api_channel

    errors = []
    for h in run.homes:
        channel = open_api_channel(h.api_address)
        try:
            return h.index, {name: get_margin(channel, account, epoch).report
                             for name, account in get_demo_accounts().items()}
        except grpc.RpcError as exc:
            errors.append(f"v{h.index}: {exc.details()}")
        finally:
            channel.close()
    raise DevnetError(f"epoch {epoch}: no validator serves the demo accounts' margin ({'; '.join(errors)})")


def check_accounts(run: DevnetRun, epoch: int) -> dict[str, Any]:
    """Demo accounts' margin over gRPC (validator 0 unless it lacks the leaves), each proof checked on
    every chain's registry."""
    out: dict[str, Any] = {}
    served_by, reports = get_margin_reports(run, epoch)
    for name, report in reports.items():
        account = get_demo_accounts()[name]
        m = report.margin
        leaf, proof = decode_leaf(report.leaf), [bytes(p) for p in report.proof]
        verified, flagged = {}, {}
        for s in run.seeded:
            registry = get_registry(s)
            verified[str(s.chain_id)] = bool(registry.functions.verifyLeaf(epoch, leaf, proof).call())
            flagged[str(s.chain_id)] = bool(registry.functions.isLiquidatable(account, epoch, leaf, proof).call())
        out[name] = {"account": account, "epoch": epoch, "served_by": served_by, "equity": m.equity_micro_usd / 1e6,
                     "initial_margin": m.initial_margin_micro_usd / 1e6,
                     "maintenance_margin": m.maintenance_margin_micro_usd / 1e6,
                     "liquidatable": m.liquidatable, "proof_verified_on_chain": verified,
                     "liquidatable_on_chain": flagged}
    return out


def get_publications(run: DevnetRun) -> tuple[dict[str, list[int]], list[int]]:
    """Epochs published per chain id (StatePublished events) and the gas of each publish transaction."""
    published: dict[str, list[int]] = {}
    gas: list[int] = []
    for s in run.seeded:
        registry = get_registry(s)
        w3 = registry.w3
        logs = registry.events.StatePublished().get_logs(from_block=0)
        published[str(s.chain_id)] = sorted(int(log["args"]["epoch"]) for log in logs)
        gas += [int(w3.eth.get_transaction_receipt(log["transactionHash"])["gasUsed"]) for log in logs]
    return published, gas


def get_states_at(run: DevnetRun, epoch: int, indices: list[int]) -> list[Any]:
    """The signed state for `epoch` at each validator of `indices` over gRPC (None where it holds none)."""
    import grpc

    from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc

    out: list[Any] = []
    for i in indices:
        try:
            with grpc.insecure_channel(run.homes[i].api_address) as channel:
                out.append(api_pb2_grpc.MarginServiceStub(channel).GetSignedState(
                    api_pb2.GetSignedStateRequest(epoch=epoch), timeout=2).state)
        except grpc.RpcError:
            out.append(None)
    return out


def record_epoch(run: DevnetRun, epoch: int, say: Callable[[str], None], members: list[int],
                 states: list[Any]) -> dict[str, Any]:
    """One epoch's line from the members' `states` (at least one held): key set, signers, params hash
    at every member, demo IMs, and whether every member holds the same signed state."""
    st = next(x for x in states if x is not None)
    margins = get_demo_margins(run, epoch)
    ims = {name: a["initial_margin"] for name, a in margins.items()}
    liquidatable = sorted(name for name, a in margins.items() if a["liquidatable"])
    identical = all(x is not None and bytes(x.digest) == bytes(st.digest) for x in states)
    say(f"epoch {epoch}: key set {st.keyset_id}, signers {list(st.signers)}, {st.leaf_count} accounts, "
        f"root 0x{bytes(st.root).hex()[:12]}..., same state at all {len(members)} members: {identical}, "
        f"IM {', '.join(f'{k} {v:,.0f}' for k, v in ims.items())}"
        + (f", liquidatable: {', '.join(liquidatable)}" if liquidatable else ""))
    return {"leaf_count": int(st.leaf_count), "params_hash": "0x" + bytes(st.params_hash).hex(), "signers": list(st.signers),
            "keyset_id": int(st.keyset_id), "members": list(members),
            "params_hash_at_validators": [None if x is None else "0x" + bytes(x.params_hash).hex() for x in states],
            "identical_at_all_validators": identical, "im": ims, "liquidatable": liquidatable,
            "pins": {str(p.chain_id): int(p.block_number) for p in st.pins}}


@dataclass
class WatchState:
    """What the watch loop has seen so far (filled in while the devnet runs)."""

    history: dict[int, dict[str, Any]] = field(default_factory=dict)
    unsigned: list[int] = field(default_factory=list)  # epochs no member holds (gaps)
    signed_at: dict[int, dict[int, float]] = field(default_factory=dict)  # epoch -> node index -> unix time
    first_epoch: int | None = None
    last_seen: int = -1
    crashed_at: int | None = None
    crash_blocks: tuple[int, int] | None = None  # first and last home-chain block of the mark change

    @property
    def done(self) -> int:
        return 0 if self.first_epoch is None else self.last_seen - self.first_epoch + 1


# A hook runs after each batch of newly signed epochs; `is_finished` ends the run.
WatchHook = Callable[[DevnetRun, WatchState, Callable[[str], None]], None]
# The node indices of the set that signs an epoch (default `get_genesis_members`).
MembersFn = Callable[[DevnetRun, int], list[int]]


def get_genesis_members(run: DevnetRun, epoch: int) -> list[int]:
    return list(range(run.options.validators))


def process_new_epochs(run: DevnetRun, ws: WatchState, say: Callable[[str], None], members: MembersFn) -> None:
    """Record every next epoch that all its members hold (or that is a gap), in order."""
    latest = [-1 if st is None else int(st.epoch) for st in get_latest_states(run)]
    if ws.first_epoch is None:
        first = min(latest[i] for i in members(run, 0))
        if first <= 0:
            return
        ws.first_epoch, ws.last_seen = first, first - 1
    while True:
        epoch = ws.last_seen + 1
        mem = members(run, epoch)
        if any(latest[i] < epoch for i in mem):
            return
        states = get_states_at(run, epoch, mem)
        if any(x is None for x in states) and any(latest[i] < epoch + UNSIGNED_AFTER_EPOCHS for i in mem):
            return  # a member may still catch it up
        if all(x is None for x in states):
            ws.unsigned.append(epoch)
            say(f"epoch {epoch}: signed by no member of {mem} (gap)")
        else:
            ws.history[epoch] = record_epoch(run, epoch, say, mem, states)
        ws.last_seen = epoch


def apply_crash_when_due(run: DevnetRun, ws: WatchState, say: Callable[[str], None]) -> None:
    if run.options.crash_epoch is not None and ws.crashed_at is None and ws.done >= run.options.crash_epoch:
        with run.market_lock:  # never between a load step's reading and writing of the spots
            ws.crash_blocks = apply_crash(run.seeded, run.market_time)
        ws.crashed_at = ws.last_seen
        say(f"mark change after epoch {ws.last_seen}: BTC 100,000 -> 90,000 on every chain")


def is_run_finished(run: DevnetRun, ws: WatchState) -> bool:
    epochs = run.options.epochs
    return epochs is not None and ws.done >= epochs and (ws.crashed_at is None or ws.last_seen > ws.crashed_at + 1)


def watch(run: DevnetRun, say: Callable[[str], None], hook: WatchHook = apply_crash_when_due,
          is_finished: Callable[[DevnetRun, WatchState], bool] = is_run_finished,
          budget_epochs: int | None = None, members: MembersFn = get_genesis_members) -> WatchState:
    """Record every epoch signed by all its members, run `hook` on progress, until `is_finished`."""
    opts = run.options
    ws = WatchState()
    budget_epochs = budget_epochs if budget_epochs is not None else opts.epochs
    budget = None if budget_epochs is None else STARTUP_GRACE_S + MAX_RUN_S_PER_EPOCH * (budget_epochs + 2) \
        + COLD_READ_S_PER_ACCOUNT * opts.accounts
    started = progressed = time.monotonic()
    while budget is None or time.monotonic() - started < budget:
        dead = [i for i, p in enumerate(run.processes) if p.poll() is not None]
        if dead:
            raise DevnetError(f"validator(s) {dead} exited; see {opts.home / 'logs'}")
        before = ws.last_seen
        process_new_epochs(run, ws, say, members)
        collect_signed_times(run, ws)
        if ws.last_seen != before:
            progressed = time.monotonic()
        elif ws.first_epoch is not None and time.monotonic() - progressed > STALL_EPOCHS * opts.epoch_period_s:
            raise DevnetError(f"epoch {ws.last_seen + 1} not held by all of its members {members(run, ws.last_seen + 1)} "
                              f"within {STALL_EPOCHS} epochs; see {opts.home / 'logs'}")
        hook(run, ws, say)
        if is_finished(run, ws):
            return ws
        time.sleep(POLL_S)
    raise DevnetError(f"only {ws.done} epochs signed within {budget:.0f}s")


def collect_signed_times(run: DevnetRun, ws: WatchState) -> None:
    """Merge each validator's `status.json` `signed_at` (the unix time it came to hold each recent epoch's
    signed state, `node.validator.get_signed_times`) into `ws.signed_at`; the first value seen is kept."""
    from node.config import load_config
    from node.metrics import read_status_file

    for h in run.homes:
        if h.index not in run.status_paths:
            run.status_paths[h.index] = load_config(h.path, env={}).get_path("node", "data_dir") / "status.json"
        status = read_status_file(run.status_paths[h.index]) or {}
        for epoch, at in (status.get("signed_at") or {}).items():
            ws.signed_at.setdefault(int(epoch), {}).setdefault(h.index, float(at))


def get_epoch_latencies(run: DevnetRun, ws: WatchState) -> dict[int, int | None]:
    """Per recorded epoch: milliseconds from its start (genesis + e * period) to its signed state held at EVERY
    member (the latest of the members' own times); None where a member's time is unknown."""
    out: dict[int, int | None] = {}
    for epoch, h in sorted(ws.history.items()):
        times = ws.signed_at.get(epoch, {})
        start = run.genesis_time + epoch * run.options.epoch_period_s
        out[epoch] = round((max(times[m] for m in h["members"]) - start) * 1000) \
            if all(m in times for m in h["members"]) else None
    return out


def wait_for_latencies(run: DevnetRun, ws: WatchState, timeout_s: float = 5.0) -> dict[int, int | None]:
    """The epoch latencies once every member's time of every recorded epoch is known (status.json trails the
    gRPC view by up to its rewrite interval), or what is known after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        collect_signed_times(run, ws)
        latencies = get_epoch_latencies(run, ws)
        if all(v is not None for v in latencies.values()) or time.monotonic() > deadline:
            return latencies
        time.sleep(POLL_S)


def summarize_latencies(latencies: dict[int, int | None]) -> dict[str, Any]:
    known = sorted(v for v in latencies.values() if v is not None)
    return {"epoch_latency_ms": {str(e): v for e, v in latencies.items()},
            "epoch_latency_p50_ms": round(statistics.median(known)) if known else None,
            "epoch_latency_p90_ms": known[max(0, -(-9 * len(known) // 10) - 1)] if known else None,
            "epoch_latency_unknown": [e for e, v in latencies.items() if v is None]}


def summarize(run: DevnetRun, ws: WatchState) -> dict[str, Any]:
    """The JSON summary: epochs, publications and gas per chain, demo accounts checked on chain."""
    opts, history = run.options, ws.history
    deadline = time.monotonic() + 3 * opts.epoch_period_s + 5  # the last publications may be in flight
    published, gas = get_publications(run)
    while time.monotonic() < deadline and not all(ws.last_seen in v for v in published.values()):
        time.sleep(POLL_S)
        published, gas = get_publications(run)
    latencies = wait_for_latencies(run, ws)
    common = [e for e in published[str(run.seeded[0].chain_id)] if all(e in v for v in published.values())]
    check_epoch = max(common) if common else ws.last_seen
    accounts = check_accounts(run, check_epoch)
    flagged = [e for e, h in sorted(history.items()) if "fragile" in h["liquidatable"]]
    home = str(run.seeded[0].chain_id)
    first_pinned = [min((e for e, h in history.items() if h["pins"].get(home, -1) >= block), default=None)
                    for block in (ws.crash_blocks or ())]
    by_epoch = sorted(history.items())
    return {
        "epochs_signed": sum(1 for h in history.values() if h["identical_at_all_validators"]),
        "epochs_observed": len(history),
        "first_epoch": ws.first_epoch, "last_epoch": ws.last_seen,
        "validators": opts.validators, "joining": opts.joining, "threshold": opts.threshold,
        "unsigned_epochs": list(ws.unsigned),
        "published": {cid: len(v) for cid, v in published.items()},
        "published_epochs": published,
        "publish_gas": {"mean": int(sum(gas) / len(gas)) if gas else None, "max": max(gas, default=None),
                        "min": min(gas, default=None)},
        "mark_change_after_epoch": ws.crashed_at,
        "fragile_first_liquidatable_epoch": flagged[0] if flagged else None,
        # first epochs whose home pin holds the first / the last transaction of the mark change
        "mark_change_pinned_epochs": first_pinned,
        "accounts": accounts,
        "proof_verified_on_chain": all(all(a["proof_verified_on_chain"].values()) for a in accounts.values()),
        "checked_epoch": check_epoch,
        "hedged_sum_of_leg_margins": sum(compute_isolated_leg_margins("hedged")),
        "params_hash_by_epoch": {str(e): h["params_hash"] for e, h in by_epoch},
        "params_hash_at_validators": {str(e): h["params_hash_at_validators"] for e, h in by_epoch},
        "identical_by_epoch": {str(e): h["identical_at_all_validators"] for e, h in by_epoch},
        "im_by_epoch": {str(e): h["im"] for e, h in by_epoch},
        "signers_by_epoch": {str(e): h["signers"] for e, h in by_epoch},
        "keyset_by_epoch": {str(e): h["keyset_id"] for e, h in by_epoch},
        "leaf_count_by_epoch": {str(e): h["leaf_count"] for e, h in by_epoch},
        **summarize_latencies(latencies),
        **({"load": run.load_summary | {"traffic": dict(run.load.stats)}} if run.load is not None else {}),
        "home": str(opts.home),
    }


def run_devnet(options: DevnetOptions, say: Callable[[str], None] = print, *,
               hook: WatchHook = apply_crash_when_due,
               is_finished: Callable[[DevnetRun, WatchState], bool] = is_run_finished,
               budget_epochs: int | None = None,
               extend: Callable[[DevnetRun, WatchState], dict[str, Any]] | None = None,
               members: MembersFn = get_genesis_members) -> dict[str, Any]:
    """Run the devnet until `is_finished` (default: `options.epochs` epochs signed by every validator
    and, after a mark change, two more) or Ctrl-C; returns the summary ({} when interrupted).
    `extend(run, state)` adds keys to the summary (the governance demo uses it); `members(run, epoch)`
    names the validators that must hold each epoch (default: the genesis set)."""
    run = DevnetRun(options)
    log_dir = options.home / "logs"
    try:
        setup(run, say)
        log_dir.mkdir(parents=True, exist_ok=True)
        run.processes = [start_validator(h, log_dir, w) for h, w in zip(run.homes, run.web, strict=True)]
        say(f"validators: {len(run.processes)} processes; logs in {log_dir}; genesis in "
            f"{max(0.0, run.genesis_time - time.time()):.1f}s, epoch {options.epoch_period_s}s")
        say(f"web view: http://{run.web[0]}/ (validator 0; every validator serves one, see devnet.json)")
        ws = watch(run, say, hook, is_finished, budget_epochs, members)
        summary = summarize(run, ws)
        if extend is not None:
            summary |= extend(run, ws)
        return summary
    except KeyboardInterrupt:
        say("interrupted: stopping validators and chains")
        return {}
    finally:
        run.stop()
