"""Portfolio margin engine (RRA-1 by default; the model is data: docs/risk_v2.md): a pure, deterministic
functional core.

Imports only the standard library, numpy and scipy; no I/O, clock, globals or logging.

Public API (see each module's docstring):
- `risk.params`: `RiskParams`, `Scenario`, `RRA1`, `PM2`, `make_pm2_params`, `encode_params`,
  `decode_params`, `validate_params` (`risk.param_checks`), `params_with_overrides`.
- `risk.instruments`: `Instrument`, `Position`, `Market`.
- `risk.reference`: `compute_account_risk(positions, collateral, market, params, cash=0) -> AccountRisk`
  (one account, every output field; the oracle of the batch engine), with `risk.scenarios`,
  `risk.expiry_terms` and `risk.contingencies`.
- `risk.batch`: `BatchInput`, `compute_margin_batch(inp, params, threads=2) -> BatchResult`;
  `risk.batch_tail.compute_tail_batch` (ES-1 on request); `risk.quantize`: `quantize_usd`,
  `quantized(result) -> QuantizedBatch`, `encode_quantized`.
- `risk.whatif`: `load_whatif_json(text, field) -> dict` (bounded), `parse_whatif(doc) -> WhatIf`
  (versions 1 and 2, `risk.whatif_parse`, `risk.svi`), `simulate_whatif(whatif) -> dict`;
  `risk.bounded_json.load_bounded_json` (size, nesting, numbers checked before parsing);
  `risk.derive_cases.case_to_whatif` (Derive PM2 case files).
- `risk.errors`: `RiskError` and its leaves `InvalidParams`, `InvalidInput`, `QuantizationError`.
- `risk.detmath`: `exp`, `log`, `power`, `norm_cdf`, `sqrt` on float64 arrays from IEEE basic operations only
  (the same bits on every CPU; the batch engine's only transcendentals), `check_environment`.
- `risk.accumulation`: fixed-order segment sums of the batch engine (`compute_segments`,
  `compute_segment_sums`, `compute_ordered_sum`). Numeric determinism rules: `docs/determinism.md`.
"""
