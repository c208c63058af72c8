"""Gas per clearing-contract operation on a real anvil chain (Prague), as one JSON object.

Baseline measured in the same run: a plain ERC-20 `transfer` of the project's TestToken (to an address
that already holds tokens; also to a fresh one). Transaction figures are receipt `gasUsed` (21000 base
and calldata included). `verify_account_proof` is the execution gas of the view `verifyLeaf` for one
account of a state with `--leaves` accounts, taken from an opcode trace (`debug_traceCall`, anvil runs
with --steps-tracing): what a protocol contract pays when it calls the registry. The brief's proxy,
eth_estimateGas minus 21000, is reported as `verify_account_proof_estimate_minus_21000`: under Prague
(EIP-7623) a call that is mostly calldata is billed the calldata floor (10 gas per token), so that
figure measures the leaf + proof bytes rather than the verification. `publish_state_keyset_advance`
is a publish under the same group key with the next key-set id (after a reshare): one more write of
the registry's packed slot and a GroupKeyRotated event. Targets: publish <= 150k, one proof <= 15k
execution gas.

Ledger and vault batches: `record_trade` is one matched trade between two accounts that already hold
the instrument (`record_trade_new_accounts`: the first trade of both accounts); the 200-trade
figures are one `recordTrades` call, with 200 new takers against the house (each creates an account
and a position) and with 200 trades between accounts that already hold the position.
`deposit_for_many_200_*` is one `depositForMany` of 200 accounts (first deposits, then top-ups), paid
by one sender in one token transfer. `request_withdrawal` is a second request of an account;
`complete_withdrawal` is the completion with a proof in a state of `--leaves` accounts.
`oracle_publish_*`: six oracle tables of 20 entries each, as one `multicall` transaction (what
`clearingd oracle publish` sends) and as six separate setter transactions, for new keys and for updates.

Usage: .venv/bin/python bench/gas_report.py [--leaves 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eth_typing import HexStr
from eth_utils import to_checksum_address

from bridges.anvil import AnvilChain, get_free_port, rpc_call
from bridges.deploy import (
    KIND_PERP,
    ChainSender,
    Deployment,
    MatchedTrade,
    deploy_all,
    deposit_for_many,
    get_dev_key,
    mint,
    mint_and_deposit,
    record_trade,
    record_trades,
    register_instrument,
    set_market,
    set_publisher,
    set_venue,
)
from bridges.merkle import build_tree
from bridges.statecodec import (
    FLAG_LIQUIDATABLE,
    MarginLeaf,
    compute_admin_digest,
    compute_leaf_hashes,
    compute_state_digest,
    withdrawal_id,
)
from node.crypto import bls, threshold

NETWORK_ID = 1
USDC = 10**6
TARGETS = {"publish_state": 150_000, "verify_account_proof": 15_000}


class Signer:
    def __init__(self, seed: bytes, keyset_id: int, n: int = 7, t: int = 5) -> None:
        self.public_key, self.shares, _ = threshold.deal_trusted(n, t, seed)
        self.keyset_id, self.t = keyset_id, t

    @property
    def eip2537(self) -> bytes:
        return bls.g2_to_eip2537(self.public_key)

    def sign(self, digest: bytes) -> bytes:
        partials = {i: threshold.partial_sign(self.shares[i], digest) for i in sorted(self.shares)[: self.t]}
        return bls.g1_to_eip2537(threshold.combine(partials, self.t))


def get_calldata_gas(data: bytes) -> int:
    return sum(16 if b else 4 for b in data)


def get_execution_gas(rpc_url: str, to: str, data: bytes) -> int:
    """Gas spent by the opcodes of a call (no intrinsic, no calldata), from an opcode trace."""
    trace = rpc_call(rpc_url, "debug_traceCall", [{"to": to, "data": "0x" + data.hex(), "gas": hex(10**6)},
                                                 "latest", {"disableStorage": True, "disableStack": True}],
                     timeout=60)
    assert isinstance(trace, dict) and not trace["failed"], trace
    logs = trace["structLogs"]
    return int(logs[0]["gas"] - logs[-1]["gas"] + logs[-1]["gasCost"])


def make_leaves(accounts: list[str], n: int, special: dict[str, MarginLeaf]) -> list[MarginLeaf]:
    leaves = [special[a] for a in accounts if a in special]
    for i in range(n - len(leaves)):
        leaves.append(MarginLeaf("0x" + (i + 1).to_bytes(20, "big").hex(), 10_000 * USDC + i, 1_000 * USDC,
                                  700 * USDC, 0, ()))
    return leaves


def publish(sender: ChainSender, registry: str, signer: Signer, epoch: int, leaves: list[MarginLeaf]):
    tree = build_tree(compute_leaf_hashes(leaves))
    inputs, params = b"\x5a" * 32, b"\xa5" * 32
    digest = compute_state_digest(NETWORK_ID, signer.keyset_id, epoch, inputs, params, tree.root, len(leaves))
    receipt = sender.transact("MarginStateRegistry", registry, "publishState", epoch, signer.keyset_id, inputs,
                              params, tree.root, len(leaves), signer.sign(digest))
    return receipt, tree


def get_addresses(n: int, salt: int) -> list[str]:
    """`n` distinct fresh addresses (never used on the chain; nobody holds their keys)."""
    return [to_checksum_address((salt << 32 | i).to_bytes(20, "big")) for i in range(1, n + 1)]


def request(user: ChainSender, d: Deployment, amount: int) -> tuple[int, int]:
    """(request id, gas used) of one withdrawal request of USDC."""
    receipt = user.transact("CollateralVault", d.vault, "requestWithdrawal", d.get_token("USDC"), amount)
    event = user.contract("CollateralVault", d.vault).events.WithdrawalRequested().process_receipt(receipt)[0]
    return int(event["args"]["requestId"]), int(receipt["gasUsed"])


def measure_deposit_for_many(owner: ChainSender, d: Deployment) -> dict[str, int]:
    """depositForMany of 200 accounts: first deposits, then top-ups of the same accounts."""
    accounts = get_addresses(200, salt=0xD0)
    mint(owner, d, "USDC", owner.address, 2 * 200 * USDC)
    first = deposit_for_many(owner, d, "USDC", {a: USDC for a in accounts})
    again = deposit_for_many(owner, d, "USDC", {a: USDC for a in accounts})
    assert len(first) == len(again) == 1
    return {"deposit_for_many_200_new_accounts": int(first[0]["gasUsed"]),
            "deposit_for_many_200_existing_accounts": int(again[0]["gasUsed"])}


def measure_trades(house: ChainSender, d: Deployment, user: str, other: str) -> dict[str, int]:
    """recordTrade and recordTrades(200) on a BTC perp with the house (deployer) as venue and maker."""
    register_instrument(house, d, 1, "BTC", KIND_PERP)
    set_venue(house, d, house.address)
    price = 100_000 * USDC
    gas = {"record_trade_new_accounts": record_trade(house, d, user, other, 1, 10**8, price)["gasUsed"]}
    gas["record_trade"] = record_trade(house, d, user, other, 1, 10**8, price)["gasUsed"]
    takers = get_addresses(200, salt=0x7A)
    receipts = record_trades(house, d, [MatchedTrade(house.address, t, 1, 10**6, price) for t in takers])
    gas["record_trades_200_new_accounts"] = int(receipts[0]["gasUsed"])
    receipts = record_trades(house, d, [MatchedTrade(user, other, 1, 10**6 * (1 - 2 * (i % 2)), price)
                                        for i in range(200)])
    gas["record_trades_200"] = int(receipts[0]["gasUsed"])
    return gas


def make_market(rows: int, base: int, prefix: str, first_id: int) -> dict[str, dict]:
    """`rows` entries in each of the six oracle tables, keys named from `prefix` (vols from instrument id
    `first_id`); `base` shifts every value (a new value each call)."""
    from bridges.deploy import CONFIDENCE_SPOT

    names = [f"{prefix}{i}" for i in range(rows)]
    return {"spots": {u: (base + i + 1) * USDC for i, u in enumerate(names)},
            "forwards": {(u, 2_000_000_000): (base + i + 2) * USDC for i, u in enumerate(names)},
            "vols": {first_id + i: 500_000 + base + i for i in range(rows)},
            "asset_prices": {f"{prefix}A{i}": (base + i + 1) * USDC for i in range(rows)},
            "confidences": {(CONFIDENCE_SPOT, u, 0): 900_000_000 + base + i for i, u in enumerate(names)},
            "rates": {(u, 2_000_000_000): 40_000_000 + base + i for i, u in enumerate(names)}}


def measure_oracle_publish(owner: ChainSender, d: Deployment, rows: int = 20) -> dict[str, int]:
    """An oracle publish of six tables x `rows` entries: one `multicall` transaction (what `set_market` sends)
    against the same calls as six separate transactions, for new keys and for updates of existing ones."""
    from bridges.deploy import _market_calls

    def separately(base: int) -> int:
        m = make_market(rows, base, "S", 1_000)
        return sum(owner.transact("MarketOracle", d.oracle, function, *columns)["gasUsed"]
                   for function, columns in _market_calls(**m))

    out = {"oracle_publish_separate_new_keys": separately(0), "oracle_publish_separate_update": separately(10)}
    (new,) = set_market(owner, d, **make_market(rows, 0, "M", 2_000))
    (update,) = set_market(owner, d, **make_market(rows, 10, "M", 2_000))
    out |= {"oracle_publish_multicall_new_keys": new["gasUsed"], "oracle_publish_multicall_update": update["gasUsed"]}
    return out


def run(n_leaves: int) -> dict:
    chain = AnvilChain(chain_id=31337, port=get_free_port(), extra_args=("--steps-tracing",)).start()
    try:
        owner = ChainSender(chain.rpc_url, get_dev_key(0))
        user, other = ChainSender(chain.rpc_url, get_dev_key(3)), ChainSender(chain.rpc_url, get_dev_key(4))
        signer = Signer(b"gas-report", keyset_id=1)
        d = deploy_all(chain.rpc_url, get_dev_key(0), NETWORK_ID, signer.keyset_id, signer.eip2537)
        usdc = d.get_token("USDC")
        gas: dict[str, int] = {}

        owner.transact("TestToken", usdc, "mint", owner.address, 10**12)
        owner.transact("TestToken", usdc, "mint", user.address, 1)
        gas["erc20_transfer_new_recipient"] = owner.transact("TestToken", usdc, "transfer", other.address, 5)["gasUsed"]
        baseline = owner.transact("TestToken", usdc, "transfer", user.address, 5)["gasUsed"]

        gas["deposit_first"] = mint_and_deposit(owner, d, user, "USDC", 5_000 * USDC)["gasUsed"]
        gas["deposit"] = mint_and_deposit(owner, d, user, "USDC", 1_000 * USDC)["gasUsed"]
        gas |= measure_deposit_for_many(owner, d)
        request_id, _ = request(user, d, 100 * USDC)
        _rid, gas["request_withdrawal"] = request(user, d, 100 * USDC)

        wid = withdrawal_id(chain.chain_id, d.vault, request_id)
        user_leaf = MarginLeaf(user.address, 6_000 * USDC, 1_000 * USDC, 700 * USDC, 0, (wid,))
        other_leaf = MarginLeaf(other.address, -5 * USDC, 1_000 * USDC, 700 * USDC, FLAG_LIQUIDATABLE, ())
        accounts = [user.address, other.address]
        special = {user.address: user_leaf, other.address: other_leaf}
        first, _ = publish(owner, d.registry, signer, 1, make_leaves(accounts, 3, special))
        gas["publish_state_first"] = first["gasUsed"]
        leaves = make_leaves(accounts, n_leaves, special)
        receipt, tree = publish(owner, d.registry, signer, 2, leaves)
        gas["publish_state"] = receipt["gasUsed"]

        registry = owner.contract("MarginStateRegistry", d.registry)
        proof = tree.get_proof(0)
        call = registry.functions.verifyLeaf(2, user_leaf.to_abi_tuple(), proof)
        assert call.call() is True
        data = bytes.fromhex(call._encode_transaction_data()[2:])
        estimate = int(owner.w3.eth.estimate_gas({"to": d.registry, "data": data}))
        gas["verify_account_proof"] = get_execution_gas(chain.rpc_url, d.registry, data)
        gas["verify_account_proof_estimate_minus_21000"] = estimate - 21_000
        gas["verify_account_proof_calldata"] = get_calldata_gas(data)
        margin_call = registry.functions.marginOf(user.address, 2, user_leaf.to_abi_tuple(), proof)
        margin_data = margin_call._encode_transaction_data()
        gas["margin_of"] = int(owner.w3.eth.estimate_gas({"to": d.registry, "data": HexStr(margin_data)})) - 21_000

        gas["complete_withdrawal"] = user.transact("CollateralVault", d.vault, "completeWithdrawal", request_id, 2,
                                                   user_leaf.to_abi_tuple(), proof)["gasUsed"]
        gas["flag_liquidation"] = user.transact("CollateralVault", d.vault, "flagLiquidation", other.address, 2,
                                                other_leaf.to_abi_tuple(), tree.get_proof(1))["gasUsed"]

        gas |= measure_trades(owner, d, user.address, other.address)
        set_publisher(owner, d, owner.address)
        set_market(owner, d, spots={"BTC": 100_000 * USDC})
        spot = owner.transact("MarketOracle", d.oracle, "setSpots", [b"BTC".ljust(32, b"\0")], [99_000 * USDC])
        gas["set_spot_one"] = spot["gasUsed"]
        gas |= measure_oracle_publish(owner, d)

        new = Signer(b"gas-report-rotated", keyset_id=2)
        admin = compute_admin_digest(NETWORK_ID, chain.chain_id, d.registry, 0, new.keyset_id, new.eip2537)
        gas["rotate_group_key"] = owner.transact("MarginStateRegistry", d.registry, "rotateGroupKey", new.keyset_id,
                                                 new.eip2537, signer.sign(admin))["gasUsed"]
        after_rotation, _ = publish(owner, d.registry, new, 3, make_leaves(accounts, 3, special))
        gas["publish_state_after_rotation"] = after_rotation["gasUsed"]
        # a reshare: same group key, key-set id + 1, accepted by publishState itself (no admin message)
        new.keyset_id += 1
        advance, _ = publish(owner, d.registry, new, 4, make_leaves(accounts, 3, special))
        assert registry.functions.keysetId().call() == new.keyset_id
        gas["publish_state_keyset_advance"] = advance["gasUsed"]

        return {
            "chain": {"hardfork": "prague", "chain_id": chain.chain_id, "registry": to_checksum_address(d.registry)},
            "leaves": n_leaves,
            "proof_length": len(proof),
            "baseline": {"erc20_transfer": baseline},
            "gas": gas,
            "ratio_to_erc20_transfer": {k: round(v / baseline, 2) for k, v in gas.items()},
            "targets": TARGETS,
            "meets_target": {k: gas[k] <= v for k, v in TARGETS.items()},
        }
    finally:
        chain.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gas per clearing-contract operation (JSON)")
    parser.add_argument("--leaves", type=int, default=100_000, help="accounts in the measured state")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.leaves), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
