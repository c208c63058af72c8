"""Chain snapshots at a pinned block and their merge into the risk engine's inputs.

Purpose: `read_chain_snapshot(client, contracts, pin)` reads one chain's `CollateralVault`,
`PositionLedger` and `MarketOracle` through their paginated views at the pinned block hash and
returns the raw on-chain integers; `merge_snapshots(snapshots, home_chain_id, epoch_time)` nets
every EVM address across chains into one portfolio and converts to `risk` domain types.

Marks (documented choice): spot, forwards and collateral asset prices come from the HOME chain's
oracle only, so every portfolio is valued against one market. Implied vols are keyed by instrument
id, and instrument ids are per ledger, so each option's vol comes from the oracle of the chain whose
ledger defines the instrument.

Scales (bridges/statecodec.py): prices and strikes micro-USD (1e6), quantities 1e8, vols 1e6,
symbols bytes32, expiries unix seconds; collateral amounts are token base units (token `decimals`).
Days to expiry are fractional: `(expiry - epoch_time) / 86400`. Oracle `updatedAt` times are kept
(`quote_times`); `merge_snapshots(..., max_quote_age_s=N)` treats older quotes as invalid.

Invariants:
- Parse at the edge: an invalid on-chain value is never skipped. Values that break the epoch
  (a malformed instrument, duplicate keys, token decimals > 36) raise `InvalidChainValue`; values
  that only some accounts need (zero price, missing forward, vol <= 0, unknown or expired instrument)
  become per-account `AccountFailure`s naming chain and field, and those accounts get no margin.
- Everything is sorted (accounts by address bytes, then chain id, then on-chain ids), so equal
  chain data give equal `MarginInputs` in every process.
- Bounded: at most `MAX_ENTRIES` entries per view.
Persists nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_utils import to_checksum_address

from bridges.artifacts import get_abi
from bridges.chain import ChainClient, Pin, find_function_abi
from bridges.errors import InvalidChainValue, SnapshotTooLarge
from bridges.statecodec import (
    PRICE_SCALE,
    QTY_SCALE,
    VOL_SCALE,
    bytes32_to_symbol,
    withdrawal_id,
)
from risk.instruments import Instrument, Market, Position

PAGE_SIZE = 500  # the contracts' MAX_PAGE
MAX_ENTRIES = 1_000_000  # per paginated view
SECONDS_PER_DAY = 86_400
MAX_TOKEN_DECIMALS = 36
KIND_NAMES = {1: "option", 2: "future", 3: "perp", 4: "spot"}
RIGHT_NAMES = {0: "", 1: "call", 2: "put"}
REQUEST_OPEN = 1
DECIMALS_ABI = {"type": "function", "name": "decimals", "inputs": [], "stateMutability": "view",
                "outputs": [{"name": "", "type": "uint8"}]}


class HasContracts(Protocol):
    """Anything naming the three contracts, e.g. `bridges.deploy.Deployment`."""

    @property
    def vault(self) -> str: ...
    @property
    def ledger(self) -> str: ...
    @property
    def oracle(self) -> str: ...


@dataclass(frozen=True)
class ChainContracts:
    """Addresses of the clearing contracts on one chain."""

    vault: str
    ledger: str
    oracle: str


@dataclass(frozen=True)
class AssetInfo:
    symbol: str
    token: str
    decimals: int


@dataclass(frozen=True)
class InstrumentInfo:
    id: int
    underlying: str
    kind: str  # option, future, perp, spot
    strike: int  # micro-USD (options)
    expiry: int  # unix seconds (options, futures)
    right: str  # call, put or ""


@dataclass(frozen=True)
class WithdrawalRequestInfo:
    chain_id: int
    vault: str
    request_id: int
    account: str
    token: str
    asset: str
    amount: int  # token base units
    decimals: int
    request_epoch: int
    withdrawal_id: bytes


@dataclass(frozen=True)
class ChainSnapshot:
    """One chain's inputs at one pinned block, as on-chain integers."""

    pin: Pin
    contracts: ChainContracts
    assets: tuple[AssetInfo, ...]
    collateral: tuple[tuple[str, str, int], ...]  # (account, asset symbol, amount) with amount > 0
    instruments: tuple[InstrumentInfo, ...]
    positions: tuple[tuple[str, int, int], ...]  # (account, instrument id, quantity 1e8) with q != 0
    spots: tuple[tuple[str, int], ...]  # underlying -> micro-USD
    forwards: tuple[tuple[str, int, int], ...]  # (underlying, expiry, micro-USD)
    vols: tuple[tuple[int, int], ...]  # instrument id -> vol 1e6
    asset_prices: tuple[tuple[str, int], ...]  # asset -> micro-USD
    withdrawals: tuple[WithdrawalRequestInfo, ...]
    # "spot.BTC", "forward.BTC.<expiry>", "vol.<id>", "asset.USDC" -> oracle updatedAt (unix seconds)
    quote_times: tuple[tuple[str, int], ...] = ()


