"""The protocol integration kit against a live devnet (two anvil chains, four validator processes):

- the example consumer (docs/integration/MarginGatedLender.sol), built against the committed interface
  only, on both chains: accepts a served leaf (reads free collateral, lends up to it), refuses a borrow
  above it, refuses a forged leaf, flags a liquidatable account and refuses to flag a healthy one;
- the signing format recomputed from docs/integration/verify-margin-state.md alone (keccak from
  eth-hash, BLS from py_ecc; no function of the project) on a state published on chain;
- under CPU load (burner processes), 200 or more `GetMargin` calls without an epoch, spread over the
  validators with no failover, never answer NOT_FOUND, while validators store peers' states before
  their own leaves (the case that used to answer NOT_FOUND; the engine's counter shows it happened);
- with one validator stopped, the client keeps answering through the others.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from eth_abi import decode
from eth_hash.auto import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError

from clearing_client import ClearingClient, MarginReport, PublicationError, Registry
from node.pb.clearing.api.v1 import api_pb2, api_pb2_grpc
from tests.integration.conftest import Devnet, wait_for

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
REGISTRY_ABI = __import__("json").loads((REPO / "bridges" / "artifacts" / "IMarginRegistry.json").read_text())["abi"]
LOAD_CALLS = 200


def selector(signature: str) -> str:
    return "0x" + keccak(signature.encode())[:4].hex()


def revert_of(call: Any, sender: str) -> str:
    """The 4-byte selector (0x-hex) of the custom error `call` reverts with."""
    with pytest.raises(ContractCustomError) as err:
        call.call({"from": sender})
    data = err.value.data if isinstance(err.value.data, str) else err.value.message
    return str(data)[:10]


def deploy(w3: Web3, artifact: dict[str, Any], *args: object) -> Any:
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor(*args).transact({"from": w3.eth.accounts[5]}), timeout=60)
    assert receipt["status"] == 1
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])


def transact(w3: Web3, call: Any, sender: str) -> dict[str, Any]:
    receipt = w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}), timeout=60)
    assert receipt["status"] == 1
    return dict(receipt)


def get_registries(devnet: Devnet) -> list[Registry]:
    return [Registry(c.rpc_url, c.deployment.registry) for c in devnet.run.seeded]


def get_published_epoch(devnet: Devnet, after: int = 0) -> int:
    """An epoch > `after` published on every chain (the newest one all registries hold)."""
    def attempt() -> int | None:
        registries = get_registries(devnet)
        epoch = min(r.get_latest_epoch() for r in registries)
        return epoch if epoch > after and all(r.is_published(epoch) for r in registries) else None

    return wait_for(attempt, 180, f"an epoch after {after} published on every chain")


def get_published_reports(devnet: Devnet, client: ClearingClient) -> dict[str, MarginReport]:
    """Every demo account's report in one epoch published on both chains, once `fragile` is liquidatable."""
    def attempt() -> dict[str, MarginReport] | None:
        epoch = get_published_epoch(devnet, devnet.crash_after_epoch)
        reports = {name: client.get_margin(account, epoch) for name, account in devnet.accounts.items()}
        return reports if reports["fragile"].margin.liquidatable else None

    return wait_for(attempt, 180, "the fragile account liquidatable in a published epoch")


# -------------------------------------------------------------------- the consumer on two chains

