"""Decoding of the clearing contracts' logs into `bridges.book.Event`s (ABI from the committed artifacts).

`EventDecoder(contracts)` maps each contract address to its role (vault, ledger, oracle) and every event
topic of that contract's ABI to its definition; `decode(log)` returns an `Event` with the arguments by name
(addresses as lowercase 0x-hex strings, bytes32 as bytes, integers as ints). Every clearing event has static
fields only, so a field is one 32-byte word decoded by slicing, with the ABI's range checks (padding of
addresses and narrow integers, sign extension): a few microseconds per log instead of a generic decoder.
A log of an unknown address or topic, or one that does not decode, raises `InvalidChainValue` naming the
chain, block and log index: the book never skips a log it cannot read. Pure; persists nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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