# --- reading ---------------------------------------------------------------------------------


class _Reader:
    """Pinned view calls on one contract (ABI from the committed artifact)."""

    def __init__(self, client: ChainClient, pin: Pin, address: str, contract: str) -> None:
        self.client, self.pin, self.address = client, pin, to_checksum_address(address)
        self.abi = get_abi(contract)
        self.contract = contract

    def call(self, name: str, *args: object) -> tuple[Any, ...]:
        return self.client.call_function(self.pin, self.address, find_function_abi(self.abi, name), args)

    def call_many(self, name: str, args_list: Sequence[Sequence[object]]) -> list[tuple[Any, ...]]:
        fn = find_function_abi(self.abi, name)
        return self.client.call_function_many(self.pin, self.address, fn, args_list)

    def read_pages(self, count: int, name: str, *prefix: object) -> list[Any]:
        """All entries of a paginated view `name(*prefix, offset, limit)` returning one array."""
        return [row for page in self._pages(count, name, *prefix) for row in page[0]]

    def _pages(self, count: int, name: str, *prefix: object) -> Iterable[tuple[Any, ...]]:
        if count > MAX_ENTRIES:
            raise SnapshotTooLarge(f"chain {self.pin.chain_id} {self.contract}.{name}: {count} > {MAX_ENTRIES}")
        for offset in range(0, count, PAGE_SIZE):
            page = self.call(name, *prefix, offset, PAGE_SIZE)
            expected = min(PAGE_SIZE, count - offset)
            if any(len(part) != expected for part in page):
                raise InvalidChainValue(f"chain {self.pin.chain_id} {self.contract}.{name}: page at {offset} "
                                        f"has {[len(p) for p in page]} entries, expected {expected}")
            yield page


def _symbol(raw: bytes, where: str) -> str:
    try:
        symbol = bytes32_to_symbol(raw)
    except Exception as exc:
        raise InvalidChainValue(f"{where}: symbol {raw.hex()} is not ASCII") from exc
    if not symbol:
        raise InvalidChainValue(f"{where}: empty symbol")
    return symbol


def _read_instruments(ledger: _Reader, cid: int) -> tuple[InstrumentInfo, ...]:
    out = []
    for iid, underlying, kind, strike, expiry, right in ledger.read_pages(int(ledger.call("instrumentCount")[0]),
                                                                         "getInstruments"):
        where = f"chain {cid} ledger.instrument[{iid}]"
        if kind not in KIND_NAMES or right not in RIGHT_NAMES:
            raise InvalidChainValue(f"{where}: kind {kind} / right {right} unknown")
        out.append(InstrumentInfo(int(iid), _symbol(underlying, f"{where}.underlying"), KIND_NAMES[kind],
                                  int(strike), int(expiry), RIGHT_NAMES[right]))
    if len({i.id for i in out}) != len(out):
        raise InvalidChainValue(f"chain {cid} ledger.instruments: duplicate ids")
    return tuple(sorted(out, key=lambda i: i.id))


