"""Decoding of the clearing contracts' logs into `bridges.book.Event`s (ABI from the committed artifacts).

`EventDecoder(contracts)` maps each contract address to its role (vault, ledger, oracle) and every event
topic of that contract's ABI to its definition; `decode(log)` returns an `Event` with the arguments by name
(addresses checksummed strings, bytes32 as bytes, integers as ints). A log of an unknown address or topic, or
one that does not decode, raises `InvalidChainValue` naming the chain, block and log index: the book never
skips a log it cannot read. Pure; persists nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_abi import decode as abi_decode
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
        if len(log.topics) != 1 + len(indexed):
            raise InvalidChainValue(f"{where}: {abi['name']} has {len(log.topics) - 1} indexed topics")
        try:
            args: dict[str, Any] = {}
            for spec, topic in zip(indexed, log.topics[1:], strict=True):
                args[spec["name"]] = abi_decode([spec["type"]], topic)[0]
            values = abi_decode([i["type"] for i in plain], log.data)
        except Exception as exc:  # eth_abi raises several decoding error types
            raise InvalidChainValue(f"{where}: {abi['name']} does not decode: {exc}") from exc
        for spec, value in zip(plain, values, strict=True):
            args[spec["name"]] = value
        for spec in inputs:
            if spec["type"] == "address":
                args[spec["name"]] = to_checksum_address(args[spec["name"]])
        return Event(role, abi["name"], args, log.block_number, log.log_index)
