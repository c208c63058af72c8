"""Publisher against real anvil chains and the real MarginStateRegistry (BLS check via EIP-2537)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector

from bridges.anvil import AnvilChain, rpc_call
from bridges.errors import (
    EpochSuperseded,
    FeeCapExceeded,
    PublishInFlight,
    PublishReverted,
    ReceiptTimeout,
    RpcError,
)
from bridges.publisher import (
    STATUS_ALREADY_PUBLISHED,
    STATUS_PUBLISHED,
    FeePolicy,
    Publisher,
    StateSubmission,
)
from node.crypto import bls
from tests.bridges.test_chain_support import DEV_KEY_1, deploy_artifact, make_client, running_chains

NETWORK_ID = 7
KEYSET_ID = 1
GROUP_SK = 0x1234_5678_9ABC_DEF0_1357_9BDF
GWEI = 10**9


def deploy_registry(chain: AnvilChain) -> str:
    key = bls.g2_to_eip2537(bls.public_key(GROUP_SK))
    return deploy_artifact(chain, "MarginStateRegistry", ["uint64", "uint32", "bytes"], [NETWORK_ID, KEYSET_ID, key])


def get_digest(chain: AnvilChain, registry: str, epoch: int, inputs: bytes, params: bytes, root: bytes,
               leaf_count: int) -> bytes:
    sel = function_signature_to_4byte_selector("computeStateDigest(uint32,uint64,bytes32,bytes32,bytes32,uint64)")
    data = sel + encode(["uint32", "uint64", "bytes32", "bytes32", "bytes32", "uint64"],
                        [KEYSET_ID, epoch, inputs, params, root, leaf_count])
    out = rpc_call(chain.rpc_url, "eth_call", [{"to": registry, "data": "0x" + data.hex()}, "latest"])
    return bytes(decode(["bytes32"], bytes.fromhex(str(out)[2:]))[0])


def make_submission(chain: AnvilChain, registry: str, epoch: int, root: bytes = b"\x11" * 32,
                    sk: int = GROUP_SK) -> StateSubmission:
    inputs, params, leaf_count = b"\x22" * 32, b"\x33" * 32, 3
    digest = get_digest(chain, registry, epoch, inputs, params, root, leaf_count)
    sig = bls.g1_to_eip2537(bls.sign(sk, digest))
    return StateSubmission(epoch, KEYSET_ID, inputs, params, root, leaf_count, sig)


def make_publisher(chain: AnvilChain, registry: str, **kw: object) -> Publisher:
    fees = kw.pop("fees", FeePolicy(fee_cap=100 * GWEI))
    return Publisher(make_client(chain), registry, DEV_KEY_1, fees, **kw)  # type: ignore[arg-type]


def test_publish_on_two_chains_then_idempotent() -> None:
    with running_chains(31337, 31338) as chains:
        for chain in chains:
            registry = deploy_registry(chain)
            pub = make_publisher(chain, registry)
            sub = make_submission(chain, registry, epoch=5)
            result = pub.publish(sub)
            assert result.status == STATUS_PUBLISHED and result.chain_id == chain.chain_id
            assert 100_000 < result.gas_used < 1_000_000  # a pairing check is ~100k+ gas
            assert result.tx_hash is not None and result.block_number is not None
            assert pub.get_latest_epoch() == 5
            again = pub.publish(sub)
            assert (again.status, again.gas_used, again.tx_hash) == (STATUS_ALREADY_PUBLISHED, 0, None)
            later = pub.publish(make_submission(chain, registry, epoch=6, root=b"\x44" * 32))
            assert later.status == STATUS_PUBLISHED and pub.get_latest_epoch() == 6


def test_invalid_signature_is_refused_with_contract_error_name() -> None:
    with running_chains(31337) as (chain,):
        registry = deploy_registry(chain)
        pub = make_publisher(chain, registry)
        bad = make_submission(chain, registry, epoch=1, sk=GROUP_SK + 1)
        with pytest.raises(PublishReverted, match="InvalidSignature"):
            pub.publish(bad)
        assert pub.get_latest_epoch() == 0


def test_invalid_stale_epoch_with_other_root_is_superseded() -> None:
    with running_chains(31337) as (chain,):
        registry = deploy_registry(chain)
        pub = make_publisher(chain, registry)
        assert pub.publish(make_submission(chain, registry, epoch=3)).status == STATUS_PUBLISHED
        with pytest.raises(EpochSuperseded, match="epoch 3"):
            pub.publish(make_submission(chain, registry, epoch=3, root=b"\x55" * 32))
        with pytest.raises(EpochSuperseded):
            pub.publish(make_submission(chain, registry, epoch=2))


def test_invalid_fee_above_cap_is_refused_before_sending() -> None:
    with running_chains(31337) as (chain,):
        registry = deploy_registry(chain)
        pub = make_publisher(chain, registry, fees=FeePolicy(fee_cap=1000, priority_fee=1))
        with pytest.raises(FeeCapExceeded, match="fee cap 1000"):
            pub.publish(make_submission(chain, registry, epoch=1))
        assert pub.get_latest_epoch() == 0
        nonce = rpc_call(chain.rpc_url, "eth_getTransactionCount", [pub.sender, "pending"])
        assert nonce == "0x0"


def test_invalid_receipt_wait_is_bounded_then_later_publish_is_idempotent() -> None:
    with running_chains(31337) as (chain,):
        registry = deploy_registry(chain)
        rpc_call(chain.rpc_url, "evm_setAutomine", [False])
        pub = make_publisher(chain, registry, receipt_timeout_s=0.3, poll_interval_s=0.05)
        sub = make_submission(chain, registry, epoch=9)
        with pytest.raises(ReceiptTimeout, match="epoch 9"):
            pub.publish(sub)
        rpc_call(chain.rpc_url, "evm_mine")  # the pending transaction lands
        assert pub.publish(sub).status == STATUS_ALREADY_PUBLISHED


def test_invalid_second_publish_while_one_is_in_flight() -> None:
    with running_chains(31337) as (chain,):
        registry = deploy_registry(chain)
        pub = make_publisher(chain, registry, lock_timeout_s=0.05)
        sub = make_submission(chain, registry, epoch=1)
        pub._lock.acquire()  # simulate a publish in flight in another thread
        try:
            with pytest.raises(PublishInFlight):
                pub.publish(sub)
        finally:
            pub._lock.release()
        assert pub.publish(sub).status == STATUS_PUBLISHED


def test_invalid_submission_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="signature"):
        StateSubmission(1, 1, b"\x00" * 32, b"\x00" * 32, b"\x00" * 32, 1, b"\x00" * 48)
    with pytest.raises(ValueError, match="root"):
        StateSubmission(1, 1, b"\x00" * 32, b"\x00" * 32, b"\x00" * 31, 1, b"\x00" * 128)


def test_resent_transaction_after_a_lost_reply_is_not_an_error() -> None:
    """The transport resends a raw transaction whose first reply was lost: the node then answers
    "already known" or "nonce too low"; the publisher recognises its own transaction."""
    from bridges.chain import ChainClient

    class ResendingClient(ChainClient):
        resent: list[str] = []  # noqa: RUF012

        def rpc(self, method: str, params: Any) -> Any:
            if method == "eth_sendRawTransaction":
                super().rpc(method, params)  # this reply is "lost"
                rpc_call(self.config.rpc_url, "evm_mine")
                try:
                    return super().rpc(method, params)
                except RpcError as exc:
                    self.resent.append(exc.message)
                    raise
            return super().rpc(method, params)

    with running_chains(31337) as (chain,):
        registry = deploy_registry(chain)
        client = ResendingClient(make_client(chain).config)
        pub = Publisher(client, registry, DEV_KEY_1, FeePolicy(fee_cap=100 * GWEI))
        result = pub.publish(make_submission(chain, registry, epoch=4))
        assert result.status == STATUS_PUBLISHED and result.gas_used > 0
        assert len(ResendingClient.resent) == 1, ResendingClient.resent
        assert pub.get_latest_epoch() == 4
