"""ChainClient against real anvil chains: pinning, pinned reads, reorg detection, retries, health."""

from __future__ import annotations

import pytest

from bridges.anvil import rpc_call
from bridges.chain import HEALTH_OK, HEALTH_UNAVAILABLE, ChainClient, ChainConfig, Pin
from bridges.errors import ChainIdMismatch, ChainUnavailable, PinNotReady, ReorgDetected, RpcError
from tests.bridges.test_chain_support import (
    get_dev_accounts,
    get_genesis_timestamp,
    make_client,
    mine_at,
    running_chains,
    send_value,
)

ETH = 10**18


def test_pin_block_picks_highest_confirmed_block_before_cutoff() -> None:
    with running_chains(31337) as (chain,):
        g = get_genesis_timestamp(chain)
        for i in range(1, 11):  # blocks 1..10 at g+10*i
            mine_at(chain, g + 10 * i)
        client = make_client(chain)
        pin = client.pin_block(g + 35, lag_s=0, confirmations=2)
        assert (pin.number, pin.timestamp, pin.chain_id) == (3, g + 30, 31337)
        canonical = rpc_call(chain.rpc_url, "eth_getBlockByNumber", ["0x3", False])
        assert isinstance(canonical, dict) and pin.hash_hex == canonical["hash"]
        # the lag moves the cutoff back; an exact timestamp match is included
        assert client.pin_block(g + 50, lag_s=10, confirmations=2).number == 4
        assert client.pin_block(g + 80, lag_s=0, confirmations=1).number == 8  # block 9 confirms it
        # configuration defaults apply when no override is given
        cfg_client = make_client(chain, lag_s=5, confirmations=1)
        assert cfg_client.pin_block(g + 75).number == 7


def test_invalid_pin_when_cutoff_not_yet_followed_by_confirmed_block() -> None:
    with running_chains(31337) as (chain,):
        g = get_genesis_timestamp(chain)
        for i in range(1, 11):
            mine_at(chain, g + 10 * i)
        client = make_client(chain)
        # every confirmed block (<= 8) is before the cutoff: a later block could still qualify
        with pytest.raises(PinNotReady):
            client.pin_block(g + 1000, lag_s=0, confirmations=2)
        for _ in range(3):
            mine_at(chain, g + 2000)
        assert client.pin_block(g + 1000, lag_s=0, confirmations=2).number == 10


def test_invalid_pin_before_genesis_or_shallow_chain() -> None:
    with running_chains(31337) as (chain,):
        g = get_genesis_timestamp(chain)
        client = make_client(chain)
        with pytest.raises(PinNotReady):
            client.pin_block(g + 100, lag_s=0, confirmations=3)  # head 0 < confirmations
        for i in range(1, 5):
            mine_at(chain, g + 10 * i)
        with pytest.raises(PinNotReady):
            client.pin_block(g - 1, lag_s=0, confirmations=1)


def test_read_at_orphaned_pin_raises_reorg_detected() -> None:
    with running_chains(31337) as (chain,):
        client = make_client(chain)
        a = get_dev_accounts(chain)
        send_value(chain, a[0], a[9], ETH)  # block 1
        head = client.get_block("latest")
        pin = Pin(31337, head.number, head.hash, head.timestamp)
        before = client.get_balance(pin, a[9])
        client.validate_pin(pin)
        rpc_call(chain.rpc_url, "anvil_reorg", [1, []])  # block 1 replaced by an empty block
        with pytest.raises(ReorgDetected) as err:
            client.validate_pin(pin)
        assert err.value.number == pin.number and err.value.expected_hash == pin.hash_hex
        with pytest.raises(ReorgDetected):
            client.get_balance(pin, a[9])
        with pytest.raises(ReorgDetected):
            client.call(pin, a[9], b"")
        with pytest.raises(ReorgDetected):
            client.call_many(pin, [(a[9], b"")] * 3)
        new_head = client.get_block("latest")
        after = client.get_balance(Pin(31337, new_head.number, new_head.hash, new_head.timestamp), a[9])
        assert before - after == ETH


def test_reorg_below_confirmation_depth_is_detected_and_read_redone() -> None:
    """A reorg deeper than `confirmations` replaces the pinned block while it is being read."""
    with running_chains(31337) as (chain,):
        g = get_genesis_timestamp(chain)
        client = make_client(chain)
        a = get_dev_accounts(chain)
        mine_at(chain, g + 10)  # block 1
        snapshot = rpc_call(chain.rpc_url, "evm_snapshot")
        rpc_call(chain.rpc_url, "evm_setNextBlockTimestamp", [g + 20])
        send_value(chain, a[0], a[9], 5 * ETH)  # block 2 (pinned fork)
        for i in range(3, 7):
            mine_at(chain, g + 10 * i)
        reads: list[tuple[int, str, int]] = []

        def read(pin: Pin) -> int:
            value = client.get_balance(pin, a[9])
            reads.append((pin.number, pin.hash_hex, value))
            if len(reads) == 1:  # the fork is replaced after the read, before the re-check
                rpc_call(chain.rpc_url, "evm_revert", [snapshot])
                for i in range(2, 8):
                    mine_at(chain, g + 10 * i)
            return value

        pin, value = client.read_at_pin(lambda: client.pin_block(g + 25, lag_s=0, confirmations=2), read)
        assert len(reads) == 2
        assert reads[0][0] == reads[1][0] == pin.number == 2
        assert reads[0][1] != reads[1][1] == pin.hash_hex
        assert reads[0][2] - value == 5 * ETH
        client.validate_pin(pin)


