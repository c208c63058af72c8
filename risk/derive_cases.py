"""Derive PM2 portfolio case files -> what-if documents (version 2) with the PM2 parameter set built from
the case's `Parameters` (CASES_SCHEMA.md; docs/risk_v2.md section 8).

`case_to_whatif(case, underlying=None)` reads the `Scenario` and `Parameters` of a case (its `Result`,
if present, is ignored) and returns the document; `simulate_whatif(parse_whatif(doc))` then gives
`free_collateral` = Derive's `IM`, `equity - maintenance_margin` = Derive's `MM` and `scenario_pnl` =
Derive's scenario P&Ls in the case's order. Conversions:
- time: seconds to expiry / 86,400 = days; the DTE floor is in days already;
- settlement: when an expiry is less than 1,800 s away, `fixed = F (1800 - s) / 1800` (Derive's harness);
- rates are floored at 0 (as `PMRMLib_2` does); an expiry's confidence is the lowest of its forward,
  rate and vol feed confidences; options take their vol from their expiry's SVI slice;
- scenarios: `x - 1` as the shock of a unit scan range and one step; fractional parameters are rounded
  to 1e-12 (the parameter encoding's resolution: at most 5e-13 relative, far below Derive's 1e-8);
- the underlying is the one named by a risk-cancelling collateral (BTC, LBTC, cbBTC -> BTC; ETH, rswETH,
  weETH -> ETH), else BTC when spot is at least 20,000, else ETH, unless given.
Bad case files raise `InvalidInput` naming the case's key. Pure; nothing is persisted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from risk.errors import InvalidInput
from risk.params import PM2

SETTLEMENT_SECONDS = 1800.0
SECONDS_PER_DAY = 86_400.0
UNDERLYING_OF = {"BTC": "BTC", "LBTC": "BTC", "CBBTC": "BTC", "ETH": "ETH", "RSWETH": "ETH", "WEETH": "ETH"}
_VOL = {"Up": "up", "Down": "down", "None": "none", "LINEAR": "linear", "ABS": "abs"}


def _num(value: Any, where: str) -> float:
    """A case number (JSON number or decimal string), finite."""
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(where, f"expected a number, got {str(value)[:40]!r}") from exc
    if isinstance(value, bool) or not math.isfinite(x):
        raise InvalidInput(where, "expected a finite number")
    return x


def _fixed(value: Any, where: str) -> float:
    return round(_num(value, where), 12)


def _get(doc: Any, key: str, where: str) -> Any:
    if not isinstance(doc, Mapping) or key not in doc:
        raise InvalidInput(f"{where}.{key}" if where else key, "missing")
    return doc[key]


def infer_underlying(scenario: Mapping[str, Any]) -> str:
    for c in scenario.get("Collaterals", []):
        if c.get("IsRiskCancelling") and str(c.get("Name", "")).upper() in UNDERLYING_OF:
            return UNDERLYING_OF[str(c["Name"]).upper()]
    return "BTC" if _num(_get(scenario, "SpotPrice", "Scenario"), "Scenario.SpotPrice") >= 20_000.0 else "ETH"


def _scenarios(raw: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, s in enumerate(raw):
        where = f"Parameters.Scenarios[{i}]"
        direction = _get(s, "VolShockDirection", where)
        if direction not in _VOL:
            raise InvalidInput(f"{where}.VolShockDirection", f"unknown direction {str(direction)[:20]!r}")
        vol = _VOL[direction]
        x = _num(_get(s, "SpotShock", where), f"{where}.SpotShock")
        name = vol if vol in ("linear", "abs") else f"{round(x, 12):g} {vol}"
        seen[name] = seen.get(name, 0) + 1
        out.append({"name": name if seen[name] == 1 else f"{name} #{seen[name]}", "shock": round(x - 1.0, 12),
                    "vol": vol, "weight": _fixed(_get(s, "DampeningFactor", where), f"{where}.DampeningFactor")})
    return out


def case_params(parameters: Mapping[str, Any], underlying: str, collaterals: list[Any]) -> dict[str, Any]:
    """The `params` object (base PM2) of a case's `Parameters` and collateral haircuts."""
    def group(name: str) -> Mapping[str, Any]:
        return _get(parameters, name, "Parameters")

    def value(g: str, key: str) -> float:
        return _fixed(_get(group(g), key, f"Parameters.{g}"), f"Parameters.{g}.{key}")

    params: dict[str, Any] = {
        "base": "PM2", "underlyings": [underlying], "price_scan_range": {underlying: 1.0},
        "sigma_ref": {underlying: dict(PM2.sigma_ref).get(underlying, 0.8)}, "price_steps": 1,
        "scenarios": _scenarios(_get(parameters, "Scenarios", "Parameters")),
        "vol_up_coefficient": value("VolShock", "VOLRANGEUP"), "vol_down_coefficient": value("VolShock", "VOLRANGEDOWN"),
        "w_exponent_short": value("VolShock", "SHORTTERMPOWER"), "w_exponent_long": value("VolShock", "LONGTERMPOWER"),
        "w_dte_threshold": 30.0, "w_dte_floor": value("VolShock", "DTE_FLOOR"),
        "vol_up_floor": value("VolShock", "MIN_VOL_EVAL_SHOCKED"),
        "im_factor": value("Margin", "IM_LOSS_FACTOR"), "maintenance_factor": value("Margin", "MM_LOSS_FACTOR"),
        "discount_long_base": value("Margin", "BASE_STATIC_DISCOUNT"),
        "discount_long_rate_mult": value("Margin", "LONG_RATE_MULTSCALE"),
        "discount_long_rate_add": value("Margin", "LONG_RATE_ADDSCALE"),
        "discount_short_base": value("Margin", "BASE_STATIC_DISCOUNT_NEG"),
        "discount_short_rate_mult": value("Margin", "SHORT_RATE_MULTSCALE"),
        "discount_short_rate_add": value("Margin", "SHORT_RATE_ADDSCALE"),
        "basis_shock_up": round(value("BasisContingency", "SCENARIO_SPOT_UP") - 1.0, 12),
        "basis_shock_down": round(value("BasisContingency", "SCENARIO_SPOT_DOWN") - 1.0, 12),
        "basis_add_factor": value("BasisContingency", "BASIS_CONT_ADD_FACTOR"),
        "basis_mult_factor": value("BasisContingency", "BASIS_CONT_MULT_FACTOR"),
        "peg_loss_threshold": value("OtherContingency", "PEG_LOSS_THRESHOLD"),
        "peg_loss_factor": value("OtherContingency", "PEG_LOSS_FACTOR"),
        "oracle_confidence_threshold": value("OtherContingency", "CONF_THRESHOLD"),
        "oracle_confidence_margin": value("OtherContingency", "CONF_MARGIN"),
        "perp_mm_rate": value("OtherContingency", "MM_PERP_PERCENT"),
        "perp_im_rate": value("OtherContingency", "IM_PERP_PERCENT"),
        "naked_option_mm_rate": value("OtherContingency", "MM_OPTION_PERCENT"),
        "naked_option_im_rate": value("OtherContingency", "IM_OPTION_PERCENT"),
        "skew_linear_cap": value("SkewShock", "LINEAR_SCALE_CAP"), "skew_linear_cap_slope": value("SkewShock", "LINEAR_CBASE"),
        "skew_abs_cap": value("SkewShock", "ABS_SCALE_CAP"), "skew_abs_cap_slope": value("SkewShock", "ABS_CBASE"),
        "skew_min_k_star": value("SkewShock", "MIN_K_STAR"), "skew_width_scale": value("SkewShock", "MIN_WIDTH_SCALE"),
        "skew_vol_static": value("SkewShock", "VOL_PARAM_STATIC"), "skew_vol_scale": value("SkewShock", "VOL_PARAM_SCALE"),
        "short_option_minimum_rate": 0.0, "look_ahead_days": 0.0, "correlation_groups": [],
        "haircuts": {}, "default_haircut": 0.0, "mm_haircuts": {}, "im_haircuts": {}, "risk_cancelling": {},
    }
    for i, c in enumerate(collaterals):
        where = f"Scenario.Collaterals[{i}]"
        name = str(_get(c, "Name", where))
        params["mm_haircuts"][name] = _fixed(_get(c, "MMHaircut", where), f"{where}.MMHaircut")
        params["im_haircuts"][name] = _fixed(_get(c, "IMHaircut", where), f"{where}.IMHaircut")
        if _get(c, "IsRiskCancelling", where):
            params["risk_cancelling"][name] = underlying
    return params


