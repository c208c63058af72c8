"""`clearingd oracle publish|show`: publish market data to one chain's MarketOracle, and read it back.

`clearingd oracle publish --rpc-url URL (--network-file F | --deployment FILE) --key-file KEYSTORE
--marks marks.json [--json]` reads a marks document (`docs/oracle_marks.md`: spots, forwards, vols, asset
prices, confidences and rates as decimal strings), checks ALL of it before anything is sent (bounded size
and nesting, decimals parsed with `Decimal`, never float, into the contract's fixed point; every error
names the JSON path, e.g. `confidences[2].value: 1.5 outside [0, 1]`), then sends it with
`bridges.deploy.set_market`: one `multicall` transaction, an atomic update, for up to 150 entries in all
(`ORACLE_MAX_ROWS_PER_TX`), else several, each of whole tables where they fit. Values are absolute, so a
rerun after a partial failure is safe. The oracle comes from the network file (the chain the endpoint serves)
or a deployment JSON (`Deployment.to_json`, e.g. the `deployment` of `clearingd deploy --json`). The key:
a keystore (`clearingd init`'s `keys/operator.json` or Ethereum V3) with `--passphrase-file` or
CLEARING_KEYSTORE_PASSPHRASE, never a key on the command line. A key that is not a publisher gets the
contract's `NotPublisher` revert by name (exit 1), found when estimating gas: nothing is sent.

`clearingd oracle show --rpc-url URL (--network-file F | --deployment FILE)` prints, as JSON, what the
oracle holds at the latest block (read through the chain book's pinned views, the node's own reader):
the values as a marks document (`marks`, which `publish` takes back), their `updated_at` and the
oracle's `event_sequence`; errors are a JSON object on stdout too (`{"error", "exit_code"}`). Both
commands read `--network-file`/`--deployment` before contacting the chain: a missing or bad file exits 2
(a usage error), an unreachable endpoint 1. Persists nothing.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any

from node.cli.common import CliError, add_json_option, add_passphrase_option, emit, env_default, run
from node.config import ConfigError

PRICE_DIGITS = VOL_DIGITS = 6  # micro-USD prices, vols scale 1e6 (bridges.statecodec)
CONFIDENCE_DIGITS = RATE_DIGITS = 9  # MarketOracle.CONFIDENCE_ONE = 1e9; rates 1e9 fixed point
MAX_RATE = Decimal(2)  # MarketOracle.MAX_RATE / 1e9
MIN_PRICE = Decimal("0.000001")  # one micro-USD: a zero price is never a mark
MAX_PRICE = Decimal(10**12)  # a trillion USD: far above any mark, far below the contract's uint192
MAX_VOL = Decimal(100)  # 10,000 %
MAX_MARKS_BYTES = 1 << 20
MAX_DEPTH = 3  # document -> table -> entry
MAX_ENTRIES = 5_000  # per table (34 transactions of 150)
MAX_DECIMAL_CHARS = 40
MAX_UINT64 = 2**64 - 1
KINDS = {"spot": 1, "perp": 2, "expiry": 3, "asset": 4}  # MarketOracle.CONFIDENCE_*
TABLES = ("spots", "forwards", "vols", "asset_prices", "confidences", "rates")
_DECIMAL_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_ID_RE = re.compile(r"[1-9][0-9]{0,19}")
_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class MarksError(CliError):
    """A marks document is malformed or out of range; the message starts with the JSON path."""


class _Fraction(str):
    """A JSON number with a fraction or an exponent, NaN/Infinity, or an over-long integer, kept as its text
    (refused where it is used, with its path: fractional values are written as decimal strings)."""


@dataclass
class Marks:
    """A marks document in the contract's fixed point (the arguments of `bridges.deploy.set_market`)."""

    spots: dict[str, int] = field(default_factory=dict)
    forwards: dict[tuple[str, int], int] = field(default_factory=dict)
    vols: dict[int, int] = field(default_factory=dict)
    asset_prices: dict[str, int] = field(default_factory=dict)
    confidences: dict[tuple[int, str, int], int] = field(default_factory=dict)
    rates: dict[tuple[str, int], int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in TABLES}


# --- parsing -------------------------------------------------------------------------------------------


class _Object(dict[str, Any]):
    """A JSON object; `duplicate` is a key it held twice (refused where the object is used, with its path)."""

    duplicate: str | None = None


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    seen: set[str] = set()
    for key, _value in pairs if len(obj) != len(pairs) else ():
        if key in seen:
            obj.duplicate = key
            break
        seen.add(key)
    return obj