def _read_positions(ledger: _Reader) -> tuple[tuple[str, int, int], ...]:
    """Positions of every ledger account: counts and first pages in JSON-RPC batches, then any
    further pages one by one."""
    accounts = ledger.read_pages(int(ledger.call("accountCount")[0]), "getAccounts")
    counts = [int(c[0]) for c in ledger.call_many("positionCount", [(a,) for a in accounts])]
    if any(c > MAX_ENTRIES for c in counts):
        raise SnapshotTooLarge(f"chain {ledger.pin.chain_id} PositionLedger.positionCount > {MAX_ENTRIES}")
    held = [(a, c) for a, c in zip(accounts, counts, strict=True) if c > 0]
    first = ledger.call_many("getPositions", [(a, 0, PAGE_SIZE) for a, _c in held])
    out = []
    for (account, count), page in zip(held, first, strict=True):
        rows = list(page[0])
        if len(rows) != min(count, PAGE_SIZE):
            raise InvalidChainValue(f"chain {ledger.pin.chain_id} ledger.getPositions({account}): "
                                    f"{len(rows)} rows, expected {min(count, PAGE_SIZE)}")
        for offset in range(PAGE_SIZE, count, PAGE_SIZE):
            rows += ledger.call("getPositions", account, offset, PAGE_SIZE)[0]
        out += [(to_checksum_address(account), int(iid), int(qty)) for iid, qty in rows if qty != 0]
    return tuple(sorted(out, key=lambda r: (bytes.fromhex(r[0][2:]), r[1])))


def _read_assets(client: ChainClient, pin: Pin, vault: _Reader) -> tuple[AssetInfo, ...]:
    out = []
    for sym, token in vault.read_pages(int(vault.call("assetCount")[0]), "getAssets"):
        decimals = int(client.call_function(pin, to_checksum_address(token), DECIMALS_ABI)[0])
        symbol = _symbol(sym, f"chain {pin.chain_id} vault.asset")
        if decimals > MAX_TOKEN_DECIMALS:
            raise InvalidChainValue(f"chain {pin.chain_id} vault.asset.{symbol}.decimals: {decimals} > 36")
        out.append(AssetInfo(symbol, to_checksum_address(token), decimals))
    if len({a.symbol for a in out}) != len(out):
        raise InvalidChainValue(f"chain {pin.chain_id} vault.assets: one symbol registered for two tokens")
    return tuple(out)


def _read_collateral(vault: _Reader, assets: Sequence[AssetInfo]) -> tuple[tuple[str, str, int], ...]:
    out = []
    count = int(vault.call("accountCount")[0])
    for page in vault._pages(count, "getBalancesPage"):
        for account, balances, _locked in zip(*page, strict=True):
            for asset, amount in zip(assets, balances, strict=True):
                if amount:
                    out.append((to_checksum_address(account), asset.symbol, int(amount)))
    return tuple(sorted(out, key=lambda r: (bytes.fromhex(r[0][2:]), r[1])))


def _read_withdrawals(vault: _Reader, assets: Sequence[AssetInfo], pin: Pin) -> tuple[WithdrawalRequestInfo, ...]:
    by_token = {a.token: a for a in assets}
    out = []
    for rid, account, token, amount, epoch, status in vault.read_pages(int(vault.call("openRequestCount")[0]),
                                                                      "getOpenRequests"):
        asset = by_token.get(to_checksum_address(token))
        if status != REQUEST_OPEN or asset is None:
            raise InvalidChainValue(f"chain {pin.chain_id} vault.request[{rid}]: status {status}, token {token}")
        out.append(WithdrawalRequestInfo(pin.chain_id, vault.address, int(rid), to_checksum_address(account),
                                         asset.token, asset.symbol, int(amount), asset.decimals, int(epoch),
                                         withdrawal_id(pin.chain_id, vault.address, int(rid))))
    return tuple(sorted(out, key=lambda w: w.request_id))


def _read_quotes(oracle: _Reader, count: int, name: str) -> list[tuple[Any, int, int]]:
    rows = []
    for keys, quotes in oracle._pages(count, name):
        rows += [(k, int(q[0]), int(q[1])) for k, q in zip(keys, quotes, strict=True)]
    return rows


