// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {BLS12381} from "./BLS12381.sol";
import {IMarginRegistry} from "./interfaces/IMarginRegistry.sol";
import {MarginLeaf, MarginLeafLib} from "./interfaces/MarginLeaf.sol";

/// @title Registry of threshold-signed margin states.
/// @notice Accepts a state (epoch, key-set id, inputs digest, parameters hash, Merkle root, leaf count)
/// signed by the validators' group key (BLS12-381 min-sig, key in G2), refuses epochs that do not
/// increase and retired (lower) key-set ids, and answers per-account Merkle proofs for protocols.
/// @dev Gas: the last RING_SIZE states are kept in a ring whose slots are pre-filled at construction, so
/// publishing rewrites slots instead of creating them. A slot holds the epoch (top 64 bits) and the low
/// 192 bits of the commitment keccak256(abi.encode(epoch, root)) (`computeCommitment`): one word tells
/// which epoch the slot holds, so an epoch that was skipped, overwritten or never published is told
/// apart from a wrong proof (EpochNotRetained) at no extra write. The group key (256 bytes) lives in
/// the code of a small data contract (one EXTCODECOPY instead of eight cold SLOADs); its address, the
/// key-set id and the latest epoch share one storage slot.
/// Measured (bench/gas_report.py): publishState ~161.9k gas (+0.1k for the slot packing); verifyLeaf
/// ~7.1k execution gas for a 10-hash proof. The publish floor is fixed by the protocol: 21000 intrinsic + ~3.9k calldata + ~115.4k precompiles (pairing 102.9k, two MAP_FP_TO_G1 11k, SHA-256,
/// MODEXP, G1ADD) + 10k for the two slot rewrites (latest epoch, ring entry) = ~150.3k before any logic,
/// so the 150k target is not reachable with on-chain hash-to-curve and a stored root per epoch.
/// Key sets: a state signed under a LOWER key-set id than the current one is refused (WrongKeyset: its
/// signers' key set was retired). A state under a HIGHER key-set id is accepted when the group
/// signature verifies under the unchanged group key (a reshare keeps the group key and increments the
/// key-set id) and the id moves up by at most MAX_KEYSET_STEP, and advances `keysetId` to it, emitting
/// GroupKeyRotated(old, new, nonce 0, same key): nonce 0 because no admin message was consumed
/// (`adminNonce` is unchanged); such an event is told from an admin rotation by its key being equal to
/// the previous one. Measured: ~167.4k gas, +5.5k over a normal publish (one more write of the packed
/// slot; mostly the event carrying the 256-byte key).
/// Why the step bound (MAX_KEYSET_STEP, also on `rotateGroupKey`): a reshare keeps the group key, so the
/// holders of a RETIRED key set still hold shares of the same group secret; t of them sign anything the
/// current set can. Without a bound they could publish one state under key-set id 2^32-1, after which
/// no id is higher and `rotateGroupKey` (the recovery to a fresh key) is impossible forever. With the
/// bound, each accepted state or rotation moves the id by at most 16, so exhausting it takes more than
/// 2^28 transactions (each ~167k gas, each with a higher epoch). The bound does NOT make a retired set
/// harmless: t retired shares reconstruct the group secret, so they can still publish forged states,
/// push `latestEpoch` towards its maximum, and rotate the group key themselves. The reshare is only as
/// safe as the erasure of retired shares: every holder of a retired key set must delete its share once
/// the new key set is active (the node does it; operators must also delete backups).
/// Group-key rotation (a NEW group key, after a failed reshare) needs an admin message signed by the
/// CURRENT key, bound to this chain, this contract and a nonce that is incremented on use.
/// Protocol views: `verifyLeaf`, `marginOf`, `isLiquidatable` and `validateAccountLeaf` revert
/// EpochNotRetained(epoch) for an epoch that is not retained (0, newer than `latestEpoch`, never
/// published, or whose ring slot a later epoch took: every published epoch of the last RING_SIZE is
/// retained, an older one until its slot is reused) and only then judge the proof; `isStateRoot` and
/// `isRetained` answer false instead.
/// Implements `interfaces/IMarginRegistry.sol` (events, errors and NatSpec of the public surface are there).
contract MarginStateRegistry is IMarginRegistry {
    using MarginLeafLib for MarginLeaf;

    /// @notice Domain tag of state digests (must match bridges/statecodec.py DST_STATE).
    bytes32 public constant DST_STATE = "CLEARING-V1-STATE";
    /// @notice Domain tag of admin digests (must match bridges/statecodec.py DST_ADMIN).
    bytes32 public constant DST_ADMIN = "CLEARING-V1-ADMIN-ROTATE-KEY";
    uint256 public constant RING_SIZE = 128;
    /// @notice Largest increase of the key-set id accepted by one publishState or rotateGroupKey.
    uint32 public constant MAX_KEYSET_STEP = 16;
    /// @dev Holds epoch 0, which is never published: an empty slot retains no epoch.
    bytes32 private constant EMPTY_SLOT = bytes32(uint256(1));
    uint256 private constant COMMITMENT_MASK = (uint256(1) << 192) - 1;

    uint64 public immutable networkId;

    /// @dev One slot: data contract holding the group key, key-set id, latest published epoch.
    address private groupKeyPointer;
    uint32 public keysetId;
    uint64 public latestEpoch;

    uint64 public adminNonce;
    bytes32[RING_SIZE] private stateCommitments;

    // events and errors: IMarginRegistry

    constructor(uint64 networkId_, uint32 keysetId_, bytes memory groupKey) {
        if (!BLS12381.isValidG2(groupKey)) revert InvalidGroupKey("groupKey");
        networkId = networkId_;
        keysetId = keysetId_;
        groupKeyPointer = writeKey(groupKey);
        for (uint256 i = 0; i < RING_SIZE; ++i) {
            stateCommitments[i] = EMPTY_SLOT;
        }
        emit GroupKeyRotated(0, keysetId_, 0, groupKey);
    }

    // ---------------------------------------------------------------- publishing

    function publishState(
        uint64 epoch,
        uint32 stateKeysetId,
        bytes32 inputsDigest,
        bytes32 paramsHash,
        bytes32 root,
        uint64 leafCount,
        bytes calldata signature
    ) external {
        uint64 latest = latestEpoch;
        if (epoch <= latest) revert EpochNotIncreasing(epoch, latest);
        uint32 current = keysetId;
        if (stateKeysetId != current) {
            if (stateKeysetId < current) revert WrongKeyset(stateKeysetId, current);
            if (stateKeysetId - current > MAX_KEYSET_STEP) revert KeysetStepTooLarge(stateKeysetId, current);
            // written before the check below on purpose (the normal path keeps one comparison): an
            // invalid signature reverts the whole call, this write and its event included
            advanceKeyset(current, stateKeysetId);
        }
        bytes32 digest = computeStateDigest(stateKeysetId, epoch, inputsDigest, paramsHash, root, leafCount);
        if (!BLS12381.verify(groupPublicKey(), digest, signature)) revert InvalidSignature(digest);
        latestEpoch = epoch;
        stateCommitments[epoch % RING_SIZE] = computeSlot(epoch, root);
        emit StatePublished(epoch, stateKeysetId, digest, root, leafCount);
    }

    function rotateGroupKey(uint32 newKeysetId, bytes calldata newKey, bytes calldata signature) external {
        uint32 current = keysetId;
        if (newKeysetId <= current) revert KeysetNotIncreasing(newKeysetId, current);
        if (newKeysetId - current > MAX_KEYSET_STEP) revert KeysetStepTooLarge(newKeysetId, current);
        if (!BLS12381.isValidG2(newKey)) revert InvalidGroupKey("newKey");
        uint64 nonce = adminNonce;
        bytes32 digest = computeAdminDigest(nonce, newKeysetId, newKey);
        if (!BLS12381.verify(groupPublicKey(), digest, signature)) revert InvalidSignature(digest);
        adminNonce = nonce + 1;
        keysetId = newKeysetId;
        groupKeyPointer = writeKey(newKey);
        emit GroupKeyRotated(current, newKeysetId, nonce, newKey);
    }

    // ---------------------------------------------------------------- digests

    function computeStateDigest(
        uint32 stateKeysetId,
        uint64 epoch,
        bytes32 inputsDigest,
        bytes32 paramsHash,
        bytes32 root,
        uint64 leafCount
    ) public view returns (bytes32) {
        return keccak256(abi.encodePacked(
            DST_STATE, networkId, stateKeysetId, epoch, inputsDigest, paramsHash, root, leafCount
        ));
    }

    function computeAdminDigest(uint64 nonce, uint32 newKeysetId, bytes calldata newKey)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encodePacked(
            DST_ADMIN, networkId, block.chainid, address(this), nonce, newKeysetId, newKey
        ));
    }

    function computeCommitment(uint64 epoch, bytes32 root) public pure returns (bytes32) {
        return keccak256(abi.encode(epoch, root));
    }

    function hashToG1(bytes32 message) external view returns (bytes memory) {
        return BLS12381.hashToG1(message);
    }

    function hashLeaf(MarginLeaf calldata leaf) external pure returns (bytes32) {
        return leaf.hashLeaf();
    }

    // ---------------------------------------------------------------- protocol views

    function groupPublicKey() public view returns (bytes memory key) {
        address pointer = groupKeyPointer;
        key = new bytes(BLS12381.G2_POINT_BYTES);
        assembly ("memory-safe") {
            extcodecopy(pointer, add(key, 0x20), 1, 256)
        }
    }

    /// @notice True when `root` is the published root of `epoch` and the epoch is still retained.
    function isStateRoot(uint64 epoch, bytes32 root) public view returns (bool) {
        return epoch != 0 && stateCommitments[epoch % RING_SIZE] == computeSlot(epoch, root);
    }

    /// @notice True when the state of `epoch` was published and its ring slot still holds it: every one
    /// of the last RING_SIZE epochs that was published, and an older one until a later epoch takes
    /// its slot.
    function isRetained(uint64 epoch) public view returns (bool) {
        return epoch != 0 && uint256(stateCommitments[epoch % RING_SIZE]) >> 192 == epoch;
    }

    /// @notice Whether `leaf` with `proof` is in the published state of `epoch`; reverts
    /// EpochNotRetained(epoch) when that state is not retained (see `isRetained`).
    function verifyLeaf(uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        public
        view
        returns (bool)
    {
        bytes32 slot = stateCommitments[epoch % RING_SIZE];
        if (epoch == 0 || uint256(slot) >> 192 != epoch) revert EpochNotRetained(epoch);
        return slot == computeSlot(epoch, MarginLeafLib.processProof(proof, leaf.hashLeaf()));
    }

    function marginOf(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (int256 equity, uint256 im, uint256 mm)
    {
        validateAccountLeaf(account, epoch, leaf, proof);
        return (leaf.equity, leaf.im, leaf.mm);
    }

    function isLiquidatable(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        validateAccountLeaf(account, epoch, leaf, proof);
        return leaf.isLiquidatable();
    }

    /// @notice Reverts unless `leaf` belongs to `account` and is in the published state of `epoch`:
    /// AccountMismatch, then EpochNotRetained(epoch), then InvalidProof(account, epoch).
    function validateAccountLeaf(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        public
        view
    {
        if (leaf.account != account) revert AccountMismatch(account, leaf.account);
        if (!verifyLeaf(epoch, leaf, proof)) revert InvalidProof(account, epoch);
    }

    // ---------------------------------------------------------------- internals

    /// @dev A ring slot: the epoch in the top 64 bits, the low 192 bits of the commitment below.
    function computeSlot(uint64 epoch, bytes32 root) private pure returns (bytes32) {
        return bytes32((uint256(epoch) << 192) | (uint256(computeCommitment(epoch, root)) & COMMITMENT_MASK));
    }

    /// @dev A reshare: same group key, higher key-set id; the caller verifies the group signature.
    function advanceKeyset(uint32 current, uint32 next) private {
        keysetId = next;
        emit GroupKeyRotated(current, next, 0, groupPublicKey());
    }

    /// @dev Deploys a data contract whose code is 0x00 || key (SSTORE2 pattern).
    function writeKey(bytes memory key) private returns (address pointer) {
        bytes memory creation = abi.encodePacked(hex"61", uint16(key.length + 1), hex"80600a3d393df300", key);
        assembly ("memory-safe") {
            pointer := create(0, add(creation, 0x20), mload(creation))
        }
        if (pointer == address(0)) revert InvalidGroupKey("pointer");
    }
}
