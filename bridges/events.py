"""Decoding of the clearing contracts' logs into `bridges.book.Event`s (ABI from the committed artifacts).

`EventDecoder(contracts)` maps each contract address to its role (vault, ledger, oracle) and every event
topic of that contract's ABI to its definition; `decode(log)` returns an `Event` with the arguments by name
(addresses as lowercase 0x-hex strings, bytes32 as bytes, integers as ints). Every clearing event has static
fields only, so a field is one 32-byte word decoded by slicing, with the ABI's range checks (padding of
addresses and narrow integers, sign extension): a few microseconds per log instead of a generic decoder.
A log of an unknown address or topic, or one that does not decode, raises `InvalidChainValue` naming the
chain, block and log index: the book never skips a log it cannot read.

`decode_many(logs)` gives the same events as `decode` on each log, in order, but decodes the logs of each
event type together: their data and topic words are joined into one (logs, fields, 32) byte array and each
field is checked and converted as a column with numpy (`decode_column`); a value outside what the column
path converts (an integer wider than 64 bits) is converted by `decode_word`. Any log the column path would
refuse (unknown address or topic, wrong lengths, a range check) sends the whole batch through `decode`, so
the error is the one `decode` raises for the first such log. Pure; persists nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from eth_utils import event_abi_to_log_topic, to_checksum_address

from bridges.artifacts import get_abi
from bridges.book import Event
from bridges.chain import LogEntry
from bridges.errors import InvalidChainValue

CONTRACT_NAMES = {"vault": "CollateralVault", "ledger": "PositionLedger", "oracle": "MarketOracle"}


def _event_table(contract: str) -> dict[bytes, dict[str, Any]]:
    return {event_abi_to_log_topic(e): e for e in get_abi(contract) if e.get("type") == "event"}  # type: ignore[arg-type]


class EventDecoder:
    def __init__(self, chain_id: int, contracts: Mapping[str, str]) -> None:
        self.chain_id = chain_id
        self.role_of = {contracts[role].lower(): role for role in CONTRACT_NAMES}
        self.tables = {role: _event_table(name) for role, name in CONTRACT_NAMES.items()}

    @property
    def addresses(self) -> list[str]:
        return [to_checksum_address(a) for a in self.role_of]

    def decode(self, log: LogEntry) -> Event:
        where = f"chain {self.chain_id} log {log.block_number}:{log.log_index}"
        role = self.role_of.get(log.address.lower())
        if role is None:
            raise InvalidChainValue(f"{where}: address {log.address} is not a clearing contract")
        if not log.topics:
            raise InvalidChainValue(f"{where}: anonymous log")
        abi = self.tables[role].get(log.topics[0])
        if abi is None:
            raise InvalidChainValue(f"{where}: unknown event topic {log.topics[0].hex()} of {role}")
        inputs: Sequence[dict[str, Any]] = abi["inputs"]
        indexed = [i for i in inputs if i.get("indexed")]
        plain = [i for i in inputs if not i.get("indexed")]
        if len(log.topics) != 1 + len(indexed) or len(log.data) != 32 * len(plain):
            raise InvalidChainValue(f"{where}: {abi['name']} has {len(log.topics) - 1} topics and "
                                    f"{len(log.data)} data bytes")
        args: dict[str, Any] = {}
        try:
            for spec, topic in zip(indexed, log.topics[1:], strict=True):
                args[spec["name"]] = decode_word(spec["type"], topic)
            for k, spec in enumerate(plain):
                args[spec["name"]] = decode_word(spec["type"], log.data[32 * k:32 * k + 32])
        except ValueError as exc:
            raise InvalidChainValue(f"{where}: {abi['name']}: {exc}") from exc
        return Event(role, abi["name"], args, log.block_number, log.log_index)

    def decode_many(self, logs: Sequence[LogEntry]) -> list[Event]:
        """`[decode(x) for x in logs]`, decoded per event type as columns (see the module docstring)."""
        groups: dict[tuple[str, bytes], list[int]] = {}
        role_of = self.role_of
        for i, entry in enumerate(logs):
            role = role_of.get(entry.address.lower())
            if role is None or not entry.topics:
                return [self.decode(x) for x in logs]
            groups.setdefault((role, entry.topics[0]), []).append(i)
        out: list[Event | None] = [None] * len(logs)
        for (role, topic), members in groups.items():
            abi = self.tables[role].get(topic)
            if abi is None:
                return [self.decode(x) for x in logs]
            events = _decode_group(role, abi, [logs[i] for i in members])
            if events is None:
                return [self.decode(x) for x in logs]
            for i, event in zip(members, events, strict=True):
                out[i] = event
        return out  # type: ignore[return-value]


def _decode_group(role: str, abi: Mapping[str, Any], logs: Sequence[LogEntry]) -> list[Event] | None:
    """Events of one type decoded as columns, or None when a log would be refused (see `decode_many`)."""
    inputs: Sequence[dict[str, Any]] = abi["inputs"]
    indexed = [i for i in inputs if i.get("indexed")]
    plain = [i for i in inputs if not i.get("indexed")]
    n_topics, n_data = 1 + len(indexed), 32 * len(plain)
    if any(len(x.topics) != n_topics or len(x.data) != n_data for x in logs):
        return None
    n = len(logs)
    topic_words = np.frombuffer(b"".join(t for x in logs for t in x.topics[1:]), dtype=np.uint8) \
        .reshape(n, len(indexed), 32)
    data_words = np.frombuffer(b"".join(x.data for x in logs), dtype=np.uint8).reshape(n, len(plain), 32)
    names: list[str] = []
    columns: list[list[Any]] = []
    for words, specs in ((topic_words, indexed), (data_words, plain)):
        for k, spec in enumerate(specs):
            column = decode_column(spec["type"], words[:, k, :])
            if column is None:
                return None
            names.append(spec["name"])
            columns.append(column)
    name = abi["name"]
    return [Event(role, name, dict(zip(names, values, strict=True)), x.block_number, x.log_index)
            for x, values in zip(logs, zip(*columns, strict=True) if columns else [()] * n, strict=True)]


def decode_column(abi_type: str, words: np.ndarray) -> list[Any] | None:
    """`[decode_word(abi_type, w) for w in words]` for an (n, 32) uint8 array, or None where `decode_word`
    would raise for some word (the caller then decodes log by log to name it)."""
    n = len(words)
    if abi_type == "address":
        if words[:, :12].any():
            return None
        text = np.ascontiguousarray(words[:, 12:]).tobytes().hex()
        return ["0x" + text[40 * i:40 * i + 40] for i in range(n)]
    if abi_type == "bytes32":
        raw = np.ascontiguousarray(words).tobytes()
        return [raw[32 * i:32 * i + 32] for i in range(n)]
    if abi_type == "bool":
        if words[:, :31].any() or (words[:, 31] > 1).any():
            return None
        return (words[:, 31] == 1).tolist()
    low = np.ascontiguousarray(words[:, 24:]).view(">u8").ravel()
    head = words[:, :24]
    if abi_type.startswith("uint"):
        bits = int(abi_type[4:] or 256)
        small = ~head.any(axis=1)
        if bits < 64 and (~small | (low >> np.uint64(bits)).astype(bool)).any():
            return None
        if bits <= 64 and not small.all():
            return None
        return _with_wide(abi_type, words, low.tolist(), np.asarray(small))
    if abi_type.startswith("int"):
        bits = int(abi_type[3:] or 256)
        signed = low.view(">i8")
        fits = np.where(signed < 0, (head == 0xFF).all(axis=1), ~head.any(axis=1))
        if bits <= 64:
            if not fits.all():
                return None
            if bits < 64 and ((signed >= 1 << (bits - 1)) | (signed < -(1 << (bits - 1)))).any():
                return None
        return _with_wide(abi_type, words, signed.tolist(), fits)
    return None


def _with_wide(abi_type: str, words: np.ndarray, values: list[Any], narrow: np.ndarray) -> list[Any] | None:
    """`values` with the rows that are not `narrow` (wider than 64 bits) decoded as exact Python ints, or
    None when one of them is out of the type's range."""
    try:
        for i in np.flatnonzero(~narrow).tolist():
            values[i] = decode_word(abi_type, bytes(words[i]))
    except ValueError:
        return None
    return values


def decode_word(abi_type: str, word: bytes) -> Any:
    """One static ABI value from its 32-byte word, range-checked like the ABI decoder."""
    if abi_type == "address":
        if any(word[:12]):
            raise ValueError("address with non-zero padding")
        return "0x" + word[12:].hex()
    if abi_type == "bytes32":
        return bytes(word)
    if abi_type == "bool":
        if any(word[:31]) or word[31] > 1:
            raise ValueError("bool out of range")
        return word[31] == 1
    if abi_type.startswith("uint"):
        value = int.from_bytes(word, "big")
        bits = int(abi_type[4:] or 256)
        if value >> bits:
            raise ValueError(f"{abi_type} out of range")
        return value
    if abi_type.startswith("int"):
        value = int.from_bytes(word, "big", signed=True)
        bits = int(abi_type[3:] or 256)
        if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise ValueError(f"{abi_type} out of range")
        return value
    raise ValueError(f"unsupported event field type {abi_type}")
