// The node's web view: hash routes #/ (epochs and accounts at risk), #/account/0x... and #/whatif.
// Reads the node's JSON endpoints (/api/...); no build step, no dependencies. Amounts arrive as
// integers in micro-USD (what-if results in USD, as `clearingd margin simulate` prints them).
"use strict";

const WHATIF_EXAMPLE = {
  market: {
    spot: {BTC: 100000.0, ETH: 3000.0},
    forwards: [{underlying: "BTC", days_to_expiry: 30, price: 100400.0}],
    asset_prices: {USDC: 1.0, BTC: 100000.0, ETH: 3000.0},
  },
  positions: [
    {kind: "option", underlying: "BTC", days_to_expiry: 30, strike: 110000, right: "call", vol: 0.52, quantity: -1},
    {kind: "future", underlying: "BTC", days_to_expiry: 30, quantity: -1},
    {kind: "perp", underlying: "BTC", quantity: 0.5},
    {kind: "spot", underlying: "BTC", quantity: 1},
  ],
  collateral: {USDC: 10000, BTC: 0.2},
  params: null,
};
const VOL_STATES = ["down", "none", "up"];
const K_COLUMNS = [-6, -3, -2, -1, 0, 1, 2, 3, 6];
let refreshTimer = null;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function usd(value) {
  return Number(value).toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
}
const microUsd = (micro) => usd(Number(micro) / 1e6);
const short = (hex) => (hex ? hex.slice(0, 10) + "…" + hex.slice(-4) : "");

async function api(path, options) {
  const response = await fetch(path, options);
  const doc = await response.json();
  if (!response.ok) {
    const error = new Error(doc.error || response.statusText);
    error.violations = doc.violations || [];
    throw error;
  }
  return doc;
}

function showError(container, error) {
  container.replaceChildren(h("p", {class: "error", text: String(error.message || error)}),
    ...(error.violations || []).map((v) => h("p", {class: "error violation", text: `${v.field}: ${v.description}`})));
}

// --- header --------------------------------------------------------------------------------------
async function renderNodeInfo() {
  const box = document.getElementById("node-info");
  try {
    const o = await api("/api/overview");
    const chains = o.chains.map((c) => `chain ${c.chain_id}: registry at epoch ${c.latest_epoch ?? "?"}`);
    box.textContent = [`network ${o.network_id}`, `validator ${o.validator_index}`,
      `key set ${o.validator_set.keyset_id} (threshold ${o.validator_set.threshold} of ${o.validator_set.validators.length})`,
      `latest signed epoch ${o.latest_epoch ?? "none"}`, `wall-clock epoch ${o.current_epoch ?? "?"}`,
      o.syncing ? "SYNCING" : null, ...chains].filter(Boolean).join(" · ");
  } catch (error) {
    box.textContent = "node unreachable: " + error.message;
  }
}

// --- home: epoch timeline and accounts at risk -----------------------------------------------------
async function renderHome(view) {
  const timeline = h("section", {id: "timeline-section"}, h("h2", {text: "Epoch timeline"}), h("p", {class: "muted", text: "loading..."}));
  const risk = h("section", {id: "at-risk-section"}, h("h2", {text: "Accounts closest to liquidation"}));
  view.replaceChildren(timeline, risk);
  const refresh = async () => {
    renderNodeInfo();
    try {
      const doc = await api("/api/epochs?limit=30");
      timeline.replaceChildren(h("h2", {text: "Epoch timeline"}), timelineTable(doc));
    } catch (error) {
      showError(timeline, error);
    }
    try {
      const doc = await api("/api/accounts/at-risk?limit=10");
      risk.replaceChildren(h("h2", {text: `Accounts closest to liquidation (epoch ${doc.epoch ?? "none"})`}), atRiskTable(doc));
    } catch (error) {
      showError(risk, error);
    }
  };
  await refresh();
  refreshTimer = setInterval(refresh, 3000);
}

function timelineTable(doc) {
  const chains = doc.chains || [];
  const head = h("tr", {}, ["Epoch", "Status", "Signers", "Key set", "Params hash", "Accounts", "Root"].map((t) => h("th", {text: t})),
    chains.map((c) => h("th", {text: `Published on ${c} (gas)`})));
  const rows = doc.epochs.map((e) => {
    const cells = [h("td", {class: "num", text: e.epoch}), h("td", {}, h("span", {class: `badge ${e.status}`, text: e.status}))];
    if (e.status !== "signed") {
      cells.push(h("td", {colspan: 5 + chains.length, class: "muted",
        text: e.status === "skipped" ? "no signed state for this epoch" : "round in progress or not yet fetched"}));
    } else {
      cells.push(h("td", {class: "signers", text: e.signers.join(", ")}), h("td", {class: "num", text: e.keyset_id}),
        h("td", {class: "hash", title: e.params_hash, text: short(e.params_hash)}), h("td", {class: "num", text: e.leaf_count}),
        h("td", {class: "hash", title: e.root, text: short(e.root)}));
      for (const c of chains) {
        const p = e.published[String(c)];
        cells.push(p ? h("td", {class: "published", "data-chain": c, "data-gas": p.gas_used, title: `tx ${p.tx} in block ${p.block} by ${p.sender}`},
          `✓ ${p.gas_used.toLocaleString("en-US")}`) : h("td", {class: "unpublished muted", "data-chain": c, text: "—"}));
      }
    }
    return h("tr", {"data-epoch": e.epoch, "data-status": e.status}, cells);
  });
  return h("table", {id: "timeline"}, h("thead", {}, head), h("tbody", {}, rows));
}