def read_chain_snapshot(client: ChainClient, deployment: HasContracts, pin: Pin) -> ChainSnapshot:
    """Every input of one chain at `pin` (reads fail with ReorgDetected if the pin leaves the chain).

    The caller re-checks the pin afterwards (`client.read_at_pin` does both)."""
    cid = pin.chain_id
    if pin.chain_id != client.chain_id:
        raise InvalidChainValue(f"pin.chain_id: {pin.chain_id} read through the client of chain {client.chain_id}")
    contracts = ChainContracts(to_checksum_address(deployment.vault), to_checksum_address(deployment.ledger),
                               to_checksum_address(deployment.oracle))
    vault = _Reader(client, pin, contracts.vault, "CollateralVault")
    ledger = _Reader(client, pin, contracts.ledger, "PositionLedger")
    oracle = _Reader(client, pin, contracts.oracle, "MarketOracle")
    assets = _read_assets(client, pin, vault)
    n_spot, n_fwd, n_vol, n_asset = (int(x) for x in oracle.call("counts"))
    times: list[tuple[str, int]] = []
    spots, forwards, vols, prices = [], [], [], []
    for k, v, at in _read_quotes(oracle, n_spot, "getSpots"):
        spots.append((_symbol(k, f"chain {cid} oracle.spot"), v))
        times.append((f"spot.{spots[-1][0]}", at))
    for k, v, at in _read_quotes(oracle, n_fwd, "getForwards"):
        forwards.append((_symbol(k[0], f"chain {cid} oracle.forward"), int(k[1]), v))
        times.append((f"forward.{forwards[-1][0]}.{int(k[1])}", at))
    for k, v, at in _read_quotes(oracle, n_vol, "getVols"):
        vols.append((int(k), v))
        times.append((f"vol.{int(k)}", at))
    for k, v, at in _read_quotes(oracle, n_asset, "getAssetPrices"):
        prices.append((_symbol(k, f"chain {cid} oracle.asset"), v))
        times.append((f"asset.{prices[-1][0]}", at))
    return ChainSnapshot(
        pin=pin, contracts=contracts, assets=assets,
        collateral=_read_collateral(vault, assets),
        instruments=_read_instruments(ledger, cid),
        positions=_read_positions(ledger),
        spots=tuple(sorted(spots)), forwards=tuple(sorted(forwards)), vols=tuple(sorted(vols)),
        asset_prices=tuple(sorted(prices)),
        withdrawals=_read_withdrawals(vault, assets, pin),
        quote_times=tuple(sorted(times)),
    )


# --- merging ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountFailure:
    """Why one account's margin cannot be computed this epoch (it gets no leaf)."""

    account: str
    field: str
    reason: str


@dataclass(frozen=True)
class PendingWithdrawal:
    """An open withdrawal request with its collateral amount in asset units."""

    chain_id: int
    request_id: int
    account: str
    asset: str
    amount: int  # token base units
    units: float  # amount / 10**decimals
    request_epoch: int
    withdrawal_id: bytes


@dataclass(frozen=True)
class AccountInputs:
    """One EVM address netted across chains, in the risk engine's types."""

    account: str  # checksummed
    positions: tuple[Position, ...]
    collateral: tuple[tuple[str, float], ...]  # asset -> units, summed over chains
    collateral_by_chain: tuple[tuple[int, str, int], ...]  # (chain id, asset, base units)


@dataclass(frozen=True)
class MarginInputs:
    """Everything the margin state of one epoch is computed from."""

    epoch_time: int
    home_chain_id: int
    pins: tuple[Pin, ...]
    market: Market
    accounts: tuple[AccountInputs, ...]  # sorted by address bytes
    withdrawals: tuple[PendingWithdrawal, ...]  # sorted by (request epoch, chain id, request id)
    failures: tuple[AccountFailure, ...] = field(default=())  # sorted by account


def _account_key(account: str) -> bytes:
    return bytes.fromhex(account[2:])


def _stale_keys(snap: ChainSnapshot, epoch_time: int, max_age_s: int | None) -> dict[str, str]:
    """Quote key -> reason, for quotes older than `max_age_s` at the epoch time."""
    if max_age_s is None:
        return {}
    return {key: f"chain {snap.pin.chain_id} oracle.{key}: updated at {at}, older than {max_age_s}s at {epoch_time}"
            for key, at in snap.quote_times if epoch_time - at > max_age_s}


