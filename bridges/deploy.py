"""Deploy and wire the clearing contracts on one EVM chain through web3.py, plus setup helpers.

`deploy_contracts` deploys the production contracts: MarginStateRegistry (network id, key-set id,
group key), CollateralVault (wired to the registry, with its approval window), PositionLedger and
MarketOracle, with the ledger and the vault linked (only the vault settles ledger cash); `deploy_all`
adds demo ERC-20 TestTokens registered as vault assets with their minimum withdrawal and USDC as the
settlement asset (tests, benchmarks). Both return a frozen `Deployment` (addresses, JSON round trip); the
resumable, confirmation-waiting deployment of `clearingd deploy` is `bridges.deployer`. Helpers register instruments, venues and publishers,
record matched trades (maker, taker) and perp funding indices, set market data (marks, and the risk model
v2 confidences and rates, validated before sending; one atomic `multicall` transaction up to
ORACLE_MAX_ROWS_PER_TX rows), mint, deposit (one
account, or many in batches paid by one sender), request withdrawals and payouts, and sweep debts. Transactions are signed locally (anvil dev keys in tests, any key elsewhere); each waits
for its receipt within a bounded time and a revert raises `DeploymentError` naming the step and the
contract error. Persists nothing (callers may store `Deployment.to_json()`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

from eth_account import Account
from eth_utils import function_abi_to_4byte_selector, get_abi_input_types, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound, Web3RPCError
from web3.logs import DISCARD

from bridges.artifacts import get_abi, get_contract_names, load_artifact
from bridges.book import is_printable_key
from bridges.errors import DeploymentError, InvalidDeployment, InvalidLeafValue
from bridges.statecodec import symbol_to_bytes32

DEV_MNEMONIC = "test test test test test test test test test test test junk"
RECEIPT_TIMEOUT_S = 30.0
RPC_TIMEOUT_S = 10.0
MAX_POLL_INTERVAL_S = 0.2
GAS_MARGIN_PCT = 20
MAX_GAS_PER_TX = 29_000_000

# (symbol, name, decimals) of the test collateral tokens (tests, benchmarks) and of the devnet's demo book.
DEFAULT_TOKENS: tuple[tuple[str, str, int], ...] = (("USDC", "Test USD Coin", 6), ("WETH", "Test Wrapped Ether", 18))
DEMO_TOKENS: tuple[tuple[str, str, int], ...] = (("USDC", "Test USD Coin", 6), ("ETH", "Test Ether", 18))

# Smallest withdrawal request per demo token (token units): 1 USDC, 0.001 ETH.
DEFAULT_MIN_WITHDRAWAL: Mapping[str, int] = {"USDC": 10**6, "WETH": 10**15, "ETH": 10**15}
SETTLEMENT_ASSET = "USDC"  # the demo settlement asset (ledger cash is swept into and paid out in it)
DEFAULT_APPROVAL_WINDOW = 8  # epochs an approval stays usable (CollateralVault.approvalWindow)
LEDGER_MAX_BATCH = 200  # PositionLedger.MAX_BATCH
VAULT_MAX_BATCH = 200  # CollateralVault.MAX_BATCH

KIND_OPTION, KIND_FUTURE, KIND_PERP, KIND_SPOT = 1, 2, 3, 4
RIGHT_NONE, RIGHT_CALL, RIGHT_PUT = 0, 1, 2


@lru_cache(maxsize=32)
def get_dev_key(index: int) -> str:
    """Private key (0x hex) of anvil's dev account `index` (public test mnemonic; local chains only)."""
    Account.enable_unaudited_hdwallet_features()
    return "0x" + Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key.hex().removeprefix("0x")