function atRiskTable(doc) {
  if (!doc.accounts.length) return h("p", {class: "muted", text: "no account with a maintenance margin"});
  const head = h("tr", {}, ["Account", "Health (equity / MM)", "Equity", "Initial margin", "Maintenance margin", ""].map((t) => h("th", {text: t})));
  const rows = doc.accounts.map((a) => h("tr", {"data-account": a.account},
    h("td", {}, h("a", {href: `#/account/${a.account}`, class: "hash", text: a.account})),
    h("td", {class: "num", text: (a.health_bps / 100).toFixed(2) + " %"}), h("td", {class: "num", text: microUsd(a.equity)}),
    h("td", {class: "num", text: microUsd(a.initial_margin)}), h("td", {class: "num", text: microUsd(a.maintenance_margin)}),
    h("td", {}, a.liquidatable ? h("span", {class: "badge liquidatable", text: "liquidatable"}) : "")));
  return h("table", {id: "at-risk"}, h("thead", {}, head), h("tbody", {}, rows));
}

// --- account -----------------------------------------------------------------------------------------
async function renderAccount(view, account) {
  view.replaceChildren(h("h2", {text: `Account ${account}`}), h("p", {class: "muted", text: "loading..."}));
  try {
    const a = await api(`/api/accounts/${account}`);
    const health = a.health_unbounded ? "unbounded (no maintenance margin)" : (a.health_bps / 100).toFixed(2) + " %";
    const card = (id, label, micro) => h("div", {class: "card"}, h("div", {class: "label", text: label}),
      h("div", {id, class: "value", "data-micro-usd": micro, text: microUsd(micro)}));
    view.replaceChildren(h("section", {id: "account", "data-account": a.account, "data-epoch": a.epoch},
      h("h2", {}, `Account `, h("span", {class: "hash", text: a.account}), ` at epoch ${a.epoch}`),
      h("div", {class: "cards"}, card("account-equity", "Equity", a.equity), card("account-im", "Initial margin", a.initial_margin),
        card("account-mm", "Maintenance margin", a.maintenance_margin), card("account-free", "Free collateral", a.free_collateral),
        h("div", {class: "card"}, h("div", {class: "label", text: "Health (equity / MM)"}), h("div", {id: "account-health", class: "value", text: health})),
        h("div", {class: "card"}, h("div", {class: "label", text: "Status"}),
          h("div", {id: "account-status", class: "value"}, a.liquidatable ? h("span", {class: "badge liquidatable", text: "liquidatable"})
            : h("span", {class: "badge healthy", text: "not liquidatable"})))),
      h("h3", {text: "Merkle proof on every chain"}), proofTable(a),
      h("h3", {text: "Risk array (joint scenarios)"}), heatMap(a.risk_array, a.scenarios, a.worst_scenario, a.risk_array_kind, (v) => Number(v) / 1e6),
      h("h3", {text: "Collateral"}), collateralTable(a.collateral)));
  } catch (error) {
    showError(view, error);
  }
}

function proofTable(a) {
  const labels = {verified: "✓ proof verified by the registry", not_published: "registry has not reached this epoch yet",
    not_verified: "✗ the registry rejects the proof", error: "chain unreachable"};
  const rows = Object.entries(a.proof_on_chain).map(([chain, p]) => h("tr", {"data-chain": chain, "data-proof": p.status},
    h("td", {text: `chain ${chain}`}), h("td", {class: `proof ${p.status}`, text: labels[p.status] + (p.detail ? `: ${p.detail}` : "")})));
  if (!rows.length) return h("p", {class: "muted", text: "this node follows no registry"});
  return h("table", {id: "proofs"}, h("tbody", {}, rows), h("caption", {class: "muted", text: `leaf ${a.leaf_index}, proof of ${a.proof_length} hashes, epoch ${a.epoch}`}));
}