def test_consumer_built_on_the_interface_accepts_refuses_and_flags(devnet: Devnet,
                                                                   consumer_artifact: dict[str, Any]) -> None:
    home = devnet.run.seeded[0]
    group_key = Registry(home.rpc_url, home.deployment.registry).get_group_key()
    with devnet.client(group_public_key=group_key, network_id=devnet.run.options.network_id) as client:
        reports = get_published_reports(devnet, client)  # verified: proof, digest, group signature
    fragile = reports["fragile"]
    healthy = max((reports[n] for n in ("hedged", "unhedged")), key=lambda r: r.margin.free_collateral_micro_usd)
    assert healthy.margin.free_collateral_micro_usd > 0 and not healthy.margin.liquidatable
    borrower = healthy.margin.account
    for chain in devnet.run.seeded:
        w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        keeper = w3.eth.accounts[6]  # anyone
        lender = deploy(w3, consumer_artifact, Web3.to_checksum_address(chain.deployment.registry), 1_000)
        f = lender.functions
        leaf, proof, epoch = healthy.leaf_values.as_abi_tuple(), list(healthy.proof), healthy.state.epoch
        free = healthy.margin.free_collateral_micro_usd
        assert f.freeCollateral(borrower, epoch, leaf, proof).call() == free  # a served leaf is accepted
        half = free // 2
        transact(w3, f.borrow(half, epoch, leaf, proof), borrower)
        assert f.borrowedMicroUsd(borrower).call() == half
        assert revert_of(f.borrow(free - half + 1, epoch, leaf, proof), borrower) == \
            selector("AboveFreeCollateral(uint256,int256)")
        forged = (leaf[0], leaf[1] + 10**12, *leaf[2:])  # a richer account than the one signed
        assert revert_of(f.borrow(1, epoch, forged, proof), borrower) == selector("InvalidProof(address,uint64)")
        assert revert_of(f.borrow(1, epoch + 1_000, leaf, proof), borrower) == selector("EpochNotRetained(uint64)")
        liq_leaf, liq_proof = fragile.leaf_values.as_abi_tuple(), list(fragile.proof)
        assert revert_of(f.flagLiquidatable(borrower, epoch, leaf, proof), keeper) == \
            selector("NotLiquidatable(address,uint64)")
        assert revert_of(f.flagLiquidatable(borrower, fragile.state.epoch, liq_leaf, liq_proof), keeper) == \
            selector("AccountMismatch(address,address)")
        receipt = transact(w3, f.flagLiquidatable(fragile.margin.account, fragile.state.epoch, liq_leaf, liq_proof),
                           keeper)
        assert f.flaggedAtEpoch(fragile.margin.account).call() == fragile.state.epoch
        assert lender.events.LiquidatableFlagged().process_receipt(receipt)[0]["args"]["by"] == keeper


# -------------------------------------------------------------------- the documented formulas

def fp(value: int) -> bytes:
    return bytes(16) + value.to_bytes(48, "big")