def _forward(feed: Mapping[str, Any], i: int, underlying: str) -> dict[str, Any]:
    where = f"Scenario.OptionFeeds[{i}]"
    seconds = _num(_get(feed, "FeedExpiry", where), f"{where}.FeedExpiry")
    price = _num(_get(feed, "Forward", where), f"{where}.Forward")
    svi = [_num(x, f"{where}.SVIparam") for x in _get(feed, "SVIparam", where)]
    if len(svi) != 7:
        raise InvalidInput(f"{where}.SVIparam", "expected [a, b, rho, m, sigma, forward, tau]")
    confidence = min(_num(_get(feed, k, where), f"{where}.{k}")
                     for k in ("ForwardConfidence", "RateConfidence", "OptionVolConfidences"))
    out = {"underlying": underlying, "days_to_expiry": seconds / SECONDS_PER_DAY, "price": price,
           "rate": max(_num(_get(feed, "Rate", where), f"{where}.Rate"), 0.0), "confidence": confidence,
           "svi": dict(zip(("a", "b", "rho", "m", "sigma", "forward", "tau"), svi, strict=True))}
    if seconds < SETTLEMENT_SECONDS:
        out["fixed"] = price * (SETTLEMENT_SECONDS - seconds) / SETTLEMENT_SECONDS
    return out