@dataclass(frozen=True)
class Deployment:
    """Addresses of one chain's clearing contracts (checksummed) and the ids they were built with."""

    chain_id: int
    network_id: int
    keyset_id: int
    registry: str
    vault: str
    ledger: str
    oracle: str
    tokens: tuple[tuple[str, str], ...]
    deployer: str
    start_block: int

    def get_token(self, symbol: str) -> str:
        for sym, address in self.tokens:
            if sym == symbol:
                return address
        raise InvalidDeployment(f"tokens: no token {symbol!r} on chain {self.chain_id}")

    def to_json(self) -> str:
        data = asdict(self)
        data["tokens"] = {sym: addr for sym, addr in self.tokens}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Deployment:
        try:
            data = json.loads(text)
            fields = {name: data[name] for name in cls.__dataclass_fields__}
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidDeployment(f"deployment json: {exc}") from exc
        for name in ("chain_id", "network_id", "keyset_id", "start_block"):
            if not isinstance(fields[name], int):
                raise InvalidDeployment(f"{name}: expected an integer, got {fields[name]!r}")
        try:
            for name in ("registry", "vault", "ledger", "oracle", "deployer"):
                fields[name] = to_checksum_address(fields[name])
            if not isinstance(fields["tokens"], dict):
                raise InvalidDeployment("tokens: expected an object symbol -> address")
            fields["tokens"] = tuple(sorted((str(s), to_checksum_address(a)) for s, a in fields["tokens"].items()))
        except (ValueError, TypeError) as exc:
            raise InvalidDeployment(f"address: {exc}") from exc
        return cls(**fields)


def decode_revert(abi: Sequence[Mapping[str, Any]], data: bytes) -> str:
    """`ErrorName(args)` for a custom-error revert payload (searched in `abi`, then in every clearing
    contract, since errors bubble up from callees such as tokens), else its hex."""
    from eth_abi import decode as abi_decode

    known = [e for name in get_contract_names() for e in get_abi(name) if e.get("type") == "error"]
    for entry in [*abi, *known]:
        error_abi: Any = entry
        if entry.get("type") == "error" and function_abi_to_4byte_selector(error_abi) == data[:4]:
            try:
                args = abi_decode(get_abi_input_types(error_abi), data[4:])
            except Exception:  # malformed payload: show the name only
                return str(entry["name"])
            return f"{entry['name']}{tuple(a.hex() if isinstance(a, bytes) else a for a in args)}"
    return "0x" + data.hex()