def test_signing_format_recomputes_from_the_guide(devnet: Devnet) -> None:
    """Every formula of verify-margin-state.md on a state published on chain, from the guide alone."""
    from py_ecc.bls.g2_primitives import pubkey_to_G1, signature_to_G2
    from py_ecc.bls.hash_to_curve import hash_to_G1
    from py_ecc.optimized_bls12_381 import G2, normalize, pairing

    epoch = get_published_epoch(devnet)
    with devnet.client() as client:  # the validator holding the epoch's leaves; raw messages below
        endpoint = client.get_margin(devnet.accounts["hedged"], epoch).endpoint
    channel = grpc.insecure_channel(endpoint)
    stubs = [api_pb2_grpc.MarginServiceStub(channel)]
    state = stubs[0].GetSignedState(api_pb2.GetSignedStateRequest(epoch=epoch), timeout=10).state
    # 2. inputs digest, 4. state digest
    pins = sorted(state.pins, key=lambda p: p.chain_id)
    inputs = keccak(b"CLEARING-V1-INPUTS".ljust(32, b"\0") + len(pins).to_bytes(4, "big") + b"".join(
        p.chain_id.to_bytes(8, "big") + p.block_number.to_bytes(8, "big") + bytes(p.block_hash) for p in pins))
    assert inputs == state.inputs_digest
    digest = keccak(b"CLEARING-V1-STATE".ljust(32, b"\0") + state.network_id.to_bytes(8, "big")
                    + state.keyset_id.to_bytes(4, "big") + state.epoch.to_bytes(8, "big") + inputs
                    + bytes(state.params_hash) + bytes(state.root) + state.leaf_count.to_bytes(8, "big"))
    assert digest == state.digest
    # 3. parameters hash
    params = stubs[0].GetParameters(api_pb2.GetParametersRequest(epoch=state.epoch), timeout=10)
    assert keccak(b"CLEARING-RISK-PARAMS-V1" + bytes(params.encoded)) == state.params_hash == params.params_hash
    # 1. a leaf and its proof
    report = stubs[0].GetMargin(api_pb2.GetMarginRequest(account=devnet.accounts["hedged"], epoch=state.epoch),
                                timeout=10).report
    node = keccak(keccak(bytes(report.leaf)))
    for sibling in report.proof:
        node = keccak(min(node, bytes(sibling)) + max(node, bytes(sibling)))
    assert node == state.root
    account, equity, im, mm, flags, _ids = decode(["address", "int256", "uint256", "uint256", "uint256", "bytes32[]"],
                                                  bytes(report.leaf))
    assert (Web3.to_checksum_address(account), equity, im, mm) == (
        report.margin.account, report.margin.equity_micro_usd, report.margin.initial_margin_micro_usd,
        report.margin.maintenance_margin_micro_usd)  # the served account is EIP-55
    assert bool(flags & 1) == report.margin.liquidatable
    # 5. BLS min-sig: e(sig, g2) == e(H(digest), pk), H with the documented DST
    dst = b"CLEARING-V1-BLS-SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_"
    group_key = bytes(stubs[0].ListValidators(api_pb2.ListValidatorsRequest(), timeout=10).group_public_key)
    sig_point, pk_point = pubkey_to_G1(bytes(state.signature)), signature_to_G2(group_key)
    h = hash_to_G1(digest, dst, hashlib.sha256)
    assert pairing(G2, sig_point) == pairing(pk_point, h)
    assert pairing(G2, sig_point) != pairing(pk_point, hash_to_G1(digest, b"OTHER-DST", hashlib.sha256))
    # 6. EIP-2537 encodings, checked against the registry on every chain
    (kx, ky), (sx, sy), (hx, hy) = normalize(pk_point), normalize(sig_point), normalize(h)
    key_eip2537 = b"".join(fp(c) for c in (*kx.coeffs, *ky.coeffs))
    sig_eip2537, h_eip2537 = fp(int(sx)) + fp(int(sy)), fp(int(hx)) + fp(int(hy))
    for chain in devnet.run.seeded:
        w3 = Web3(Web3.HTTPProvider(chain.rpc_url))
        registry = w3.eth.contract(address=Web3.to_checksum_address(chain.deployment.registry), abi=REGISTRY_ABI)
        assert bytes(registry.functions.groupPublicKey().call()) == key_eip2537
        assert bytes(registry.functions.hashToG1(digest).call()) == h_eip2537
        assert bytes(registry.functions.computeStateDigest(state.keyset_id, state.epoch, inputs, bytes(state.params_hash),
                                                           bytes(state.root), state.leaf_count).call()) == digest
        # 7. the ring commitment
        assert registry.functions.isStateRoot(state.epoch, bytes(state.root)).call()
        assert bytes(registry.functions.computeCommitment(state.epoch, bytes(state.root)).call()) == \
            keccak(state.epoch.to_bytes(32, "big") + bytes(state.root))
        logs = registry.events.StatePublished().get_logs(from_block=0, argument_filters={"epoch": state.epoch})
        assert bytes(logs[0]["args"]["digest"]) == digest
        tx = w3.eth.get_transaction(logs[0]["transactionHash"])
        _fn, args = registry.decode_function_input(tx["input"])
        assert bytes(args["signature"]) == sig_eip2537  # the state's 48-byte signature, as EIP-2537 G1
    channel.close()


# -------------------------------------------------------------------- every validator serves the newest epoch

BURNER = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end:\n    pass\n"
BURNERS_PER_CORE = 2
MAX_LOAD_S = 150.0  # calls go on past LOAD_CALLS until a validator adopted a state before its leaves
EVENT = re.compile(r'^clearing_consensus_events_total\{event="adopted_leaves_completed"\} (\S+)$', re.M)


def count_leaf_completions(devnet: Devnet) -> int:
    """Sum over the validators of states stored from a peer before their own leaves (engine counter)."""
    total = 0
    for h in devnet.run.homes:
        try:
            text = urllib.request.urlopen(f"http://{h.metrics_address}/metrics", timeout=5).read().decode()
        except OSError:
            continue
        match = EVENT.search(text)
        total += int(float(match.group(1))) if match else 0
    return total


