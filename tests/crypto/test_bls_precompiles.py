"""Our EIP-2537 encodings against the real precompiles of an anvil chain (hardfork prague)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridges.anvil import AnvilChain, rpc_call, start_chains
from node.crypto import bls, threshold

G1ADD = "0x000000000000000000000000000000000000000b"
PAIRING = "0x000000000000000000000000000000000000000f"
MAP_FP_TO_G1 = "0x0000000000000000000000000000000000000010"


@pytest.fixture(scope="module")
def chain() -> Iterator[AnvilChain]:
    (anvil,) = start_chains([31337])
    try:
        yield anvil
    finally:
        anvil.stop()


def call(chain: AnvilChain, to: str, data: bytes) -> bytes:
    result = rpc_call(
        chain.rpc_url, "eth_call", [{"to": to, "data": "0x" + data.hex(), "gas": hex(5_000_000)}, "latest"]
    )
    assert isinstance(result, str)
    return bytes.fromhex(result[2:])


def test_on_chain_hash_to_curve_matches(chain: AnvilChain) -> None:
    for msg in (b"", b"epoch 1 digest", bytes(range(200))):
        u0, u1 = bls.hash_to_field(msg)
        q0 = call(chain, MAP_FP_TO_G1, bls.fp_to_eip2537(u0))
        q1 = call(chain, MAP_FP_TO_G1, bls.fp_to_eip2537(u1))
        assert len(q0) == 128 and len(q1) == 128
        assert call(chain, G1ADD, q0 + q1) == bls.hash_to_g1_eip2537(msg)


def test_on_chain_pairing_accepts_group_signature_and_rejects_others(chain: AnvilChain) -> None:
    group_pk, shares, _ = threshold.deal_trusted(4, 3, b"precompile")
    msg = b"signed margin state"
    sig = threshold.combine({i: threshold.partial_sign(shares[i], msg) for i in (1, 3, 4)}, 3)
    one = (1).to_bytes(32, "big")
    assert call(chain, PAIRING, bls.compute_pairing_input_eip2537(group_pk, msg, sig)) == one
    assert call(chain, PAIRING, bls.compute_pairing_input_eip2537(group_pk, b"other", sig)) == bytes(32)
    partial = threshold.partial_sign(shares[1], msg)
    assert call(chain, PAIRING, bls.compute_pairing_input_eip2537(group_pk, msg, partial)) == bytes(32)
