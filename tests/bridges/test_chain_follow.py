"""EventFollower against a real anvil chain: confirmation depth, reorg detection by hash, rewind."""

from __future__ import annotations

import pytest

from bridges.anvil import AnvilChain, rpc_call
from bridges.chain import EventFollower
from bridges.errors import ReorgTooDeep
from tests.bridges.test_chain_support import get_dev_accounts, make_client, running_chains, wait_receipt

# Init code that deploys a runtime emitting LOG1(topic 0xaa) on every call.
EMITTER_INIT = "0x6008600c6000396008600" + "0f3" + "60aa60006000a100"
TOPIC = "0x" + "00" * 31 + "aa"


def deploy_emitter(chain: AnvilChain, sender: str) -> str:
    tx = rpc_call(chain.rpc_url, "eth_sendTransaction", [{"from": sender, "data": EMITTER_INIT}])
    return str(wait_receipt(chain, str(tx))["contractAddress"])


def emit(chain: AnvilChain, sender: str, address: str) -> str:
    tx = str(rpc_call(chain.rpc_url, "eth_sendTransaction", [{"from": sender, "to": address}]))
    wait_receipt(chain, tx)
    return tx


def test_follower_returns_only_confirmed_logs_in_order() -> None:
    with running_chains(31337) as (chain,):
        a = get_dev_accounts(chain)
        emitter = deploy_emitter(chain, a[0])  # block 1
        txs = [emit(chain, a[1], emitter) for _ in range(5)]  # blocks 2..6
        follower = EventFollower(make_client(chain), address=emitter, topics=[TOPIC], confirmations=2,
                                 max_range=3)
        seen = []
        for _ in range(5):
            batch = follower.poll()
            assert batch.rewound_to is None
            seen.extend(batch.logs)
        # head 6, confirmations 2: blocks up to 4 only
        assert [log.block_number for log in seen] == [2, 3, 4]
        assert ["0x" + log.tx_hash.hex() for log in seen] == txs[:3]
        assert follower.last_block is not None and follower.last_block.number == 4
        emit(chain, a[1], emitter)
        emit(chain, a[1], emitter)  # head 8
        batch = follower.poll()
        assert (batch.from_block, batch.to_block) == (5, 6)
        assert ["0x" + log.tx_hash.hex() for log in batch.logs] == txs[3:]


def test_reorg_below_confirmation_depth_rewinds_follower() -> None:
    with running_chains(31337) as (chain,):
        a = get_dev_accounts(chain)
        emitter = deploy_emitter(chain, a[0])
        old = [emit(chain, a[1], emitter) for _ in range(6)]  # blocks 2..7
        follower = EventFollower(make_client(chain), address=emitter, topics=[TOPIC], confirmations=1)
        first = follower.poll()
        assert [log.block_number for log in first.logs] == [2, 3, 4, 5, 6]
        # depth 3 > confirmations 1: blocks 5..7 are replaced; the new fork emits in its first block
        rpc_call(chain.rpc_url, "anvil_reorg", [3, [[{"from": a[2], "to": emitter}, 0]]])
        batch = follower.poll()
        assert batch.rewound_to == 4
        assert (batch.from_block, batch.to_block) == (5, 6)
        assert len(batch.logs) == 1 and batch.logs[0].block_number == 5
        assert "0x" + batch.logs[0].tx_hash.hex() not in old
        canonical = rpc_call(chain.rpc_url, "eth_getBlockByNumber", ["0x6", False])
        assert isinstance(canonical, dict)
        assert follower.last_block is not None and "0x" + follower.last_block.hash.hex() == canonical["hash"]
        assert follower.poll().rewound_to is None


def test_invalid_reorg_deeper_than_history_raises() -> None:
    with running_chains(31337) as (chain,):
        a = get_dev_accounts(chain)
        emitter = deploy_emitter(chain, a[0])
        for _ in range(6):
            emit(chain, a[1], emitter)  # head 7
        follower = EventFollower(make_client(chain), address=emitter, confirmations=0, history=2,
                                 start_block=0)
        follower.poll()
        rpc_call(chain.rpc_url, "anvil_reorg", [4, []])
        with pytest.raises(ReorgTooDeep):
            follower.poll()