def _check_unique(path: str, obj: Any) -> None:
    if isinstance(obj, _Object) and obj.duplicate is not None:
        raise MarksError(f"{path}: key {obj.duplicate!r} appears twice")


def _parse_int(token: str) -> int | _Fraction:
    return _Fraction(token) if len(token) > MAX_DECIMAL_CHARS else int(token)


def load_marks_json(text: str | bytes) -> dict[str, Any]:
    """The marks document as JSON values, its cost bounded before parsing (size; nesting measured without
    recursion by the risk package's bounded reader); fractional numbers, NaN/Infinity and over-long
    integers are kept as text so that the entry refusing them names its path; duplicate keys are refused."""
    from risk.bounded_json import compute_nesting_depth, strip_strings

    if len(text) > MAX_MARKS_BYTES or (isinstance(text, str) and len(text.encode("utf-8", "replace")) > MAX_MARKS_BYTES):
        raise MarksError(f"marks: larger than {MAX_MARKS_BYTES} bytes")
    try:
        text = text.decode("utf-8") if isinstance(text, bytes) else text
    except UnicodeDecodeError as exc:
        raise MarksError(f"marks: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if compute_nesting_depth(strip_strings(text)) > MAX_DEPTH:
        raise MarksError(f"marks: nested deeper than {MAX_DEPTH} arrays/objects (document, table, entry)")
    try:
        doc = json.loads(text, object_pairs_hook=_object, parse_float=_Fraction, parse_int=_parse_int,
                         parse_constant=_Fraction)
    except ValueError as exc:
        raise MarksError(f"marks: invalid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise MarksError("marks: expected a JSON object with tables " + ", ".join(TABLES))
    _check_unique("marks", doc)
    return doc


def _path(table: str, key: str) -> str:
    return f"{table}.{key}" if _PLAIN_KEY_RE.fullmatch(key) else f"{table}[{json.dumps(key)}]"


def to_fixed(path: str, raw: Any, digits: int, low: Decimal, high: Decimal) -> int:
    """A decimal string (or JSON integer) in [low, high] as an integer scaled by 10**digits, exactly."""
    if isinstance(raw, _Fraction):
        shown = raw if len(raw) <= MAX_DECIMAL_CHARS else raw[:MAX_DECIMAL_CHARS] + "..."
        if not _DECIMAL_RE.fullmatch(raw) or len(raw) > MAX_DECIMAL_CHARS:
            raise MarksError(f"{path}: {shown} is not a decimal number (at most {MAX_DECIMAL_CHARS} characters)")
        raise MarksError(f"{path}: the JSON number {raw} must be written as a decimal string (\"{raw}\")")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise MarksError(f"{path}: expected a decimal string, got {type(raw).__name__}")
    text = str(raw)
    if len(text) > MAX_DECIMAL_CHARS or not _DECIMAL_RE.fullmatch(text):
        raise MarksError(f"{path}: {text[:MAX_DECIMAL_CHARS]!r} is not a decimal number (digits, an optional "
                         f"sign and point; at most {MAX_DECIMAL_CHARS} characters)")
    with localcontext(Context(prec=100)):
        value = Decimal(text)
        if not low <= value <= high:
            raise MarksError(f"{path}: {text} outside [{low}, {high}]")
        scaled = value.scaleb(digits)
        if scaled != scaled.to_integral_value():
            raise MarksError(f"{path}: {text} has more than {digits} decimal places")
        return int(scaled)


def _symbol(path: str, raw: Any) -> str:
    from bridges.deploy import oracle_key
    from bridges.errors import DeploymentError

    if not isinstance(raw, str) or isinstance(raw, _Fraction):
        raise MarksError(f"{path}: expected a symbol string, got {'a number' if isinstance(raw, str) else raw!r}")
    try:
        oracle_key(path, raw)
    except DeploymentError as exc:
        raise MarksError(str(exc)) from None
    return raw


def _expiry(path: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw <= MAX_UINT64:
        raise MarksError(f"{path}: expected a unix time in seconds (an integer in [1, 2^64 - 1]), got {raw!r}")
    return raw


def _table(doc: dict[str, Any], name: str, kind: type[dict[str, Any]] | type[list[Any]]) -> Any:
    value: dict[str, Any] | list[Any] = doc.get(name, kind())
    if not isinstance(value, kind):
        raise MarksError(f"{name}: expected {'an object' if kind is dict else 'a list'}")
    if len(value) > MAX_ENTRIES:
        raise MarksError(f"{name}: {len(value)} entries (at most {MAX_ENTRIES})")
    _check_unique(name, value)
    return value


def _entry(path: str, item: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise MarksError(f"{path}: expected an object with {', '.join(required)}")
    _check_unique(path, item)
    for name in required:
        if name not in item:
            raise MarksError(f"{path}.{name}: missing")
    for name in item:
        if name not in required + optional:
            raise MarksError(f"{path}.{name}: unknown field (expected {', '.join(required + optional)})")
    return item


def _add(table: dict[Any, int], key: Any, value: int, path: str, first: dict[Any, str]) -> None:
    if key in table:
        raise MarksError(f"{path}: the same key as {first[key]}")
    table[key], first[key] = value, path


def parse_marks(text: str | bytes) -> Marks:
    """A marks document (`docs/oracle_marks.md`) in fixed point, or MarksError naming the JSON path."""
    doc = load_marks_json(text)
    for name in doc:
        if name not in TABLES:
            raise MarksError(f"{name}: unknown table (expected {', '.join(TABLES)})")
    marks, first = Marks(), {name: {} for name in TABLES}  # type: ignore[var-annotated]
    for name in ("spots", "asset_prices"):
        for sym, raw in _table(doc, name, dict).items():
            path = _path(name, sym)
            _add(getattr(marks, name), _symbol(path, sym),
                 to_fixed(path, raw, PRICE_DIGITS, MIN_PRICE, MAX_PRICE), path, first[name])
    for iid, raw in _table(doc, "vols", dict).items():
        path = _path("vols", iid)
        if not _ID_RE.fullmatch(iid) or int(iid) > MAX_UINT64:
            raise MarksError(f"{path}: the key must be an instrument id (an integer in [1, 2^64 - 1])")
        _add(marks.vols, int(iid), to_fixed(path, raw, VOL_DIGITS, Decimal(0), MAX_VOL), path, first["vols"])
    for i, item in enumerate(_table(doc, "forwards", list)):
        path = f"forwards[{i}]"
        e = _entry(path, item, ("underlying", "expiry", "price"))
        key = (_symbol(f"{path}.underlying", e["underlying"]), _expiry(f"{path}.expiry", e["expiry"]))
        _add(marks.forwards, key, to_fixed(f"{path}.price", e["price"], PRICE_DIGITS, MIN_PRICE, MAX_PRICE),
             path, first["forwards"])
    for i, item in enumerate(_table(doc, "confidences", list)):
        path = f"confidences[{i}]"
        e = _entry(path, item, ("kind", "symbol", "value"), ("expiry",))
        if e["kind"] not in KINDS:
            raise MarksError(f"{path}.kind: unknown kind {e['kind']!r} (expected {', '.join(KINDS)})")
        kind = KINDS[e["kind"]]
        if kind == KINDS["expiry"]:
            expiry = _expiry(f"{path}.expiry", e.get("expiry"))
        elif e.get("expiry", 0) != 0 or isinstance(e.get("expiry"), bool):
            raise MarksError(f"{path}.expiry: must be 0 or absent for kind {e['kind']} (only 'expiry' has one)")
        else:
            expiry = 0
        key3 = (kind, _symbol(f"{path}.symbol", e["symbol"]), expiry)
        _add(marks.confidences, key3, to_fixed(f"{path}.value", e["value"], CONFIDENCE_DIGITS, Decimal(0), Decimal(1)),
             path, first["confidences"])
    for i, item in enumerate(_table(doc, "rates", list)):
        path = f"rates[{i}]"
        e = _entry(path, item, ("underlying", "expiry", "rate"))
        key = (_symbol(f"{path}.underlying", e["underlying"]), _expiry(f"{path}.expiry", e["expiry"]))
        _add(marks.rates, key, to_fixed(f"{path}.rate", e["rate"], RATE_DIGITS, Decimal(0), MAX_RATE),
             path, first["rates"])
    if not any(marks.counts().values()):
        raise MarksError("marks: nothing to publish (every table is empty)")
    return marks


def read_marks_file(path: Path) -> Marks:
    try:
        size = path.stat().st_size
        if size > MAX_MARKS_BYTES:
            raise MarksError(f"marks: {path.name} is larger than {MAX_MARKS_BYTES} bytes")
        return parse_marks(path.read_bytes())
    except OSError as exc:
        raise CliError(f"--marks: cannot read {path}: {exc.strerror or exc}") from None


# --- formatting (fixed point -> the marks document) ------------------------------------------------------


def format_fixed(value: int, digits: int) -> str:
    """The exact decimal string of a fixed-point integer (no trailing zeros): 100000500000, 6 -> "100000.5"."""
    whole, frac = divmod(value, 10**digits)
    tail = str(frac).rjust(digits, "0").rstrip("0")
    return f"{whole}.{tail}" if tail else str(whole)


def format_book_oracle(book: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(marks document, updated_at by table) of the oracle tables of a ChainBook."""
    marks: dict[str, Any] = {
        "spots": {s: format_fixed(v, PRICE_DIGITS) for s, (v, _) in sorted(book.spots.items())},
        "forwards": [{"underlying": u, "expiry": e, "price": format_fixed(v, PRICE_DIGITS)}
                     for (u, e), (v, _) in sorted(book.forwards.items())],
        "vols": {str(i): format_fixed(v, VOL_DIGITS) for i, (v, _) in sorted(book.vols.items())},
        "asset_prices": {s: format_fixed(v, PRICE_DIGITS) for s, (v, _) in sorted(book.asset_prices.items())},
        "confidences": [{"kind": k, "symbol": s, "expiry": e, "value": format_fixed(v, CONFIDENCE_DIGITS)}
                        for (k, s, e), (v, _) in sorted(book.confidences.items(), key=lambda kv: (
                            KINDS[kv[0][0]], kv[0][1], kv[0][2]))],
        "rates": [{"underlying": u, "expiry": e, "rate": format_fixed(v, RATE_DIGITS)}
                  for (u, e), (v, _) in sorted(book.rates.items())]}
    updated = {
        "spots": {s: at for s, (_, at) in book.spots.items()},
        "forwards": {f"{u}:{e}": at for (u, e), (_, at) in book.forwards.items()},
        "vols": {str(i): at for i, (_, at) in book.vols.items()},
        "asset_prices": {s: at for s, (_, at) in book.asset_prices.items()},
        "confidences": {f"{k}:{s}:{e}": at for (k, s, e), (_, at) in book.confidences.items()},
        "rates": {f"{u}:{e}": at for (u, e), (_, at) in book.rates.items()}}
    return marks, updated


# --- where the oracle is -------------------------------------------------------------------------------


def read_target(args: argparse.Namespace) -> Any:
    """The `Deployment` of `--deployment` or the `Network` of `--network-file`, read before any chain is
    contacted: a missing or bad file is a usage error (exit 2) whatever the endpoint's state."""
    from bridges.deploy import Deployment
    from bridges.errors import InvalidDeployment
    from node.network_file import load_network_file

    if args.deployment:
        path = Path(args.deployment)
        try:
            return Deployment.from_json(path.read_text())
        except OSError as exc:
            raise CliError(f"--deployment: cannot read {path}: {exc.strerror or exc}") from None
        except InvalidDeployment as exc:
            raise CliError(f"--deployment {path.name}: {exc}") from None
    if not args.network_file:
        raise CliError("give --network-file (env CLEARING_NETWORK_FILE) or --deployment")
    try:
        return load_network_file(args.network_file)
    except ConfigError as exc:
        raise CliError(f"--network-file: {exc}") from None


def load_deployment(args: argparse.Namespace, target: Any, chain_id: int) -> Any:
    """The `Deployment` of the chain the endpoint serves, from `target` (`read_target`)."""
    from bridges.deploy import Deployment

    if isinstance(target, Deployment):
        if target.chain_id != chain_id:
            raise CliError(f"--deployment: {Path(args.deployment).name} is for chain {target.chain_id}, the "
                           f"endpoint serves chain {chain_id}")
        return target
    net = target
    c = net.get_chain(chain_id).contracts
    if c is None or net.keyset is None:
        raise CliError(f"--network-file: chain {chain_id} has no contracts yet (run `clearingd deploy` first)")
    return Deployment(chain_id=chain_id, network_id=net.network_id, keyset_id=net.keyset.keyset_id,
                      registry=c.registry, vault=c.vault, ledger=c.ledger, oracle=c.oracle, tokens=(),
                      deployer=c.deployer, start_block=c.start_block)


def read_oracle_book(rpc_url: str, deployment: Any) -> Any:
    """A ChainBook holding only the oracle tables, read at the latest block with the book's pinned views
    (the same reads as the node's cold path); the pin is checked to be still canonical after the read."""
    from bridges.book_reader import contracts_of, read_oracle_tables
    from bridges.chain import ChainClient, ChainConfig, Pin

    client = ChainClient(ChainConfig(chain_id=deployment.chain_id, rpc_url=rpc_url))
    client.validate_chain_id()
    head = client.get_block("latest")
    pin = Pin(deployment.chain_id, head.number, head.hash, head.timestamp)
    book = read_oracle_tables(client, contracts_of(deployment), pin)
    client.validate_pin(pin)
    return book


# --- commands ------------------------------------------------------------------------------------------


def handle_publish(args: argparse.Namespace) -> int:
    from bridges.deploy import ChainSender, set_market
    from node.crypto.keystore import load_passphrase, load_private_key

    marks = read_marks_file(Path(args.marks))  # every check before the key is even opened
    target = read_target(args)
    key = load_private_key(args.key_file, load_passphrase(args.passphrase_file or None))
    sender = ChainSender(args.rpc_url, "0x" + key.hex(), receipt_timeout_s=args.tx_timeout)
    deployment = load_deployment(args, target, sender.chain_id)
    receipts = set_market(sender, deployment, spots=marks.spots, forwards=marks.forwards, vols=marks.vols,
                          asset_prices=marks.asset_prices, confidences=marks.confidences, rates=marks.rates)
    sequence = int(sender.contract("MarketOracle", deployment.oracle).functions.eventSequence().call())
    txs = [{"hash": "0x" + bytes(r["transactionHash"]).hex(), "block": int(r["blockNumber"])} for r in receipts]
    counts = marks.counts()
    doc = {"chain_id": deployment.chain_id, "oracle": deployment.oracle, "publisher": sender.address,
           "entries": counts, "transactions": txs, "event_sequence": sequence}
    lines = [f"chain {deployment.chain_id}: oracle {deployment.oracle} updated by {sender.address}",
             "  " + ", ".join(f"{n} {name}" for name, n in counts.items() if n),
             *(f"  tx {t['hash']} block {t['block']}" for t in txs),
             f"  event sequence {sequence}"]
    emit(args, doc, "\n".join(lines))
    return 0


def handle_show(args: argparse.Namespace) -> int:
    from web3 import Web3

    target = read_target(args)
    chain_id = int(Web3(Web3.HTTPProvider(args.rpc_url, request_kwargs={"timeout": 10})).eth.chain_id)
    deployment = load_deployment(args, target, chain_id)
    book = read_oracle_book(args.rpc_url, deployment)
    marks, updated = format_book_oracle(book)
    doc = {"chain_id": chain_id, "oracle": deployment.oracle, "block_number": book.block_number,
           "block_hash": "0x" + book.block_hash.hex(), "event_sequence": book.sequences["oracle"],
           "marks": marks, "updated_at": updated, "ignored_keys": sorted(book.ignored_keys)}
    print(json.dumps(doc, sort_keys=True, indent=2))
    return 0


def _add_target_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rpc-url", required=True, help="JSON-RPC endpoint of the chain")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--network-file", default=env_default("CLEARING_NETWORK_FILE"),
                       help="network file listing the chain's contracts (env CLEARING_NETWORK_FILE)")
    where.add_argument("--deployment", default="", help="deployment JSON of the chain (Deployment.to_json)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("oracle", help="publish market data to a chain's oracle, or show what it holds")
    sub = p.add_subparsers(dest="oracle_command", metavar="ACTION")
    sub.required = True
    pub = sub.add_parser("publish", help="publish a marks document (checked in full before sending)")
    add_json_option(pub)
    _add_target_options(pub)
    pub.add_argument("--key-file", required=True, help="publisher keystore (clearingd init's keys/operator.json, or V3)")
    add_passphrase_option(pub)
    pub.add_argument("--marks", required=True, help="marks document (JSON, docs/oracle_marks.md)")
    pub.add_argument("--tx-timeout", type=float, default=120.0, help="seconds to wait per transaction")
    pub.set_defaults(func=run(handle_publish))
    show = sub.add_parser("show", help="print what the oracle holds at the latest block (JSON, errors too)")
    _add_target_options(show)
    show.set_defaults(func=run(handle_show), json=True)  # always JSON: errors as `{"error", "exit_code"}` too
