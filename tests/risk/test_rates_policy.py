"""`use_rates`: RRA-1 prices every option at r = 0 (RISK_SPEC.md) even when the market carries per-expiry
rates (a network that publishes rates for PM2 and votes RRA-1 back), while PM2 discounts with them. The field
is a v2-only field, neutral (0) under RRA-1, so RRA-1's format-1 encoding and params hash do not change."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from governance.params import compute_params_hash
from risk.batch import compute_margin_batch
from risk.errors import InvalidParams
from risk.instruments import Position
from risk.params import PM2, RRA1, decode_params, encode_params, params_with_overrides
from risk.reference import compute_account_risk
from tests.risk.test_batch_v2 import make_input_v2
from tests.risk.test_params_format import RRA1_PARAMS_HASH_V1


def _without_rates(inp):  # type: ignore[no-untyped-def]
    return dataclasses.replace(inp, market=dataclasses.replace(inp.market, rates={}))


def _fields(res):  # type: ignore[no-untyped-def]
    return [res.equity, res.initial_margin, res.maintenance_margin, res.risk_array]


def test_rra1_ignores_published_rates_and_pm2_uses_them() -> None:
    inp = make_input_v2(120, seed=5)
    assert any(r > 0 for r in inp.market.rates.values())
    for params, same in ((RRA1, True), (PM2, False)):
        with_rates = compute_margin_batch(inp, params, threads=2)
        at_zero = compute_margin_batch(_without_rates(inp), params, threads=2)
        equal = all(np.array_equal(a, b) for a, b in zip(_fields(with_rates), _fields(at_zero), strict=True))
        assert equal is same, params.version


def test_reference_follows_the_same_rule() -> None:
    inp = make_input_v2(40, seed=6)
    positions_of = inp.positions.tocsr()
    for a in range(40):
        cols = positions_of.indices[positions_of.indptr[a]:positions_of.indptr[a + 1]]
        if any(inp.instruments[c].kind == "option" for c in cols):
            break
    else:
        pytest.fail("no account holds an option")
    positions = [Position(inp.instruments[c], float(q)) for c, q in
                 zip(cols, positions_of.data[positions_of.indptr[a]:positions_of.indptr[a + 1]], strict=True)]
    collateral = {asset: float(b) for asset, b in zip(inp.assets, inp.collateral[a], strict=True) if b}
    for params, same in ((RRA1, True), (PM2, False)):
        one = compute_account_risk(positions, collateral, inp.market, params, include_tail=False)
        zero = compute_account_risk(positions, collateral, _without_rates(inp).market, params, include_tail=False)
        assert (one.equity == zero.equity and one.initial_margin == zero.initial_margin) is same


def test_use_rates_is_voted_like_any_field_and_keeps_rra1_hash() -> None:
    assert RRA1.use_rates == 0 and PM2.use_rates == 1
    assert compute_params_hash(RRA1).hex() == RRA1_PARAMS_HASH_V1
    rra1_rates = params_with_overrides(RRA1, {"use_rates": 1})
    payload = encode_params(rra1_rates)
    assert payload[8:10] == b"\x00\x02" and decode_params(payload) == rra1_rates
    with pytest.raises(InvalidParams, match="use_rates"):
        params_with_overrides(RRA1, {"use_rates": 2})
