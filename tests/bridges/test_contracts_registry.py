"""MarginStateRegistry on two real anvil chains: threshold-signed states, refusals, Merkle proofs,
group-key rotation, the key-set advance of a reshare (same key, next key-set id) and its step bound,
the retention of epochs (EpochNotRetained), and byte-for-byte parity of the Python codec with the
contract."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from eth_utils import to_checksum_address
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from bridges.anvil import DEV_MNEMONIC, AnvilError, get_anvil_binary, get_free_port, rpc_call
from bridges.artifacts import get_abi
from bridges.deploy import ChainSender, decode_revert, get_dev_key
from bridges.errors import DeploymentError
from bridges.statecodec import (
    FLAG_LIQUIDATABLE,
    MarginLeaf,
    compute_admin_digest,
    compute_leaf_hash,
    compute_state_commitment,
    compute_state_digest,
)
from node.crypto import bls
from tests.bridges.conftest import (
    NETWORK_ID,
    ChainEnv,
    GroupKey,
    get_revert_name,
    make_group_key,
    make_signed_state,
)

ALICE = to_checksum_address("0x" + "a1" * 20)
BOB = to_checksum_address("0x" + "b2" * 20)
CAROL = to_checksum_address("0x" + "c3" * 20)


def make_leaves() -> list[MarginLeaf]:
    return [
        MarginLeaf(ALICE, 1_500_000_000, 900_000_000, 600_000_000, 0, (b"\x01" * 32,)),
        MarginLeaf(BOB, -20_000_000, 300_000_000, 200_000_000, FLAG_LIQUIDATABLE, ()),
        MarginLeaf(CAROL, 7, 0, 0, 0, ()),
    ]


def test_hash_to_g1_on_chain_equals_python(chains: list[ChainEnv]) -> None:
    registry = chains[0].contract("MarginStateRegistry")
    for message in (bytes(32), b"\xff" * 32, bytes(range(32)), os.urandom(32), os.urandom(32)):
        assert registry.functions.hashToG1(message).call() == bls.hash_to_g1_eip2537(message)


def test_digests_and_leaf_hash_match_contract(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[1]
    registry = env.contract("MarginStateRegistry")
    inputs, params, root = os.urandom(32), os.urandom(32), os.urandom(32)
    assert registry.functions.computeStateDigest(3, 2**63, inputs, params, root, 12345).call() == \
        compute_state_digest(NETWORK_ID, 3, 2**63, inputs, params, root, 12345)
    new_key = make_group_key(b"other").eip2537
    assert registry.functions.computeAdminDigest(5, 9, new_key).call() == \
        compute_admin_digest(NETWORK_ID, env.chain_id, env.deployment.registry, 5, 9, new_key)
    assert registry.functions.computeCommitment(77, root).call() == compute_state_commitment(77, root)
    for leaf in [*make_leaves(), MarginLeaf(ALICE, -(2**255), 2**256 - 1, 1, 2**256 - 1, (os.urandom(32),) * 3)]:
        assert registry.functions.hashLeaf(leaf.to_abi_tuple()).call() == compute_leaf_hash(leaf)
    assert registry.functions.networkId().call() == NETWORK_ID
    assert registry.functions.keysetId().call() == group_key.keyset_id
    assert registry.functions.groupPublicKey().call() == group_key.eip2537


def test_threshold_signed_state_accepted_on_both_chains(chains: list[ChainEnv], group_key: GroupKey) -> None:
    # any t of the n shares give the same group signature
    state = make_signed_state(group_key, 1, make_leaves())
    assert make_signed_state(group_key, 1, make_leaves()).signature == state.signature
    other_signers = group_key.sign(compute_state_digest(NETWORK_ID, 1, 1, state.inputs_digest, state.params_hash,
                                                        state.root, 3), signers=[2, 3, 4])
    assert other_signers == state.signature
    for env in chains:
        receipt = env.publish(state)
        registry = env.contract("MarginStateRegistry")
        assert receipt["status"] == 1
        assert registry.functions.latestEpoch().call() == 1
        assert registry.functions.isStateRoot(1, state.root).call()
        assert not registry.functions.isStateRoot(1, os.urandom(32)).call()
        assert registry.functions.isRetained(1).call()
        event = registry.events.StatePublished().process_receipt(receipt)[0]["args"]
        assert (event["epoch"], event["root"], event["leafCount"]) == (1, state.root, 3)


def test_proofs_for_real_leaves_verify(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    state = make_signed_state(group_key, 4, make_leaves())
    env.publish(state)
    registry = env.contract("MarginStateRegistry")
    for leaf in state.leaves:
        args, proof = state.get_leaf_args(leaf.account)
        assert registry.functions.verifyLeaf(4, args, proof).call()
        assert registry.functions.marginOf(leaf.account, 4, args, proof).call() == [leaf.equity, leaf.im, leaf.mm]
        assert registry.functions.isLiquidatable(leaf.account, 4, args, proof).call() == leaf.is_liquidatable()


def test_invalid_proof_for_other_account_or_wrong_leaf(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    state = make_signed_state(group_key, 2, make_leaves())
    env.publish(state)
    registry = env.contract("MarginStateRegistry")
    alice_args, alice_proof = state.get_leaf_args(ALICE)
    bob_args, bob_proof = state.get_leaf_args(BOB)
    # Alice's leaf asked for Bob's account
    with pytest.raises(ContractCustomError) as err:
        registry.functions.marginOf(BOB, 2, alice_args, alice_proof).call()
    assert get_revert_name(err.value) == "AccountMismatch"
    # Bob's proof with Alice's leaf, a tampered leaf, the wrong epoch
    assert not registry.functions.verifyLeaf(2, alice_args, bob_proof).call()
    tampered = (ALICE, alice_args[1] + 1, *alice_args[2:])
    assert not registry.functions.verifyLeaf(2, tampered, alice_proof).call()
    no_flag = (BOB, bob_args[1], bob_args[2], bob_args[3], 0, bob_args[5])
    assert not registry.functions.verifyLeaf(2, no_flag, bob_proof).call()
    with pytest.raises(ContractCustomError) as err:
        registry.functions.isLiquidatable(BOB, 2, no_flag, bob_proof).call()
    assert get_revert_name(err.value) == "InvalidProof"


def assert_publish_refused(env: ChainEnv, args: tuple, error: str) -> None:
    with pytest.raises(DeploymentError, match=error):
        env.sender().transact("MarginStateRegistry", env.deployment.registry, "publishState", *args)


def test_invalid_states_refused(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[1]
    leaves = make_leaves()
    wrong_group = make_group_key(b"not-the-group", keyset_id=group_key.keyset_id)
    assert_publish_refused(env, make_signed_state(wrong_group, 1, leaves).publish_args(), "InvalidSignature")
    good = make_signed_state(group_key, 5, leaves)
    tampered_root = (*good.publish_args()[:4], os.urandom(32), *good.publish_args()[5:])
    assert_publish_refused(env, tampered_root, "InvalidSignature")
    tampered_count = (*good.publish_args()[:5], 4, good.signature)
    assert_publish_refused(env, tampered_count, "InvalidSignature")
    other_network = make_signed_state(group_key, 5, leaves, network_id=NETWORK_ID + 1)
    assert_publish_refused(env, other_network.publish_args(), "InvalidSignature")
    retired_keyset = make_signed_state(group_key, 5, leaves, keyset_id=group_key.keyset_id - 1)
    assert_publish_refused(env, retired_keyset.publish_args(), "WrongKeyset")
    bad_length = (*good.publish_args()[:6], good.signature[:96])
    assert_publish_refused(env, bad_length, "InvalidPointLength")
    not_on_curve = (*good.publish_args()[:6], bytes(16) + b"\x01" * 48 + bytes(16) + b"\x02" * 48)
    assert_publish_refused(env, not_on_curve, "InvalidSignature")
    env.publish(good)
    assert_publish_refused(env, good.publish_args(), "EpochNotIncreasing")  # same epoch again
    assert_publish_refused(env, make_signed_state(group_key, 4, leaves).publish_args(), "EpochNotIncreasing")
    registry = env.contract("MarginStateRegistry")
    assert registry.functions.latestEpoch().call() == 5
    assert registry.functions.isStateRoot(5, good.root).call()


def get_keyset_events(env: ChainEnv, receipt: dict) -> list[dict]:
    registry = env.contract("MarginStateRegistry")
    return [dict(e["args"]) for e in registry.events.GroupKeyRotated().process_receipt(receipt, errors=DISCARD)]


def test_state_under_next_keyset_advances_registry(chains: list[ChainEnv], group_key: GroupKey) -> None:
    """A reshare keeps the group key and increments the key-set id: the registry follows the signed
    state itself (no admin message), then refuses the retired key-set id."""
    env = chains[0]
    registry = env.contract("MarginStateRegistry")
    first = env.publish(make_signed_state(group_key, 1, make_leaves()))
    assert get_keyset_events(env, first) == []
    nxt = group_key.keyset_id + 1
    advanced = make_signed_state(group_key, 2, make_leaves(), keyset_id=nxt)
    receipt = env.publish(advanced)
    assert receipt["status"] == 1
    assert registry.functions.keysetId().call() == nxt
    assert registry.functions.latestEpoch().call() == 2
    assert registry.functions.isStateRoot(2, advanced.root).call()
    assert registry.functions.adminNonce().call() == 0
    assert registry.functions.groupPublicKey().call() == group_key.eip2537
    assert get_keyset_events(env, receipt) == [{"oldKeysetId": group_key.keyset_id, "newKeysetId": nxt, "nonce": 0,
                                                "groupKey": group_key.eip2537}]
    published = registry.events.StatePublished().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (published["epoch"], published["keysetId"]) == (2, nxt)
    # the retired key-set id is refused even for a later epoch and a valid group signature
    assert_publish_refused(env, make_signed_state(group_key, 3, make_leaves()).publish_args(),
                           f"WrongKeyset\\({group_key.keyset_id}, {nxt}\\)")
    # the same key-set id goes on without a new event; a jump of more than one is accepted too
    same = env.publish(make_signed_state(group_key, 3, make_leaves(), keyset_id=nxt))
    assert get_keyset_events(env, same) == []
    env.publish(make_signed_state(group_key, 4, make_leaves(), keyset_id=nxt + 2))
    assert registry.functions.keysetId().call() == nxt + 2
    # the other chain's registry is independent: still at the genesis key-set id
    assert chains[1].contract("MarginStateRegistry").functions.keysetId().call() == group_key.keyset_id


def test_retired_keyset_cannot_exhaust_keyset_id(chains: list[ChainEnv], group_key: GroupKey) -> None:
    """A reshare keeps the group key, so t holders of a RETIRED key set still sign under it. They can no
    longer push `keysetId` to 2^32-1 in one publication (which would make every later `rotateGroupKey`
    fail KeysetNotIncreasing): a publication or rotation moves the id by at most MAX_KEYSET_STEP."""
    env = chains[0]
    registry = env.contract("MarginStateRegistry")
    step = registry.functions.MAX_KEYSET_STEP().call()
    assert step == 16
    current = group_key.keyset_id + 1  # the live set after one reshare
    env.publish(make_signed_state(group_key, 1, make_leaves(), keyset_id=current))
    # t shares of the retired key set (keyset_id 1) combine to the same group signature as the live set's
    for huge in (2**32 - 1, current + step + 1):
        state = make_signed_state(group_key, 2, make_leaves(), keyset_id=huge)
        assert_publish_refused(env, state.publish_args(), f"KeysetStepTooLarge\\({huge}, {current}\\)")
    sender = env.sender()
    for huge in (2**32 - 1, current + step + 1):
        key = make_group_key(b"retired-set-key", keyset_id=huge)
        with pytest.raises(DeploymentError, match=f"KeysetStepTooLarge\\({huge}, {current}\\)"):
            sender.transact("MarginStateRegistry", env.deployment.registry, "rotateGroupKey",
                            *rotate(env, group_key, key, nonce=0))
    assert (registry.functions.keysetId().call(), registry.functions.latestEpoch().call()) == (current, 1)
    # the largest step is accepted, and the honest recovery (a new group key, next id) stays possible
    env.publish(make_signed_state(group_key, 2, make_leaves(), keyset_id=current + step))
    assert registry.functions.keysetId().call() == current + step
    fresh = make_group_key(b"fresh-dkg-key", keyset_id=current + step + 1)
    sender.transact("MarginStateRegistry", env.deployment.registry, "rotateGroupKey",
                    *rotate(env, group_key, fresh, nonce=0))
    assert registry.functions.keysetId().call() == current + step + 1
    assert env.publish(make_signed_state(fresh, 3, make_leaves()))["status"] == 1


def test_invalid_next_keyset_with_bad_signature_does_not_advance(chains: list[ChainEnv],
                                                                  group_key: GroupKey) -> None:
    env = chains[1]
    registry = env.contract("MarginStateRegistry")
    env.publish(make_signed_state(group_key, 1, make_leaves()))
    nxt = group_key.keyset_id + 1
    impostor = make_group_key(b"not-the-group", keyset_id=nxt)
    assert_publish_refused(env, make_signed_state(impostor, 2, make_leaves()).publish_args(), "InvalidSignature")
    # signed by the group key over the OLD key-set id's digest but claiming the next one
    good = make_signed_state(group_key, 2, make_leaves())
    relabelled = (good.epoch, nxt, *good.publish_args()[2:])
    assert_publish_refused(env, relabelled, "InvalidSignature")
    assert registry.functions.keysetId().call() == group_key.keyset_id
    assert registry.functions.latestEpoch().call() == 1
    assert not registry.functions.isStateRoot(2, good.root).call()
    # nothing was advanced: the genesis key-set id still publishes
    assert env.publish(good)["status"] == 1


def test_invalid_replay_after_keyset_advance(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    registry = env.contract("MarginStateRegistry")
    nxt = group_key.keyset_id + 1
    old = make_signed_state(group_key, 4, make_leaves())
    env.publish(old)
    advanced = make_signed_state(group_key, 6, make_leaves(), keyset_id=nxt)
    env.publish(advanced)
    # replays of published states, and an older epoch under the new key-set id, stay refused
    assert_publish_refused(env, advanced.publish_args(), "EpochNotIncreasing")
    assert_publish_refused(env, old.publish_args(), "EpochNotIncreasing")
    assert_publish_refused(env, make_signed_state(group_key, 5, make_leaves(), keyset_id=nxt).publish_args(),
                           "EpochNotIncreasing")
    # a higher key-set id does not bypass the epoch check either
    assert_publish_refused(env, make_signed_state(group_key, 6, make_leaves(), keyset_id=nxt + 1).publish_args(),
                           "EpochNotIncreasing")
    assert registry.functions.keysetId().call() == nxt
    assert registry.functions.latestEpoch().call() == 6


def test_rotation_after_keyset_advance_uses_unchanged_nonce(chains: list[ChainEnv], group_key: GroupKey) -> None:
    """`rotateGroupKey` stays for a real key change: after an advance it needs a still higher key-set id
    and the first admin nonce (the advance consumed none)."""
    env = chains[0]
    nxt = group_key.keyset_id + 1
    env.publish(make_signed_state(group_key, 1, make_leaves(), keyset_id=nxt))
    sender = env.sender()
    stale = make_group_key(b"rotated-group-key", keyset_id=nxt)
    with pytest.raises(DeploymentError, match="KeysetNotIncreasing"):
        sender.transact("MarginStateRegistry", env.deployment.registry, "rotateGroupKey",
                        *rotate(env, group_key, stale, nonce=0))
    new_key = make_group_key(b"rotated-group-key", keyset_id=nxt + 1)
    sender.transact("MarginStateRegistry", env.deployment.registry, "rotateGroupKey",
                    *rotate(env, group_key, new_key, nonce=0))
    registry = env.contract("MarginStateRegistry")
    assert (registry.functions.keysetId().call(), registry.functions.adminNonce().call()) == (nxt + 1, 1)
    # the old group key can no longer advance the key-set id: its signature does not verify
    old_key_later = make_signed_state(group_key, 2, make_leaves(), keyset_id=nxt + 2)
    assert_publish_refused(env, old_key_later.publish_args(), "InvalidSignature")
    assert env.publish(make_signed_state(new_key, 2, make_leaves()))["status"] == 1


def test_ring_keeps_recent_epochs_only(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    registry = env.contract("MarginStateRegistry")
    ring = registry.functions.RING_SIZE().call()
    first = make_signed_state(group_key, 3, make_leaves())
    env.publish(first)
    later = make_signed_state(group_key, 3 + ring, make_leaves()[:1])
    env.publish(later)
    assert registry.functions.isStateRoot(3 + ring, later.root).call()
    assert not registry.functions.isStateRoot(3, first.root).call()  # overwritten slot
    assert not registry.functions.isRetained(3).call()
    args, proof = first.get_leaf_args(ALICE)
    assert get_view_revert(registry.functions.verifyLeaf(3, args, proof)) == "EpochNotRetained(3,)"


def get_view_revert(call: object) -> str:
    """`ErrorName(args)` of a view call that must revert with a registry custom error."""
    with pytest.raises(ContractCustomError) as err:
        call.call()  # type: ignore[attr-defined]
    return decode_revert(get_abi("MarginStateRegistry"), bytes.fromhex(str(err.value.data).removeprefix("0x")))


def get_protocol_view_reverts(registry: object, epoch: int, leaf: tuple, proof: list[bytes]) -> set[str]:
    """The revert of each of the four protocol views for one (epoch, leaf, proof)."""
    fns = registry.functions  # type: ignore[attr-defined]
    account = leaf[0]
    return {get_view_revert(fns.verifyLeaf(epoch, leaf, proof)),
            get_view_revert(fns.marginOf(account, epoch, leaf, proof)),
            get_view_revert(fns.isLiquidatable(account, epoch, leaf, proof)),
            get_view_revert(fns.validateAccountLeaf(account, epoch, leaf, proof))}


def test_invalid_epoch_not_retained_is_named_by_every_protocol_view(chains: list[ChainEnv],
                                                                     group_key: GroupKey) -> None:
    """An epoch that is 0, newer than the latest, never published (also when its ring slot holds an
    older epoch) or whose slot a later epoch took makes verifyLeaf, marginOf, isLiquidatable and
    validateAccountLeaf revert EpochNotRetained(epoch), not InvalidProof; isStateRoot and isRetained
    answer false. An epoch older than the last RING_SIZE stays retained until its slot is reused."""
    env = chains[1]
    registry = env.contract("MarginStateRegistry")
    ring = registry.functions.RING_SIZE().call()
    old = make_signed_state(group_key, 5, make_leaves())
    env.publish(old)
    args, proof = old.get_leaf_args(BOB)
    assert registry.functions.verifyLeaf(5, args, proof).call()
    # 0, newer than the latest, never published below the latest
    for epoch in (0, 6, 4):
        assert get_protocol_view_reverts(registry, epoch, args, proof) == {f"EpochNotRetained({epoch},)"}
        assert not registry.functions.isRetained(epoch).call()
    # a retained epoch with a wrong proof is still InvalidProof (verifyLeaf: false)
    tampered = (BOB, args[1] + 1, *args[2:])
    assert not registry.functions.verifyLeaf(5, tampered, proof).call()
    assert get_view_revert(registry.functions.marginOf(BOB, 5, tampered, proof)) == \
        f"InvalidProof('{BOB.lower()}', 5)"
    # epoch 6 + ring takes slot 6: slot 5 still holds epoch 5 (retained although older than the last
    # RING_SIZE epochs), and epoch 5 + ring, in that window but never published, is not retained
    env.publish(make_signed_state(group_key, 6 + ring, make_leaves()))
    assert registry.functions.verifyLeaf(5, args, proof).call()
    assert registry.functions.isRetained(5).call() and registry.functions.isStateRoot(5, old.root).call()
    assert get_protocol_view_reverts(registry, 5 + ring, args, proof) == {f"EpochNotRetained({5 + ring},)"}
    assert not registry.functions.isRetained(5 + ring).call()
    assert not registry.functions.isStateRoot(5 + ring, old.root).call()
    # epoch 5 + 2 * ring takes slot 5: epoch 5 left the ring
    env.publish(make_signed_state(group_key, 5 + 2 * ring, make_leaves()))
    assert get_protocol_view_reverts(registry, 5, args, proof) == {"EpochNotRetained(5,)"}
    assert not registry.functions.isRetained(5).call() and not registry.functions.isStateRoot(5, old.root).call()


def rotate(env: ChainEnv, current: GroupKey, new: GroupKey, nonce: int) -> tuple:
    digest = compute_admin_digest(NETWORK_ID, env.chain_id, env.deployment.registry, nonce, new.keyset_id,
                                  new.eip2537)
    return (new.keyset_id, new.eip2537, current.sign(digest))


def test_group_key_rotation_and_replay_refused(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env_a, env_b = chains
    new_key = make_group_key(b"rotated-group-key", keyset_id=group_key.keyset_id + 1)
    args = rotate(env_a, group_key, new_key, nonce=0)
    sender = env_a.sender()
    receipt = sender.transact("MarginStateRegistry", env_a.deployment.registry, "rotateGroupKey", *args)
    registry = env_a.contract("MarginStateRegistry")
    assert receipt["status"] == 1
    assert registry.functions.keysetId().call() == new_key.keyset_id
    assert registry.functions.adminNonce().call() == 1
    assert registry.functions.groupPublicKey().call() == new_key.eip2537
    # replaying the same admin message is refused (the keyset no longer increases, the nonce moved)
    with pytest.raises(DeploymentError, match="KeysetNotIncreasing"):
        sender.transact("MarginStateRegistry", env_a.deployment.registry, "rotateGroupKey", *args)
    # the message is bound to chain A's registry: refused on chain B
    with pytest.raises(DeploymentError, match="InvalidSignature"):
        env_b.sender().transact("MarginStateRegistry", env_b.deployment.registry, "rotateGroupKey", *args)
    # the old key no longer publishes, the new one does
    assert_publish_refused(env_a, make_signed_state(group_key, 1, make_leaves()).publish_args(), "WrongKeyset")
    old_key_new_id = make_group_key(b"clearing-tests-group-key", keyset_id=new_key.keyset_id)
    assert_publish_refused(env_a, make_signed_state(old_key_new_id, 1, make_leaves()).publish_args(),
                           "InvalidSignature")
    assert env_a.publish(make_signed_state(new_key, 1, make_leaves()))["status"] == 1


def test_invalid_rotation_refused(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[0]
    new_key = make_group_key(b"rotated-group-key", keyset_id=group_key.keyset_id + 1)
    sender = env.sender()
    # signed by a key that is not the current group key
    impostor = make_group_key(b"impostor", keyset_id=group_key.keyset_id)
    with pytest.raises(DeploymentError, match="InvalidSignature"):
        sender.transact("MarginStateRegistry", env.deployment.registry, "rotateGroupKey",
                        *rotate(env, impostor, new_key, nonce=0))
    # a future nonce is not the current one
    with pytest.raises(DeploymentError, match="InvalidSignature"):
        sender.transact("MarginStateRegistry", env.deployment.registry, "rotateGroupKey",
                        *rotate(env, group_key, new_key, nonce=1))
    # the new key must be a valid G2 point (not infinity, on the curve)
    bad = (new_key.keyset_id, bytes(256), group_key.sign(b"\x00" * 32))
    with pytest.raises(DeploymentError, match="InvalidGroupKey"):
        sender.transact("MarginStateRegistry", env.deployment.registry, "rotateGroupKey", *bad)
    bad_point = (new_key.keyset_id, b"\x01" * 256, group_key.sign(b"\x00" * 32))
    with pytest.raises(DeploymentError, match="InvalidGroupKey"):
        sender.transact("MarginStateRegistry", env.deployment.registry, "rotateGroupKey", *bad_point)
    assert env.contract("MarginStateRegistry").functions.adminNonce().call() == 0


def start_cancun_anvil() -> tuple[subprocess.Popen, str]:
    """An anvil on the Cancun hardfork (no EIP-2537); `AnvilChain` always asks for Prague."""
    port = get_free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(get_anvil_binary()), "--host", "127.0.0.1", "--port", str(port), "--chain-id",
                             "31339", "--hardfork", "cancun", "--silent", "--mnemonic", DEV_MNEMONIC],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            rpc_call(url, "eth_chainId", timeout=1.0)
            return proc, url
        except (OSError, AnvilError):
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("cancun anvil did not start")


def test_invalid_chain_without_bls_precompiles_refuses_registry(group_key: GroupKey) -> None:
    """On a pre-Prague chain the precompile addresses are empty accounts (calls succeed with no output);
    the registry's output-length checks refuse: its constructor cannot validate the group key."""
    proc, url = start_cancun_anvil()
    try:
        sender = ChainSender(url, get_dev_key(0))
        with pytest.raises(DeploymentError, match="InvalidGroupKey"):
            sender.deploy("MarginStateRegistry", NETWORK_ID, group_key.keyset_id, group_key.eip2537)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_proofs_of_a_large_state_verify_on_chain(chains: list[ChainEnv], group_key: GroupKey) -> None:
    env = chains[1]
    leaves = [MarginLeaf(to_checksum_address("0x" + (i + 1).to_bytes(20, "big").hex()), 10**9 - i * 997,
                         i * 1_000, i * 700, i % 2, (i.to_bytes(32, "big"),) * (i % 3)) for i in range(2_000)]
    state = make_signed_state(group_key, 9, leaves)
    env.publish(state)
    registry = env.contract("MarginStateRegistry")
    for i in (0, 1, 2, 777, 1_024, 1_999):
        args, proof = state.get_leaf_args(leaves[i].account)
        assert len(proof) in (10, 11)
        assert registry.functions.marginOf(leaves[i].account, 9, args, proof).call() == \
            [leaves[i].equity, leaves[i].im, leaves[i].mm]
        assert registry.functions.isLiquidatable(leaves[i].account, 9, args, proof).call() == bool(i % 2)
        assert not registry.functions.verifyLeaf(9, args, proof[:-1]).call()