def _build_market(home: ChainSnapshot, epoch_time: int, max_age_s: int | None) -> tuple[Market, dict[str, str]]:
    """Market from the home chain's valid quotes, plus the reason each invalid key was left out."""
    issues = _stale_keys(home, epoch_time, max_age_s)
    spot: dict[str, float] = {}
    for sym, price in home.spots:
        if f"spot.{sym}" in issues:
            continue
        if price <= 0:
            issues[f"spot.{sym}"] = f"chain {home.pin.chain_id} oracle.spot.{sym}: price {price} <= 0"
        else:
            spot[sym] = price / PRICE_SCALE
    forwards: dict[tuple[str, float], float] = {}
    for sym, expiry, price in home.forwards:
        if expiry <= epoch_time or f"forward.{sym}.{expiry}" in issues:
            continue  # an expired forward is not a market input (instruments at it fail on their own)
        if price <= 0:
            issues[f"forward.{sym}.{expiry}"] = f"chain {home.pin.chain_id} oracle.forward.{sym}.{expiry}: price 0"
        else:
            forwards[(sym, (expiry - epoch_time) / SECONDS_PER_DAY)] = price / PRICE_SCALE
    prices: dict[str, float] = {}
    for sym, price in home.asset_prices:
        if f"asset.{sym}" in issues:
            continue
        if price <= 0:
            issues[f"asset.{sym}"] = f"chain {home.pin.chain_id} oracle.asset.{sym}: price {price} <= 0"
        else:
            prices[sym] = price / PRICE_SCALE
    return Market(spot=spot, forwards=forwards, asset_prices=prices), issues


def _convert_position(snap: ChainSnapshot, inst: InstrumentInfo | None, iid: int, qty: int,
                      epoch_time: int, market: Market, issues: Mapping[str, str],
                      vols: Mapping[int, int], stale: Mapping[str, str]) -> Position | str:
    """A risk Position, or the reason (naming chain and field) it cannot be valued."""
    where = f"chain {snap.pin.chain_id} ledger.instrument[{iid}]"
    if inst is None:
        return f"{where}: unknown instrument"
    if inst.underlying not in market.spot:
        return issues.get(f"spot.{inst.underlying}", f"{where}.underlying: no spot for {inst.underlying}")
    days = 0.0
    if inst.kind in ("option", "future"):
        if inst.expiry <= epoch_time:
            return f"{where}.expiry: {inst.expiry} is not after the epoch time {epoch_time}"
        days = (inst.expiry - epoch_time) / SECONDS_PER_DAY
        if (inst.underlying, days) not in market.forwards:
            return issues.get(f"forward.{inst.underlying}.{inst.expiry}",
                              f"{where}: no forward for {inst.underlying} at expiry {inst.expiry}")
    vol = 0.0
    if inst.kind == "option":
        raw_vol = vols.get(iid, 0)
        if f"vol.{iid}" in stale:
            return stale[f"vol.{iid}"]
        if raw_vol <= 0:
            return f"chain {snap.pin.chain_id} oracle.vol[{iid}]: vol {raw_vol} <= 0 or missing"
        vol = raw_vol / VOL_SCALE
    instrument = Instrument(underlying=inst.underlying, kind=inst.kind, days_to_expiry=days,
                            strike=inst.strike / PRICE_SCALE, right=inst.right, vol=vol)
    return Position(instrument=instrument, quantity=qty / QTY_SCALE)


def _collect_collateral(snapshots: Sequence[ChainSnapshot], market: Market, issues: Mapping[str, str],
                        fail: dict[str, AccountFailure]) -> dict[str, list[tuple[int, str, int, int]]]:
    per_account: dict[str, list[tuple[int, str, int, int]]] = defaultdict(list)
    for snap in snapshots:
        decimals = {a.symbol: a.decimals for a in snap.assets}
        for account, asset, amount in snap.collateral:
            per_account[account].append((snap.pin.chain_id, asset, amount, decimals[asset]))
            if asset not in market.asset_prices and account not in fail:
                reason = issues.get(f"asset.{asset}", f"home oracle.asset.{asset}: no price")
                fail[account] = AccountFailure(account, f"collateral.{asset}", reason)
    return per_account


