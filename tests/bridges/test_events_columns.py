"""`EventDecoder.decode_many` and `decode_column` against the per-log reference (`decode`, `decode_word`).

Random words of every field type the clearing events use, both in range and just outside it (padding,
sign extension, narrow integers): the column path must give the same values, or refuse exactly when the
reference raises, and `decode_many` must raise the reference's error for the first bad log.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from eth_utils import event_abi_to_log_topic

from bridges.artifacts import get_abi
from bridges.chain import LogEntry
from bridges.errors import InvalidChainValue
from bridges.events import CONTRACT_NAMES, EventDecoder, decode_column, decode_word

TYPES = ("address", "bytes32", "bool", "uint8", "uint64", "uint256", "int256", "int64", "int8")
CONTRACTS = {"vault": "0x" + "aa" * 20, "ledger": "0x" + "bb" * 20, "oracle": "0x" + "cc" * 20}


def random_word(rng: random.Random, abi_type: str) -> bytes:
    """A word of `abi_type`, in range most of the time, else near a range edge or arbitrary."""
    pick = rng.random()
    if pick < 0.05:
        return bytes(rng.getrandbits(8) for _ in range(32))
    if abi_type == "address":
        word = bytes(12) + bytes(rng.getrandbits(8) for _ in range(20))
        return word if pick > 0.1 else b"\x01" + word[1:]
    if abi_type == "bytes32":
        return bytes(rng.getrandbits(8) for _ in range(32))
    if abi_type == "bool":
        return (rng.choice([0, 1, 1, 1, 2]) if pick < 0.2 else rng.getrandbits(1)).to_bytes(32, "big")
    if abi_type.startswith("uint"):
        bits = int(abi_type[4:])
        width = rng.choice([bits, min(bits, 64), 8, bits + 1 if pick < 0.2 and bits < 256 else bits])
        return rng.getrandbits(width).to_bytes(32, "big")
    bits = int(abi_type[3:])
    width = rng.choice([bits - 1, min(bits - 1, 63), 7, 64, bits if pick < 0.2 else bits - 1])
    value = rng.getrandbits(width) * rng.choice([1, -1])
    value = max(min(value, 2**255 - 1), -(2**255))
    return value.to_bytes(32, "big", signed=True)


def reference(abi_type: str, word: bytes) -> object:
    try:
        return decode_word(abi_type, word)
    except ValueError:
        return ValueError


@pytest.mark.parametrize("abi_type", TYPES)
@pytest.mark.parametrize("seed", range(20))
def test_decode_column_equals_decode_word(abi_type: str, seed: int) -> None:
    rng = random.Random(hash((abi_type, seed)) & 0xFFFF)
    words = [random_word(rng, abi_type) for _ in range(rng.choice([1, 2, 7, 40]))]
    expected = [reference(abi_type, w) for w in words]
    got = decode_column(abi_type, np.frombuffer(b"".join(words), dtype=np.uint8).reshape(-1, 32))
    if ValueError in expected:
        assert got is None
    else:
        assert got == expected
        assert [type(x) for x in got] == [type(x) for x in expected]


def test_invalid_decode_column_unknown_type_is_refused() -> None:
    assert decode_column("string", np.zeros((1, 32), dtype=np.uint8)) is None


def random_logs(rng: random.Random, n: int, bad: float) -> list[LogEntry]:
    tables = {role: [e for e in get_abi(name) if e.get("type") == "event"] for role, name in CONTRACT_NAMES.items()}
    out = []
    for i in range(n):
        role = rng.choice(list(tables))
        abi = rng.choice(tables[role])
        indexed = [x for x in abi["inputs"] if x.get("indexed")]
        plain = [x for x in abi["inputs"] if not x.get("indexed")]
        topics = (event_abi_to_log_topic(abi), *(random_word(rng, x["type"]) if rng.random() < bad
                                                 else decode_ok_word(rng, x["type"]) for x in indexed))
        data = b"".join(random_word(rng, x["type"]) if rng.random() < bad else decode_ok_word(rng, x["type"])
                        for x in plain)
        address = CONTRACTS[role] if rng.random() > bad / 10 else "0x" + "dd" * 20
        if rng.random() < bad / 10:
            data = data[:-1]
        out.append(LogEntry(100 + i // 5, bytes(32), bytes(32), i, address, topics, data))
    return out


def decode_ok_word(rng: random.Random, abi_type: str) -> bytes:
    while True:
        word = random_word(rng, abi_type)
        if reference(abi_type, word) is not ValueError:
            return word


@pytest.mark.parametrize("seed", range(30))
def test_decode_many_equals_decode_log_by_log(seed: int) -> None:
    rng = random.Random(seed)
    decoder = EventDecoder(31337, CONTRACTS)
    logs = random_logs(rng, rng.choice([1, 5, 60, 300]), (0.0, 0.0, 0.005, 0.03)[seed % 4])
    try:
        expected = [decoder.decode(x) for x in logs]
    except InvalidChainValue as exc:
        with pytest.raises(InvalidChainValue) as got:
            decoder.decode_many(logs)
        assert str(got.value) == str(exc)
        return
    assert decoder.decode_many(logs) == expected
