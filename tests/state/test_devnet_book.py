"""The synthetic devnet book (`tests/state/devnet_book.py`, used by the digest determinism test) is the
devnet's: the same seeding code run with real transactions on two anvil chains (`node.devnet.seed.seed_chain`,
then `node.devnet.load.seed_chain_load` for a few load accounts), read back with the chain reader at a pin,
gives the same leaves and root as the synthetic books at the same epoch time, before and after the
demo's crash."""

from __future__ import annotations

import time

from bridges.book_merge import AccountIndex, merge_books
from bridges.book_reader import read_books
from bridges.chain import ChainClient
from node.crypto import bls
from node.devnet import load, seed
from node.pipeline import compute_epoch_state
from node.state import MarginState
from risk.params import RRA1
from tests.bridges.test_chain_support import make_client, pin_all, running_chains
from tests.bridges.test_withdrawal_flow import GROUP_PK
from tests.state.devnet_book import DEVNET_CHAIN_IDS, DEVNET_MAX_QUOTE_AGE_S, build_devnet_books

LOAD_ACCOUNTS = 24


def state_of(books: list, epoch_time: int) -> MarginState:
    inputs = merge_books(books, AccountIndex(), DEVNET_CHAIN_IDS[0], epoch_time, DEVNET_MAX_QUOTE_AGE_S)
    return compute_epoch_state(inputs, RRA1, 7, 1, 3, b"\x55" * 32)


def leaves(state: MarginState) -> dict[str, tuple]:
    return {leaf.account.lower(): leaf.to_abi_tuple()[1:] for leaf in state.leaves}


def test_synthetic_devnet_book_equals_the_seeded_chains() -> None:
    with running_chains(*DEVNET_CHAIN_IDS) as chains:
        market_time = int(time.time())
        seeded = [seed.seed_chain(c, i, 7, 1, bls.g2_to_eip2537(GROUP_PK), market_time) for i, c in enumerate(chains)]
        accounts = load.get_load_addresses(LOAD_ACCOUNTS)
        for i, s in enumerate(seeded):
            load.seed_chain_load(s, accounts, market_time, 100 + i)
        clients: list[ChainClient] = [make_client(c) for c in chains]
        addresses = [{"vault": s.deployment.vault, "ledger": s.deployment.ledger, "oracle": s.deployment.oracle,
                      "USDC": s.deployment.get_token("USDC"), "ETH": s.deployment.get_token("ETH")} for s in seeded]
        for crash in (False, True):
            if crash:
                seed.apply_crash(seeded, market_time)
            epoch_time, pins = pin_all(chains, clients)
            real = state_of(read_books(clients, {s.chain_id: s.deployment for s in seeded}, pins),  # type: ignore[arg-type]
                            epoch_time)
            synthetic = state_of(build_devnet_books(market_time, LOAD_ACCOUNTS, crash, addresses), epoch_time)
            assert real.leaf_count == synthetic.leaf_count == 3 + 1 + LOAD_ACCOUNTS  # demo, house, load
            assert leaves(synthetic) == leaves(real)
            assert synthetic.root == real.root and not real.failures
            fragile = real.leaves[real.get_index(seed.get_demo_accounts()["fragile"])]
            assert (fragile.flags & 1) == crash  # the crash makes the fragile account liquidatable