def _sum_units(rows: Sequence[tuple[int, str, int, int]]) -> tuple[tuple[str, float], ...]:
    """Per-asset totals: exact integer sum at 10**36 scale, then one division (order-free)."""
    totals: dict[str, int] = defaultdict(int)
    for _cid, asset, amount, dec in rows:
        totals[asset] += amount * 10 ** (MAX_TOKEN_DECIMALS - dec)
    return tuple(sorted((a, t / 10**MAX_TOKEN_DECIMALS) for a, t in totals.items()))


def merge_snapshots(snapshots: Sequence[ChainSnapshot], home_chain_id: int, epoch_time: int,
                    max_quote_age_s: int | None = None) -> MarginInputs:
    """One portfolio per EVM address across chains; see the module docstring for marks and scales.

    With `max_quote_age_s`, an oracle value last updated more than that before `epoch_time` is
    treated like an invalid one (the accounts that need it fail, naming the quote)."""
    by_chain = {s.pin.chain_id: s for s in snapshots}
    if len(by_chain) != len(snapshots):
        raise InvalidChainValue("snapshots: two snapshots of one chain")
    if home_chain_id not in by_chain:
        raise InvalidChainValue(f"home_chain_id: no snapshot of home chain {home_chain_id}")
    ordered = [by_chain[c] for c in sorted(by_chain)]
    market, issues = _build_market(by_chain[home_chain_id], epoch_time, max_quote_age_s)
    fail: dict[str, AccountFailure] = {}
    positions: dict[str, list[Position]] = defaultdict(list)
    for snap in ordered:
        instruments = {i.id: i for i in snap.instruments}
        vols = dict(snap.vols)
        stale = _stale_keys(snap, epoch_time, max_quote_age_s)
        for account, iid, qty in snap.positions:
            converted = _convert_position(snap, instruments.get(iid), iid, qty, epoch_time, market, issues, vols,
                                          stale)
            if isinstance(converted, str):
                fail.setdefault(account, AccountFailure(account, f"positions[{snap.pin.chain_id}:{iid}]", converted))
            else:
                positions[account].append(converted)
    collateral = _collect_collateral(ordered, market, issues, fail)
    withdrawals = []
    for snap in ordered:
        for w in snap.withdrawals:
            withdrawals.append(PendingWithdrawal(w.chain_id, w.request_id, w.account, w.asset, w.amount,
                                                 w.amount / 10**w.decimals, w.request_epoch, w.withdrawal_id))
    accounts = []
    for account in sorted(set(positions) | set(collateral), key=_account_key):
        if account in fail:
            continue
        rows = collateral.get(account, [])
        accounts.append(AccountInputs(account, tuple(positions.get(account, ())), _sum_units(rows),
                                      tuple(sorted((c, a, amt) for c, a, amt, _d in rows))))
    return MarginInputs(
        epoch_time=epoch_time, home_chain_id=home_chain_id, pins=tuple(s.pin for s in ordered), market=market,
        accounts=tuple(accounts),
        withdrawals=tuple(sorted(withdrawals, key=lambda w: (w.request_epoch, w.chain_id, w.request_id))),
        failures=tuple(sorted(fail.values(), key=lambda f: _account_key(f.account))),
    )


def read_epoch_inputs(clients: Sequence[ChainClient], deployments: Mapping[int, HasContracts], home_chain_id: int,
                      epoch_time: int, max_quote_age_s: int | None = None) -> MarginInputs:
    """Pin every chain for `epoch_time` (its configured lag and confirmations), read its snapshot at
    the pin, re-check the pin (re-pin and re-read after a reorg, bounded) and merge.

    Raises PinNotReady, ChainUnavailable, ReorgDetected (retries exhausted) or InvalidChainValue."""
    snapshots = []
    for client in sorted(clients, key=lambda c: c.chain_id):
        deployment = deployments[client.chain_id]
        _pin, snap = client.read_at_pin(
            lambda client=client: client.pin_block(epoch_time),  # type: ignore[misc]
            lambda pin, client=client, deployment=deployment: read_chain_snapshot(client, deployment, pin),  # type: ignore[misc]
        )
        snapshots.append(snap)
    return merge_snapshots(snapshots, home_chain_id, epoch_time, max_quote_age_s)