// Joint risk array as a heat map: price step k (columns) x vol state (rows); the two extreme
// scenarios (k = -6, +6) exist only with vol "none". Losses red, gains green; worst scenario outlined.
function heatMap(values, scenarios, worst, kind, toUsd) {
  const byCell = new Map(scenarios.map((s) => [`${s.k}/${s.vol}`, s]));
  const scale = Math.max(1, ...values.map((v) => Math.abs(toUsd(v))));
  const head = h("tr", {}, h("th", {text: "vol \\ price step k"}), K_COLUMNS.map((k) => h("th", {text: k > 0 ? `+${k}` : String(k)})));
  const rows = VOL_STATES.map((vol) => h("tr", {}, h("th", {text: `vol ${vol}`}), K_COLUMNS.map((k) => {
    const s = byCell.get(`${k}/${vol}`);
    if (!s || s.s >= values.length) return h("td", {class: "empty"});
    const usdValue = toUsd(values[s.s]);
    const cell = h("td", {class: "cell" + (s.s === worst ? " worst" : ""), "data-scenario": s.s, "data-usd": usdValue.toFixed(2),
      title: `scenario ${s.s}: k=${k}, vol ${vol}, weight ${s.weight}`}, usd(usdValue), s.s === worst ? h("div", {class: "marker", text: "worst"}) : null);
    const alpha = Math.min(1, Math.abs(usdValue) / scale);
    cell.style.backgroundColor = usdValue < 0 ? `rgba(200, 40, 40, ${0.12 + 0.75 * alpha})` : `rgba(30, 150, 80, ${0.08 + 0.5 * alpha})`;
    return cell;
  })));
  return h("figure", {class: "heatmap"}, h("table", {id: "risk-heatmap"}, h("thead", {}, head), h("tbody", {}, rows)),
    h("figcaption", {class: "muted", text: `Scenario P&L in USD, ${kind}. Worst scenario: ${worst ?? "none (no scan loss)"}.`}));
}

function collateralTable(rows) {
  if (!rows.length) return h("p", {class: "muted", text: "no collateral"});
  return h("table", {id: "collateral"}, h("thead", {}, h("tr", {}, ["Chain", "Asset", "Amount (base units)"].map((t) => h("th", {text: t})))),
    h("tbody", {}, rows.map((c) => h("tr", {}, h("td", {text: c.chain_id}), h("td", {text: c.asset}), h("td", {class: "num", text: c.amount})))));
}

// --- what-if -----------------------------------------------------------------------------------------
function renderWhatIf(view) {
  const input = h("textarea", {id: "whatif-input", rows: 24, spellcheck: "false"});
  input.value = JSON.stringify(WHATIF_EXAMPLE, null, 2);
  const output = h("div", {id: "whatif-output"});
  const form = h("form", {id: "whatif-form", onsubmit: async (event) => {
    event.preventDefault();
    output.replaceChildren(h("p", {class: "muted", text: "computing..."}));
    try {
      const doc = await api("/api/whatif", {method: "POST", headers: {"Content-Type": "application/json"}, body: input.value});
      output.replaceChildren(whatIfResult(doc));
    } catch (error) {
      showError(output, error);
    }
  }}, input, h("button", {type: "submit", text: "Compute margin"}));
  view.replaceChildren(h("h2", {text: "What-if margin"}),
    h("p", {class: "muted", text: "A what-if document (RISK_SPEC section 6) computed by this node's SimulateMargin path."}), form, output);
}

function whatIfResult(doc) {
  const r = doc.result;
  const card = (id, label, value) => h("div", {class: "card"}, h("div", {class: "label", text: label}), h("div", {id, class: "value", text: value}));
  const scan = Object.entries(r.scan_loss_by_underlying || {});
  return h("div", {},
    h("div", {class: "cards"}, card("whatif-im", "Initial margin", usd(r.initial_margin)), card("whatif-mm", "Maintenance margin", usd(r.maintenance_margin)),
      card("whatif-equity", "Equity", usd(r.equity)), card("whatif-health", "Health (equity / MM)", r.health === null ? "unbounded" : (100 * Number(r.health)).toFixed(2) + " %"),
      card("whatif-status", "Status", r.liquidatable ? "liquidatable" : "not liquidatable")),
    h("h3", {text: "Scan loss by underlying (each underlying alone)"}),
    h("table", {id: "whatif-scan"}, h("tbody", {}, scan.map(([u, v]) => h("tr", {}, h("th", {text: u}), h("td", {class: "num", text: usd(v)})))),
      h("tr", {}, h("th", {text: "joint"}), h("td", {class: "num", text: usd(r.joint_scan_loss)}))),
    h("h3", {text: "Joint risk array"}), heatMap(r.risk_array, doc.scenarios, r.worst_scenario, doc.risk_array_kind, Number));
}

// --- router ------------------------------------------------------------------------------------------
async function route() {
  clearInterval(refreshTimer);
  const view = document.getElementById("view");
  const hash = location.hash || "#/";
  const account = hash.match(/^#\/account\/(0x[0-9a-fA-F]{40})$/);
  if (!account && hash !== "#/whatif") return renderHome(view);  // refreshes the header with the timeline
  renderNodeInfo();
  if (account) await renderAccount(view, account[1]);
  else renderWhatIf(view);
}

document.getElementById("account-search").addEventListener("submit", (event) => {
  event.preventDefault();
  location.hash = `#/account/${document.getElementById("account-input").value.trim()}`;
});
window.addEventListener("hashchange", route);
route();
