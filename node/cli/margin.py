"""`clearingd margin ...`: the margin command group. `margin simulate FILE [--json]` evaluates a what-if
document (RISK_SPEC.md section 6; version 2: docs/risk_v2.md) with `risk.whatif` and prints a readable
table or, with `--json`, the output object. `margin import-derive CASE.json [--underlying U]` prints the
version-2 what-if document of a Derive PM2 portfolio case (`risk.derive_cases`: the PM2 parameter set
built from the case's `Parameters`; a `Result` in the file is ignored), ready for `margin simulate`.

Bad input (unreadable file, invalid JSON, any invalid field) exits 2 with `error: <field>: <reason>` on
stderr; with `--json`, stdout holds `{"error", "exit_code"}` (`node.cli.common.fail`), else nothing. The file goes through the same bounded loader as the gRPC what-if call
(`risk.whatif.load_whatif_json`: size, nesting, number tokens, counts), with the same messages; the
JSON-level field is named `document` here, `whatif_json` in the API. The group is a parser with subparsers: another subcommand (e.g.
`margin get`) is added by writing a `register_<name>(sub)` function and calling it in `register`.
`margin get ACCOUNT [--epoch E] [--json]` asks a node's gRPC API (`GetMargin`) for an account's
signed margin, leaf, proof and signed state, at `--address` or the `api.listen` of the home (a named
`--home` that does not exist is an error, exit 2; a node that does not answer exits 1), errors as JSON
on stdout too with `--json`.
Persists nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from node.cli.common import add_json_option, fail
from risk.bounded_json import JsonLimits, load_bounded_json
from risk.derive_cases import case_to_whatif
from risk.errors import RiskError
from risk.whatif import WHATIF_JSON_LIMITS, load_whatif_json, parse_whatif, simulate_whatif

CASE_JSON_LIMITS = JsonLimits(max_bytes=1024 * 1024, max_depth=8, max_number_chars=64)
"""Bounds of a Derive case file (the public ones are about 11 KB, 5 levels deep)."""


class DocumentError(Exception):
    """The what-if file cannot be read."""


def read_bytes(path: str, limit: int, field: str) -> bytes:
    """At most `limit + 1` bytes of a file (or stdin); `DocumentError` naming `field`."""
    try:
        if path == "-":
            return sys.stdin.buffer.read(limit + 1)
        with Path(path).open("rb") as f:
            return f.read(limit + 1)
    except OSError as exc:
        raise DocumentError(f"{field}: cannot read {path}: {exc.strerror or exc}") from exc


def read_document(path: str) -> Any:
    """The what-if document of a file (or stdin); `DocumentError` or `InvalidInput` (field `document`)."""
    return load_whatif_json(read_bytes(path, WHATIF_JSON_LIMITS.max_bytes, "document"), "document")


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:,.2f}" if abs(x) >= 1.0 or x == 0.0 else f"{x:.6g}"
    return str(x)


def render_table(out: dict[str, Any]) -> str:
    rows = [(k, out[k]) for k in (
        "initial_margin", "maintenance_margin", "equity", "free_collateral", "health", "liquidatable",
        "separate_scan_loss", "joint_scan_loss", "correlated_margin", "short_option_minimum",
        "worst_scenario", "capital_efficiency_ratio", "collateral_value", "collateral_value_after_haircut",
        "positions_mtm", "var99", "es99")]
    rows += [(f"scan_loss[{u}]", v) for u, v in out["scan_loss_by_underlying"].items()]
    rows += [(f"delta[{u}]", v) for u, v in out["greeks"]["delta_by_underlying"].items()]
    rows += [(f"greeks.{k}", out["greeks"][k]) for k in ("dollar_delta", "gamma", "vega", "theta")]
    rows += [(f"isolated_margin[{i}]", v) for i, v in enumerate(out["isolated_margins"])]
    if "contingencies" in out:  # a version-2 document
        rows += [(k, out[k]) for k in ("requirement", "im_factor", "basis_loss", "cash", "worst_scenario_name")]
        rows += [(f"contingency.{k}", v) for k, v in out["contingencies"].items()]
        rows += [(f"pnl[{name}]", v) for name, v in out["scenario_pnl"].items()]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {_fmt(v):>20}" for k, v in rows]
    lines.append("risk_array: " + " ".join(f"{x:,.0f}" for x in out["risk_array"]))
    for step in out["liquidation"]:
        lines.append(f"liquidate position {step['position']}: penalty {_fmt(step['penalty'])}, equity "
                     f"{_fmt(step['equity_after'])}, IM {_fmt(step['initial_margin_after'])}, "
                     f"MM {_fmt(step['maintenance_margin_after'])}")
    return "\n".join(lines)


def handle_simulate(args: argparse.Namespace) -> int:
    try:
        out = simulate_whatif(parse_whatif(read_document(args.file)))
    except (DocumentError, RiskError) as exc:
        return fail(args, str(exc), 2)
    print(json.dumps(out, indent=2, allow_nan=False) if args.json else render_table(out))
    return 0


def register_simulate(sub: argparse._SubParsersAction) -> None:
    simulate = sub.add_parser("simulate", help="margin of a what-if document (RISK_SPEC.md section 6)")
    simulate.add_argument("file", metavar="FILE", help="what-if JSON document, or - for stdin")
    add_json_option(simulate)
    simulate.set_defaults(func=handle_simulate)


def handle_import_derive(args: argparse.Namespace) -> int:
    try:
        case = load_bounded_json(read_bytes(args.file, CASE_JSON_LIMITS.max_bytes, "case"), "case", CASE_JSON_LIMITS)
        doc = case_to_whatif(case, args.underlying or None)
        parse_whatif(doc)  # the printed document is one `margin simulate` accepts
    except (DocumentError, RiskError) as exc:
        return fail(args, str(exc), 2)
    print(json.dumps(doc, indent=2, allow_nan=False))
    return 0


def register_import_derive(sub: argparse._SubParsersAction) -> None:
    imp = sub.add_parser("import-derive", help="what-if document (v2, PM2 parameters) of a Derive PM2 case file")
    imp.add_argument("file", metavar="CASE", help="Derive portfolio case JSON (its Result is ignored), or - for stdin")
    imp.add_argument("--underlying", default="", help="underlying name (default: inferred from the case)")
    imp.set_defaults(func=handle_import_derive)


def handle_get(args: argparse.Namespace) -> int:
    """`margin get ACCOUNT`: an account's signed margin, leaf and proof from the nodes' gRPC API
    (`clearing_client.ClearingClient`: the addresses in turn, failover on unavailable ones)."""
    from clearing_client import ApiError, ClearingClient, to_json_dict
    from node.cli.common import CliError, get_config_home
    from node.config import load_config

    address = args.address or load_config(get_config_home(args)).get("api", "listen")
    endpoints = [a.strip() for a in address.split(",") if a.strip()]
    try:
        with ClearingClient(endpoints, ca_file=args.ca_file, timeout_s=args.timeout, passes=1) as client:
            report = client.get_margin(args.account, args.epoch)
    except ApiError as exc:
        return fail(args, f"{exc.code.name if exc.code else 'RPC'}: {exc}", 1)
    except ValueError as exc:
        raise CliError(f"--address: {exc}") from exc
    doc = to_json_dict(report)
    m = doc["margin"]
    lines = [f"{m['account']} at epoch {m['epoch']} (root {doc['state']['root']}, from {report.endpoint})"]
    lines += [f"  {k}: {v}" for k, v in m.items() if k.endswith(("_micro_usd", "_bps")) and not isinstance(v, list)]
    lines += [f"  liquidatable: {m['liquidatable']}  worst scenario: {m['worst_scenario']}",
              f"  leaf index {doc['leaf_index']}, proof of {len(doc['proof'])} hashes, "
              f"{len(doc['state']['signers'])} signers"]
    print(json.dumps(doc, indent=2) if args.json else "\n".join(lines))
    return 0


def register_get(sub: argparse._SubParsersAction) -> None:
    from node.cli.common import add_home_option, env_default, run

    get = sub.add_parser("get", help="an account's signed margin with leaf and proof (node gRPC API)")
    get.add_argument("account", metavar="ACCOUNT", help="0x-prefixed 20-byte address")
    get.add_argument("--epoch", type=int, default=None, help="epoch (default: the latest signed state)")
    get.add_argument("--address", default=env_default("CLEARING_API_ADDRESS", ""),
                     help="node API host:port, or several separated by commas (failover); env CLEARING_API_ADDRESS; "
                          "default api.listen of --home")
    get.add_argument("--ca-file", default=env_default("CLEARING_API_CA_FILE", ""),
                     help="PEM CA of a TLS API (env CLEARING_API_CA_FILE)")
    get.add_argument("--timeout", type=float, default=float(env_default("CLEARING_API_TIMEOUT_S", 5.0)),
                     help="deadline in seconds (env CLEARING_API_TIMEOUT_S)")
    add_home_option(get)
    add_json_option(get)
    get.set_defaults(func=run(handle_get))


def register(subparsers: argparse._SubParsersAction) -> None:
    margin = subparsers.add_parser("margin", help="portfolio margin: what-if simulation, signed margin of an account")
    sub = margin.add_subparsers(dest="margin_command", metavar="SUBCOMMAND")
    sub.required = True
    register_simulate(sub)
    register_import_derive(sub)
    register_get(sub)