def test_get_margin_latest_under_load_never_not_found(devnet: Devnet) -> None:
    """CPU burners (two per core: machine load well above the cores), then at least 200 GetMargin calls
    without an epoch, round-robin over the validators, each on its own validator only (no failover),
    going on (bounded) until some validator has stored a peer's state before its own leaves (the case
    that answered NOT_FOUND): no call answers NOT_FOUND."""
    burners = [subprocess.Popen([sys.executable, "-c", BURNER.format(s=MAX_LOAD_S + 60)])
               for _ in range(BURNERS_PER_CORE * (os.cpu_count() or 2))]
    channels = [grpc.insecure_channel(e) for e in devnet.endpoints]
    stubs = [api_pb2_grpc.MarginServiceStub(c) for c in channels]
    names = sorted(devnet.accounts)
    codes: Counter = Counter()
    epochs: dict[int, set[int]] = {i: set() for i in range(len(stubs))}
    not_found: list[str] = []
    completions_before = count_leaf_completions(devnet)
    completions, call, started = completions_before, 0, time.monotonic()
    try:
        while call < LOAD_CALLS or (completions == completions_before and time.monotonic() - started < MAX_LOAD_S):
            i = call % len(stubs)
            request = api_pb2.GetMarginRequest(account=devnet.accounts[names[call % len(names)]])
            try:
                report = stubs[i].GetMargin(request, timeout=15).report
                codes["OK"] += 1
                epochs[i].add(report.state.epoch)
                assert report.proof and report.margin.epoch == report.state.epoch
            except grpc.RpcError as err:
                codes[err.code().name] += 1
                if err.code() == grpc.StatusCode.NOT_FOUND:
                    not_found.append(f"v{i}: {err.details()}")
            call += 1
            if call % 20 == 0:
                completions = count_leaf_completions(devnet)
            time.sleep(0.05)  # spread over several epochs: the calls cross epoch boundaries
    finally:
        for p in burners:
            p.kill()
            p.wait()
        for c in channels:
            c.close()
    completions = count_leaf_completions(devnet)
    print(f"under load: {call} calls {dict(codes)} in {time.monotonic() - started:.0f} s; states adopted before "
          f"their leaves meanwhile: {completions - completions_before}; epochs served per validator: {epochs}")
    assert not not_found, not_found
    assert codes["OK"] >= call * 0.95, codes
    assert len(set().union(*epochs.values())) >= 2, epochs  # the newest epoch changed during the calls
    assert completions > completions_before, "no validator adopted a state before its own leaves: load too low"


# -------------------------------------------------------------------- failover (stops a validator: runs last)

def test_client_fails_over_when_a_validator_stops(devnet: Devnet) -> None:
    with devnet.client(timeout_s=5, backoff_s=0.2) as client:
        before = client.get_signed_state().epoch
        stopped = devnet.run.processes[0]
        stopped.terminate()
        assert stopped.wait(timeout=30) is not None
        reports = [client.get_margin(devnet.accounts["hedged"]) for _ in range(30)]
        assert all(r.endpoint != devnet.endpoints[0] for r in reports) and client.failovers >= 1
        # the three others (threshold 3) keep signing and publishing; the client follows the newest epoch
        after = wait_for(lambda: (r := client.get_margin(devnet.accounts["hedged"])).state.epoch > before + 1 and r,
                         120, "an epoch signed after the stop")
        for registry in get_registries(devnet):  # and it reaches every chain
            epoch = wait_for_published_from(registry, after.state.epoch)
            assert registry.is_state_root(epoch, client.get_signed_state(epoch).root)


def wait_for_published_from(registry: Registry, epoch: int) -> int:
    """The first epoch >= `epoch` published on the registry's chain (a publisher may supersede one)."""
    for candidate in range(epoch, epoch + 10):
        try:
            registry.wait_for_epoch(candidate, timeout_s=120)
            return candidate
        except PublicationError:
            continue
    raise AssertionError(f"no epoch of {epoch}..{epoch + 9} published at {registry.rpc_url}")