def test_invalid_unreachable_rpc_raises_chain_unavailable_after_bounded_retries() -> None:
    with running_chains(31337) as (chain,):
        sleeps: list[float] = []
        client = ChainClient(ChainConfig(chain_id=31337, rpc_url=chain.rpc_url, timeout_s=1.0, max_attempts=3,
                                         backoff_s=0.05), sleep=sleeps.append)
        assert client.get_head_number() == 0
        assert client.health.state == HEALTH_OK
        chain.stop()
        with pytest.raises(ChainUnavailable) as err:
            client.get_head_number()
        assert err.value.chain_id == 31337
        assert "eth_blockNumber" in err.value.reason
        assert sleeps == [0.05, 0.1]  # max_attempts=3: two backoffs, then give up
        health = client.health
        assert health.state == HEALTH_UNAVAILABLE and health.consecutive_failures == 1
        assert health.last_error is not None and "eth_blockNumber" in health.last_error
        chain.start()  # same port: the client recovers and reports ok
        assert client.get_head_number() == 0
        assert client.health.state == HEALTH_OK


def test_invalid_rpc_error_is_not_retried() -> None:
    with running_chains(31337) as (chain,):
        sleeps: list[float] = []
        client = ChainClient(ChainConfig(chain_id=31337, rpc_url=chain.rpc_url), sleep=sleeps.append)
        with pytest.raises(RpcError) as err:
            client.rpc("eth_noSuchMethod", [])
        assert err.value.method == "eth_noSuchMethod"
        with pytest.raises(RpcError) as err:
            client.rpc_batch([("eth_blockNumber", []), ("eth_noSuchMethod", [])])
        assert err.value.method == "eth_noSuchMethod"
        assert sleeps == []
        assert client.health.state == HEALTH_OK


def test_batch_results_keep_call_order_and_unreachable_batch_is_bounded() -> None:
    with running_chains(31337) as (chain,):
        sleeps: list[float] = []
        client = ChainClient(ChainConfig(chain_id=31337, rpc_url=chain.rpc_url, max_attempts=2, backoff_s=0.01),
                             sleep=sleeps.append)
        a = get_dev_accounts(chain)
        send_value(chain, a[0], a[12], 3 * ETH)
        head = client.get_block("latest")
        pin = Pin(31337, head.number, head.hash, head.timestamp)
        calls = [("eth_getBalance", [a[12 if i % 2 else 13], "latest"]) for i in range(150)]
        with pytest.raises(ValueError, match="calls"):
            client.rpc_batch(calls)
        results = client.rpc_batch(calls[:100])
        assert [int(r, 16) for r in results[:2]] == [client.get_balance(pin, a[13]), client.get_balance(pin, a[12])]
        assert len(set(results)) == 2
        chain.stop()
        with pytest.raises(ChainUnavailable, match="batch of 2"):
            client.rpc_batch(calls[:2])
        assert sleeps == [0.01]


def test_invalid_chain_id_mismatch() -> None:
    with running_chains(31338) as (chain,):
        client = ChainClient(ChainConfig(chain_id=31337, rpc_url=chain.rpc_url))
        with pytest.raises(ChainIdMismatch, match="31338"):
            client.validate_chain_id()
        make_client(chain).validate_chain_id()


def test_invalid_config_values_are_refused() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ChainConfig(chain_id=1, rpc_url="http://127.0.0.1:1", max_attempts=0)
    with pytest.raises(ValueError, match="confirmations"):
        ChainConfig(chain_id=1, rpc_url="http://127.0.0.1:1", confirmations=-1)
    with pytest.raises(ValueError, match="chain_id"):
        ChainConfig(chain_id=0, rpc_url="http://127.0.0.1:1")


def test_client_is_usable_from_worker_threads() -> None:
    """Pinned reads from several threads at once (the node runs them via trio.to_thread)."""
    from concurrent.futures import ThreadPoolExecutor

    with running_chains(31337) as (chain,):
        client = make_client(chain)
        a = get_dev_accounts(chain)
        for i in range(4):
            send_value(chain, a[0], a[10 + i], (i + 1) * ETH)
        head = client.get_block("latest")
        pin = Pin(31337, head.number, head.hash, head.timestamp)
        expected = [client.get_balance(pin, a[10 + i % 4]) for i in range(64)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            got = list(pool.map(lambda i: client.get_balance(pin, a[10 + i % 4]), range(64)))
        assert got == expected
        assert len(set(expected)) == 4
        assert client.health.state == HEALTH_OK