class ChainSender:
    """Signs and sends transactions from one key to one chain, one at a time (each waits for its receipt,
    so the pending nonce read before each send is exact); not thread-safe."""

    def __init__(self, rpc_url: str, private_key: str, receipt_timeout_s: float = RECEIPT_TIMEOUT_S) -> None:
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": RPC_TIMEOUT_S}))
        self.account = Account.from_key(private_key)
        self.address = self.account.address
        self.chain_id = int(self.w3.eth.chain_id)
        self.receipt_timeout_s = receipt_timeout_s

    def contract(self, name: str, address: str) -> Any:
        return self.w3.eth.contract(address=to_checksum_address(address), abi=get_abi(name))

    def deploy(self, name: str, *args: object) -> tuple[str, dict[str, Any]]:
        """Deploy contract `name`; returns (checksummed address, receipt)."""
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.get_abi(), bytecode=artifact.bytecode)
        receipt = self.send(f"deploy {name}", factory.constructor(*args), artifact.get_abi())
        return to_checksum_address(receipt["contractAddress"]), receipt

    def transact(self, name: str, address: str, function: str, *args: object) -> dict[str, Any]:
        """Call `function(*args)` of contract `name` at `address` in a transaction; returns the receipt."""
        call = getattr(self.contract(name, address).functions, function)(*args)
        return self.send(f"{name}.{function}", call, get_abi(name))

    def send(self, step: str, call: Any, abi: Sequence[Mapping[str, Any]], extra_gas: int = 0) -> dict[str, Any]:
        tx_hash, raw, _nonce = self.sign(step, call, abi, extra_gas)
        self.broadcast(step, raw)
        receipt = self.wait_for_receipt(step, tx_hash)
        if receipt["status"] != 1:
            raise DeploymentError(f"{step}: transaction {tx_hash.hex()} reverted")
        return receipt

    def sign(self, step: str, call: Any, abi: Sequence[Mapping[str, Any]], extra_gas: int = 0) -> tuple[bytes, bytes, int]:
        """Estimate (decoding a revert), fill and sign one transaction at the pending nonce; returns
        (hash, raw signed bytes, nonce) without sending it. The gas limit is the estimate plus
        GAS_MARGIN_PCT, plus `extra_gas` for what the estimate cannot see (capped at MAX_GAS_PER_TX)."""
        try:
            gas = int(call.estimate_gas({"from": self.address}))
            nonce = int(self.w3.eth.get_transaction_count(self.address, "pending"))
            tx = call.build_transaction({
                "from": self.address, "nonce": nonce, "chainId": self.chain_id,
                "gas": min(gas * (100 + GAS_MARGIN_PCT) // 100 + extra_gas, MAX_GAS_PER_TX),
            })
        except ContractCustomError as exc:
            raise DeploymentError(f"{step}: reverted {decode_revert(abi, _revert_bytes(exc))}") from exc
        except (ContractLogicError, Web3RPCError, ValueError) as exc:
            raise DeploymentError(f"{step}: {exc}") from exc
        signed = self.account.sign_transaction(tx)
        return bytes(signed.hash), bytes(signed.raw_transaction), nonce

    def broadcast(self, step: str, raw: bytes, resend: bool = False) -> None:
        """Send a signed transaction; with `resend`, a node that already knows it (or mined it) is fine."""
        try:
            self.w3.eth.send_raw_transaction(raw)
        except (Web3RPCError, ValueError) as exc:
            known = any(s in str(exc).lower() for s in ("already known", "nonce too low", "already imported"))
            if not (resend and known):
                raise DeploymentError(f"{step}: send failed: {exc}") from exc

    def wait_for_receipt(self, step: str, tx_hash: bytes) -> dict[str, Any]:
        deadline = time.monotonic() + self.receipt_timeout_s
        interval = 0.005
        while True:
            try:
                return dict(self.w3.eth.get_transaction_receipt(HexBytes(tx_hash)))
            except TransactionNotFound:
                pass
            if time.monotonic() > deadline:
                raise DeploymentError(f"{step}: no receipt for {tx_hash.hex()} within {self.receipt_timeout_s}s")
            time.sleep(interval)
            interval = min(interval * 2, MAX_POLL_INTERVAL_S)


def _revert_bytes(exc: ContractCustomError) -> bytes:
    data = exc.data if isinstance(exc.data, str) else (exc.args[0] if exc.args else "")
    try:
        return bytes.fromhex(str(data).removeprefix("0x"))
    except ValueError:
        return b""


def deploy_contracts(rpc_url: str, deployer_key: str, network_id: int, keyset_id: int, group_key: bytes,
                     approval_window: int = DEFAULT_APPROVAL_WINDOW) -> Deployment:
    """Deploy and wire the production contracts on one chain (no tokens); `group_key` is the EIP-2537 G2
    group key (256 bytes); the deployer owns the vault, the ledger and the oracle."""
    sender = ChainSender(rpc_url, deployer_key)
    registry, receipt = sender.deploy("MarginStateRegistry", network_id, keyset_id, group_key)
    vault, _ = sender.deploy("CollateralVault", registry, approval_window, sender.address)
    ledger, _ = sender.deploy("PositionLedger", sender.address)
    oracle, _ = sender.deploy("MarketOracle", sender.address)
    sender.transact("PositionLedger", ledger, "setVault", vault)
    sender.transact("CollateralVault", vault, "setLedger", ledger)
    return Deployment(chain_id=sender.chain_id, network_id=network_id, keyset_id=keyset_id, registry=registry,
                      vault=vault, ledger=ledger, oracle=oracle, tokens=(), deployer=sender.address,
                      start_block=int(receipt["blockNumber"]))


def deploy_all(rpc_url: str, deployer_key: str, network_id: int, keyset_id: int, group_key: bytes,
               tokens: Sequence[tuple[str, str, int]] = DEFAULT_TOKENS,
               approval_window: int = DEFAULT_APPROVAL_WINDOW,
               min_withdrawal: Mapping[str, int] = DEFAULT_MIN_WITHDRAWAL,
               settlement_asset: str | None = SETTLEMENT_ASSET) -> Deployment:
    """`deploy_contracts` plus demo TestTokens registered as collateral (tests, benchmarks).

    `min_withdrawal` maps each token symbol of `tokens` to its smallest withdrawal (token units);
    `settlement_asset` (a symbol of `tokens`, if it is one) becomes the vault's settlement asset."""
    missing = [symbol for symbol, _name, _decimals in tokens if symbol not in min_withdrawal]
    if missing:
        raise DeploymentError(f"min_withdrawal: no minimum for token(s) {', '.join(missing)}")
    deployment = deploy_contracts(rpc_url, deployer_key, network_id, keyset_id, group_key, approval_window)
    sender = ChainSender(rpc_url, deployer_key)
    for symbol, name, decimals in tokens:
        deployment = deploy_test_token(sender, deployment, symbol, name, decimals, min_withdrawal[symbol])
    if settlement_asset in dict(deployment.tokens):
        set_settlement_asset(sender, deployment, settlement_asset)
    return deployment


# --- setup helpers (owner-only calls take the deployer's sender) ---


def register_asset(owner: ChainSender, deployment: Deployment, symbol: str, token: str,
                   min_withdrawal: int) -> Deployment:
    """Register an existing ERC-20 as vault collateral with its smallest withdrawal (token units);
    returns the Deployment with the token added."""
    if symbol in dict(deployment.tokens):
        raise DeploymentError(f"registerAsset: symbol {symbol!r} already registered on chain {deployment.chain_id}")
    owner.transact("CollateralVault", deployment.vault, "registerAsset", symbol_to_bytes32(symbol),
                   to_checksum_address(token), min_withdrawal)
    return replace(deployment, tokens=tuple(sorted((*deployment.tokens, (symbol, to_checksum_address(token))))))


def set_settlement_asset(owner: ChainSender, deployment: Deployment, symbol: str) -> dict[str, Any]:
    """Make the registered token `symbol` the vault's settlement asset (once per vault)."""
    return owner.transact("CollateralVault", deployment.vault, "setSettlementAsset", deployment.get_token(symbol))


def set_min_withdrawal(owner: ChainSender, deployment: Deployment, symbol: str, amount: int) -> dict[str, Any]:
    """Set the smallest withdrawal request (token units) of a registered token."""
    return owner.transact("CollateralVault", deployment.vault, "setMinWithdrawal", deployment.get_token(symbol),
                          amount)


def deploy_test_token(owner: ChainSender, deployment: Deployment, symbol: str, name: str, decimals: int,
                      min_withdrawal: int) -> Deployment:
    """Deploy a TestToken owned by `owner` and register it as collateral; returns the new Deployment."""
    token, _ = owner.deploy("TestToken", name, symbol, decimals, owner.address)
    return register_asset(owner, deployment, symbol, token, min_withdrawal)


def register_instrument(owner: ChainSender, deployment: Deployment, instrument_id: int, underlying: str,
                        kind: int, strike: int = 0, expiry: int = 0, right: int = RIGHT_NONE) -> None:
    """Register an instrument; strike in micro-USD, expiry unix seconds (0 for perps and spots)."""
    instrument = (instrument_id, symbol_to_bytes32(underlying), kind, strike, expiry, right)
    owner.transact("PositionLedger", deployment.ledger, "registerInstrument", instrument)


def set_venue(owner: ChainSender, deployment: Deployment, venue: str, authorised: bool = True) -> None:
    owner.transact("PositionLedger", deployment.ledger, "setVenue", to_checksum_address(venue), authorised)


def set_publisher(owner: ChainSender, deployment: Deployment, publisher: str, authorised: bool = True) -> None:
    owner.transact("MarketOracle", deployment.oracle, "setPublisher", to_checksum_address(publisher), authorised)


@dataclass(frozen=True)
class MatchedTrade:
    """One matched trade: the taker's position moves by `quantity` (scale 1e8, signed), the maker's by
    `-quantity`, both at `price` (micro-USD per unit); each side's cash moves by floor(-q * price / 1e8)."""

    maker: str
    taker: str
    instrument_id: int
    quantity: int
    price: int

    def to_abi_tuple(self) -> tuple[str, str, int, int, int]:
        return (to_checksum_address(self.maker), to_checksum_address(self.taker), self.instrument_id,
                self.quantity, self.price)


def record_trade(venue: ChainSender, deployment: Deployment, maker: str, taker: str, instrument_id: int,
                 quantity: int, price: int) -> dict[str, Any]:
    """Record one matched trade from an authorised venue (a venue trading its own book is the maker)."""
    trade = MatchedTrade(maker, taker, instrument_id, quantity, price)
    return venue.transact("PositionLedger", deployment.ledger, "recordTrade", *trade.to_abi_tuple())


def record_trades(venue: ChainSender, deployment: Deployment, trades: Sequence[MatchedTrade]) -> list[dict[str, Any]]:
    """Record matched trades in order, LEDGER_MAX_BATCH per transaction; returns the receipts."""
    return [venue.transact("PositionLedger", deployment.ledger, "recordTrades",
                           [t.to_abi_tuple() for t in trades[i:i + LEDGER_MAX_BATCH]])
            for i in range(0, len(trades), LEDGER_MAX_BATCH)]


def set_funding_indices(venue: ChainSender, deployment: Deployment, indices: Mapping[int, int]) -> dict[str, Any]:
    """Set the cumulative funding index (micro-USD per unit) of perps: instrument id -> absolute index."""
    return venue.transact("PositionLedger", deployment.ledger, "setFundingIndices", list(indices),
                          list(indices.values()))


ORACLE_MAX_BATCH = 200  # MarketOracle.MAX_BATCH: rows per setter call
# Rows per publish transaction (one `multicall`). Worst case, every row a new key of the dearest table
# (confidences): about 75k gas a row, so 150 rows use about 11.3M gas, under 40 % of a 30M-gas block, with
# a gas limit of about 14M (tests/bridges/test_oracle_multicall.py checks it); updating existing keys costs
# 9.5k to 11.2k gas a row.
ORACLE_MAX_ROWS_PER_TX = 150
# Gas a row may cost beyond the estimate: estimated in the same second as the last write of the same value,
# the rewrite of its quote slot (value, updatedAt) is a no-op (100 gas), but mined in a later second it is
# a real write (2,900 gas).
ORACLE_REWRITE_GAS = 2_900
CONFIDENCE_SPOT, CONFIDENCE_PERP, CONFIDENCE_EXPIRY, CONFIDENCE_ASSET = 1, 2, 3, 4  # MarketOracle.CONFIDENCE_*
CONFIDENCE_ONE = 10**9  # MarketOracle.CONFIDENCE_ONE: confidence 1.0
MAX_RATE = 2 * 10**9  # MarketOracle.MAX_RATE: 2.0 per year, rates in 1e9 fixed point
MAX_QUOTE = 2**192 - 1  # a Quote's value is a uint192
MAX_UINT64 = 2**64 - 1

OracleCall = tuple[str, list[list[Any]]]  # (MarketOracle setter, argument columns)


def set_market(publisher: ChainSender, deployment: Deployment, spots: Mapping[str, int] | None = None,
               forwards: Mapping[tuple[str, int], int] | None = None, vols: Mapping[int, int] | None = None,
               asset_prices: Mapping[str, int] | None = None,
               confidences: Mapping[tuple[int, str, int], int] | None = None,
               rates: Mapping[tuple[str, int], int] | None = None) -> list[dict[str, Any]]:
    """Set oracle values, in the contract's fixed point: spots/forwards/asset prices micro-USD, vols
    scale 1e6 per instrument id, confidences 1e9 (CONFIDENCE_ONE = 1.0) keyed (kind CONFIDENCE_*, symbol,
    expiry: non-zero for CONFIDENCE_EXPIRY only), rates 1e9 per (underlying, expiry) in [0, MAX_RATE].

    Every value is checked before anything is sent (`DeploymentError` naming the table and key). Then the
    setter calls (at most ORACLE_MAX_BATCH rows each) go out through `MarketOracle.multicall`:
    - up to ORACLE_MAX_ROWS_PER_TX rows in all, in ONE transaction, so the update is atomic: any block
      (a validator's pin) holds either every new value or none of them, and a revert writes nothing;
    - above that, in several transactions of at most ORACLE_MAX_ROWS_PER_TX rows, filled in table order
      (spots, forwards, vols, asset prices, confidences, rates) with whole tables where a table fits in
      one transaction (only a larger table is split). Each transaction is atomic, the publish as a whole
      is not: a pin between two of them sees the new values of the earlier ones next to the previous
      values of the later ones, and a failure part-way leaves the earlier ones applied (values are
      absolute, so sending the same values again is safe).
    Returns the receipts in order, one per transaction (none when every table is empty)."""
    calls = _market_calls(spots or {}, forwards or {}, vols or {}, asset_prices or {}, confidences or {}, rates or {})
    oracle = publisher.contract("MarketOracle", deployment.oracle)
    receipts = []
    for transaction in pack_oracle_calls(calls, ORACLE_MAX_ROWS_PER_TX):
        data = [oracle.encode_abi(function, args=columns) for function, columns in transaction]
        step = f"MarketOracle.multicall({', '.join(function for function, _columns in transaction)})"
        rows = sum(len(columns[0]) for _function, columns in transaction)
        receipts.append(publisher.send(step, oracle.functions.multicall(data), get_abi("MarketOracle"),
                                       extra_gas=rows * ORACLE_REWRITE_GAS))
    return receipts


def pack_oracle_calls(calls: Sequence[OracleCall], max_rows: int) -> list[list[OracleCall]]:
    """The setter calls of each transaction: at most `max_rows` rows per transaction and ORACLE_MAX_BATCH
    per call, in the order of `calls`; a table that fits in one transaction is never split (it opens a new
    transaction when the current one has no room for it), a larger one fills transactions in turn."""
    transactions: list[list[OracleCall]] = [[]]
    used = 0
    for function, columns in calls:
        rows = len(columns[0])
        if used and used + rows > max_rows and rows <= max_rows:
            transactions.append([])
            used = 0
        start = 0
        while start < rows:
            if used == max_rows:
                transactions.append([])
                used = 0
            take = min(rows - start, max_rows - used, ORACLE_MAX_BATCH)
            transactions[-1].append((function, [column[start:start + take] for column in columns]))
            start, used = start + take, used + take
    return [t for t in transactions if t]


def _market_calls(spots: Mapping[str, int], forwards: Mapping[tuple[str, int], int], vols: Mapping[int, int],
                  asset_prices: Mapping[str, int], confidences: Mapping[tuple[int, str, int], int],
                  rates: Mapping[tuple[str, int], int]) -> list[OracleCall]:
    """(setter, argument columns) of each non-empty table, every key and value validated."""
    calls: list[OracleCall] = []
    if spots:
        calls.append(("setSpots", [[oracle_key(f"spots[{s!r}]", s) for s in spots],
                                   [_oracle_int(f"spots[{s!r}]", v, MAX_QUOTE) for s, v in spots.items()]]))
    if forwards:
        rows = [(oracle_key(f"forwards[{k!r}]", u), _oracle_uint64(f"forwards[{k!r}]", e),
                 _oracle_int(f"forwards[{k!r}]", v, MAX_QUOTE)) for k, v in forwards.items() for u, e in (k,)]
        calls.append(("setForwards", [list(c) for c in zip(*rows, strict=True)]))
    if vols:
        calls.append(("setVols", [[_oracle_uint64(f"vols[{i!r}] instrument id", i) for i in vols],
                                  [_oracle_int(f"vols[{i!r}]", v, MAX_QUOTE) for i, v in vols.items()]]))
    if asset_prices:
        calls.append(("setAssetPrices", [[oracle_key(f"asset_prices[{s!r}]", s) for s in asset_prices],
                                         [_oracle_int(f"asset_prices[{s!r}]", v, MAX_QUOTE)
                                          for s, v in asset_prices.items()]]))
    if confidences:
        keyed = [_confidence_row(k, v) for k, v in confidences.items()]
        calls.append(("setConfidences", [list(c) for c in zip(*keyed, strict=True)]))
    if rates:
        rows = [(oracle_key(f"rates[{k!r}]", u), _oracle_uint64(f"rates[{k!r}]", e),
                 _oracle_int(f"rates[{k!r}]", v, MAX_RATE)) for k, v in rates.items() for u, e in (k,)]
        calls.append(("setRates", [list(c) for c in zip(*rows, strict=True)]))
    return calls


def _confidence_row(key: tuple[int, str, int], value: int) -> tuple[int, bytes, int, int]:
    where = f"confidences[{key!r}]"
    kind, symbol, expiry = key
    if isinstance(kind, bool) or kind not in (CONFIDENCE_SPOT, CONFIDENCE_PERP, CONFIDENCE_EXPIRY, CONFIDENCE_ASSET):
        raise DeploymentError(f"{where}: unknown kind {kind!r} (1 spot, 2 perp, 3 expiry, 4 asset)")
    if kind == CONFIDENCE_EXPIRY:
        expiry = _oracle_uint64(where, expiry)
    elif expiry != 0:
        raise DeploymentError(f"{where}: expiry must be 0 for kind {kind} (only kind 3 is per expiry)")
    return kind, oracle_key(where, symbol), expiry, _oracle_int(where, value, CONFIDENCE_ONE)


def oracle_key(where: str, symbol: str) -> bytes:
    """bytes32 of a symbol the oracle accepts (AsciiKeyLib: 1..32 printable ASCII, no space), else
    DeploymentError naming `where`."""
    try:
        raw = symbol_to_bytes32(symbol)
    except (InvalidLeafValue, UnicodeEncodeError, AttributeError):
        raw = b""
    if not is_printable_key(raw):
        raise DeploymentError(f"{where}: symbol {symbol!r} must be 1..32 printable ASCII characters (no space)")
    return raw


def _oracle_uint64(where: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_UINT64:
        raise DeploymentError(f"{where}: {value!r} must be an integer in [1, 2^64 - 1]")
    return value


def _oracle_int(where: str, value: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DeploymentError(f"{where}: value {value!r} must be a fixed-point integer")
    if not 0 <= value <= maximum:
        raise DeploymentError(f"{where}: value {value} outside [0, {maximum}]")
    return value


def mint(owner: ChainSender, deployment: Deployment, symbol: str, to: str, amount: int) -> dict[str, Any]:
    """Mint `amount` (token units) of the TestToken `symbol` (owned by `owner`) to `to`."""
    return owner.transact("TestToken", deployment.get_token(symbol), "mint", to_checksum_address(to), amount)


def mint_and_deposit(owner: ChainSender, deployment: Deployment, account: ChainSender, symbol: str,
                     amount: int) -> dict[str, Any]:
    """Mint `amount` (token units) of `symbol` to `account`, approve the vault and deposit it."""
    token = deployment.get_token(symbol)
    mint(owner, deployment, symbol, account.address, amount)
    account.transact("TestToken", token, "approve", deployment.vault, amount)
    return account.transact("CollateralVault", deployment.vault, "deposit", token, amount)


def deposit_for_many(payer: ChainSender, deployment: Deployment, symbol: str,
                     amounts: Mapping[str, int]) -> list[dict[str, Any]]:
    """`payer` (holding the tokens) approves the vault and credits each account its amount (token units),
    VAULT_MAX_BATCH accounts per transaction; returns the receipts."""
    token = deployment.get_token(symbol)
    payer.transact("TestToken", token, "approve", deployment.vault, sum(amounts.values()))
    rows = [(to_checksum_address(a), amount) for a, amount in amounts.items()]
    return [payer.transact("CollateralVault", deployment.vault, "depositForMany", token,
                           [a for a, _ in rows[i:i + VAULT_MAX_BATCH]], [v for _, v in rows[i:i + VAULT_MAX_BATCH]])
            for i in range(0, len(rows), VAULT_MAX_BATCH)]


def request_withdrawal(account: ChainSender, deployment: Deployment, symbol: str, amount: int) -> int:
    """Request a withdrawal; returns the request id from the WithdrawalRequested event."""
    receipt = account.transact("CollateralVault", deployment.vault, "requestWithdrawal",
                               deployment.get_token(symbol), amount)
    events = account.contract("CollateralVault", deployment.vault).events.WithdrawalRequested().process_receipt(receipt)
    if len(events) != 1:
        raise DeploymentError(f"requestWithdrawal: expected one WithdrawalRequested event, got {len(events)}")
    return int(events[0]["args"]["requestId"])


def request_payout(account: ChainSender, deployment: Deployment, amount: int) -> int:
    """Request a payout of `amount` settlement-asset units out of the account's ledger cash; returns the
    request id from the PayoutRequested event."""
    receipt = account.transact("CollateralVault", deployment.vault, "requestPayout", amount)
    events = account.contract("CollateralVault", deployment.vault).events.PayoutRequested().process_receipt(
        receipt, errors=DISCARD)
    if len(events) != 1:
        raise DeploymentError(f"requestPayout: expected one PayoutRequested event, got {len(events)}")
    return int(events[0]["args"]["requestId"])


def sweep_debt(keeper: ChainSender, deployment: Deployment, account: str, units: int) -> int:
    """Move up to `units` of a debtor's settlement asset into the payout pool (anyone may); returns the
    amount moved from the DebtSwept event."""
    receipt = keeper.transact("CollateralVault", deployment.vault, "sweepDebt", to_checksum_address(account), units)
    events = keeper.contract("CollateralVault", deployment.vault).events.DebtSwept().process_receipt(receipt, errors=DISCARD)
    if len(events) != 1:
        raise DeploymentError(f"sweepDebt: expected one DebtSwept event, got {len(events)}")
    return int(events[0]["args"]["amount"])
