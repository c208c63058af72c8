"""The event word decoder equals the ABI decoder on every static type the clearing events use, and refuses
what the ABI decoder refuses (dirty padding, out-of-range narrow integers, bad bools)."""

from __future__ import annotations

import pytest
from eth_abi import decode, encode
from hypothesis import given
from hypothesis import strategies as st

from bridges.events import decode_word

TYPES = {
    "uint64": st.integers(0, 2**64 - 1), "uint256": st.integers(0, 2**256 - 1), "uint8": st.integers(0, 255),
    "int64": st.integers(-(2**63), 2**63 - 1), "int256": st.integers(-(2**255), 2**255 - 1),
    "bool": st.booleans(), "bytes32": st.binary(min_size=32, max_size=32),
    "address": st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
}


@pytest.mark.parametrize("abi_type", sorted(TYPES))
@given(data=st.data())
def test_word_decoder_equals_the_abi_decoder(abi_type: str, data: st.DataObject) -> None:
    value = data.draw(TYPES[abi_type])
    word = encode([abi_type], [value])
    expected = decode([abi_type], word)[0]
    got = decode_word(abi_type, word)
    assert (got.lower() if abi_type == "address" else got) == (expected.lower() if abi_type == "address" else expected)


@pytest.mark.parametrize(("abi_type", "word"), [
    ("address", b"\x01" + bytes(31)),
    ("uint64", (2**64).to_bytes(32, "big")),
    ("int64", (2**63).to_bytes(32, "big")),
    ("int64", (-(2**63) - 1).to_bytes(32, "big", signed=True)),
    ("bool", (2).to_bytes(32, "big")),
    ("string", bytes(32)),
])
def test_invalid_words_are_refused(abi_type: str, word: bytes) -> None:
    with pytest.raises(ValueError):
        decode_word(abi_type, word)