def case_to_whatif(case: Mapping[str, Any], underlying: str | None = None) -> dict[str, Any]:
    """The version-2 what-if document of a Derive case (module docstring)."""
    scenario = _get(case, "Scenario", "")
    u = underlying or infer_underlying(scenario)
    collaterals = list(scenario.get("Collaterals", []))
    market: dict[str, Any] = {
        "spot": {u: _num(_get(scenario, "SpotPrice", "Scenario"), "Scenario.SpotPrice")},
        "spot_confidence": {u: _num(_get(scenario, "SpotConfidence", "Scenario"), "Scenario.SpotConfidence")},
        "stable_price": _num(_get(scenario, "StablePrice", "Scenario"), "Scenario.StablePrice"),
        "forwards": [_forward(f, i, u) for i, f in enumerate(scenario.get("OptionFeeds", []))],
        "asset_prices": {}, "asset_confidence": {},
    }
    positions: list[dict[str, Any]] = []
    cash = _num(_get(scenario, "Cash", "Scenario"), "Scenario.Cash")
    perp_value = sum(_num(scenario.get(k, 0.0), f"Scenario.{k}") for k in ("UnrealisedPerpPNL", "UnrealisedFunding"))
    perps = _num(scenario.get("NumPerps", 0.0), "Scenario.NumPerps")
    if perps != 0.0:
        market["perps"] = {u: {"mark": _num(_get(scenario, "PerpPrice", "Scenario"), "Scenario.PerpPrice"),
                               "confidence": _num(_get(scenario, "PerpConfidence", "Scenario"),
                                                  "Scenario.PerpConfidence")}}
        positions.append({"kind": "perp", "underlying": u, "quantity": perps,
                          "unrealised_pnl": _num(scenario.get("UnrealisedPerpPNL", 0.0), "Scenario.UnrealisedPerpPNL"),
                          "funding": _num(scenario.get("UnrealisedFunding", 0.0), "Scenario.UnrealisedFunding")})
    else:
        cash += perp_value
    for i, o in enumerate(scenario.get("Options", [])):
        where = f"Scenario.Options[{i}]"
        positions.append({"kind": "option", "underlying": u,
                          "days_to_expiry": _num(_get(o, "Expiry", where), f"{where}.Expiry") / SECONDS_PER_DAY,
                          "strike": _num(_get(o, "Strike", where), f"{where}.Strike"),
                          "right": "call" if _get(o, "IsCall", where) else "put",
                          "quantity": _num(_get(o, "Amount", where), f"{where}.Amount")})
    collateral: dict[str, float] = {}
    for i, c in enumerate(collaterals):
        where = f"Scenario.Collaterals[{i}]"
        name = str(_get(c, "Name", where))
        collateral[name] = _num(_get(c, "Amount", where), f"{where}.Amount")
        market["asset_prices"][name] = _num(_get(c, "Price", where), f"{where}.Price")
        market["asset_confidence"][name] = _num(_get(c, "Confidence", where), f"{where}.Confidence")
    return {"version": 2, "market": market, "positions": positions, "collateral": collateral, "cash": cash,
            "params": case_params(_get(case, "Parameters", ""), u, collaterals)}
