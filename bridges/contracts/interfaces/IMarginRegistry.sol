// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MarginLeaf} from "./MarginLeaf.sol";

/// @title The margin-state registry as a protocol sees it (one deployment per chain).
/// @notice The validators of the clearing layer compute every account's cross-chain margin at pinned
/// blocks, threshold-sign the state (BLS12-381, min-sig, group key in G2) and publish it here. The
/// registry keeps, for each of the last RING_SIZE published epochs, a commitment to the state's
/// Merkle root; a protocol proves one account's leaf against it. Leaves and proofs come from any
/// validator's gRPC API (`GetMargin`) and need no trust: only a leaf in a signed, retained state passes.
/// How to verify a state yourself (digest, DST, encodings): docs/integration/verify-margin-state.md.
/// @dev Failure order of the account views (`marginOf`, `isLiquidatable`, `validateAccountLeaf`):
/// AccountMismatch, then EpochNotRetained, then InvalidProof. An epoch is retained when it was
/// published and its ring slot (epoch % RING_SIZE) was not taken by a later epoch: every published
/// epoch among the last RING_SIZE, an older one until its slot is reused. Ask for a recent epoch.
interface IMarginRegistry {
    // ------------------------------------------------------------------ events

    /// @notice A signed state was accepted. `digest` is the signed message (`computeStateDigest`),
    /// `root` the Merkle root of its `leafCount` leaves.
    event StatePublished(uint64 indexed epoch, uint32 indexed keysetId, bytes32 digest, bytes32 root, uint64 leafCount);
    /// @notice The group key or the key-set id changed. Emitted at construction (oldKeysetId 0), by an
    /// admin rotation (`rotateGroupKey`, nonce = the admin nonce used) and by `publishState` when a state
    /// moves the key-set id up under the same key after a reshare (nonce 0, groupKey unchanged).
    event GroupKeyRotated(uint32 indexed oldKeysetId, uint32 indexed newKeysetId, uint64 nonce, bytes groupKey);

    // ------------------------------------------------------------------ errors

    /// @notice publishState: `epoch` is not above the latest published epoch.
    error EpochNotIncreasing(uint64 epoch, uint64 latestEpoch);
    /// @notice publishState: the state is signed under a retired (lower) key-set id.
    error WrongKeyset(uint32 keysetId, uint32 current);
    /// @notice The group signature does not verify over `digest` under the current group key.
    error InvalidSignature(bytes32 digest);
    /// @notice A group key is not a valid EIP-2537 G2 point in the subgroup (`field` names it).
    error InvalidGroupKey(string field);
    /// @notice rotateGroupKey: the new key-set id is not above the current one.
    error KeysetNotIncreasing(uint32 newKeysetId, uint32 current);
    /// @notice The key-set id would move up by more than MAX_KEYSET_STEP.
    error KeysetStepTooLarge(uint32 newKeysetId, uint32 current);
    /// @notice The epoch is 0, newer than the latest published one, was never published, or left the
    /// ring (a later epoch took its slot). Not a bad proof: ask for a more recent epoch.
    error EpochNotRetained(uint64 epoch);
    /// @notice The leaf and proof do not lead to the root published for `epoch`.
    error InvalidProof(address account, uint64 epoch);
    /// @notice The leaf belongs to `leafAccount`, not to the account asked about.
    error AccountMismatch(address account, address leafAccount);

    // ------------------------------------------------------------------ constants and state

    /// @notice Domain tag of state digests: "CLEARING-V1-STATE" right-padded with zeros to 32 bytes.
    function DST_STATE() external view returns (bytes32);
    /// @notice Domain tag of admin digests: "CLEARING-V1-ADMIN-ROTATE-KEY" right-padded to 32 bytes.
    function DST_ADMIN() external view returns (bytes32);
    /// @notice How many of the latest epochs are retained at least (128).
    function RING_SIZE() external view returns (uint256);
    /// @notice Largest increase of the key-set id one publishState or rotateGroupKey accepts (16).
    function MAX_KEYSET_STEP() external view returns (uint32);
    /// @notice The clearing network this registry belongs to (part of every signed digest).
    function networkId() external view returns (uint64);
    /// @notice The key-set id of the current group key; states under a lower id are refused.
    function keysetId() external view returns (uint32);
    /// @notice The newest published epoch (0 before the first state).
    function latestEpoch() external view returns (uint64);
    /// @notice The nonce the next admin key rotation must sign.
    function adminNonce() external view returns (uint64);
    /// @notice The current group public key, EIP-2537 G2 encoding (256 bytes).
    function groupPublicKey() external view returns (bytes memory);

    // ------------------------------------------------------------------ publishing (validators)

    /// @notice Accept a state signed by the group key: epoch above `latestEpoch`, key-set id not lower
    /// than `keysetId` (and at most MAX_KEYSET_STEP higher), `signature` the EIP-2537 G1 encoding (128
    /// bytes) of the BLS signature over `computeStateDigest(...)`. Anyone may submit it.
    function publishState(
        uint64 epoch,
        uint32 stateKeysetId,
        bytes32 inputsDigest,
        bytes32 paramsHash,
        bytes32 root,
        uint64 leafCount,
        bytes calldata signature
    ) external;

    /// @notice Replace the group key (after a failed reshare): `signature` by the CURRENT key over
    /// `computeAdminDigest(adminNonce(), newKeysetId, newKey)`; `newKey` EIP-2537 G2 (256 bytes).
    function rotateGroupKey(uint32 newKeysetId, bytes calldata newKey, bytes calldata signature) external;

    // ------------------------------------------------------------------ digests

    /// @notice The message the validators sign: keccak256(abi.encodePacked(DST_STATE, uint64 networkId,
    /// uint32 stateKeysetId, uint64 epoch, inputsDigest, paramsHash, root, uint64 leafCount)).
    function computeStateDigest(
        uint32 stateKeysetId,
        uint64 epoch,
        bytes32 inputsDigest,
        bytes32 paramsHash,
        bytes32 root,
        uint64 leafCount
    ) external view returns (bytes32);

    /// @notice The admin rotation message: keccak256(abi.encodePacked(DST_ADMIN, uint64 networkId,
    /// uint256 block.chainid, address(this), uint64 nonce, uint32 newKeysetId, bytes newKey)).
    function computeAdminDigest(uint64 nonce, uint32 newKeysetId, bytes calldata newKey)
        external
        view
        returns (bytes32);

    /// @notice keccak256(abi.encode(epoch, root)); the ring keeps its low 192 bits under the epoch.
    function computeCommitment(uint64 epoch, bytes32 root) external pure returns (bytes32);

    /// @notice H(message) in G1 (RFC 9380 hash_to_curve, suite BLS12381G1_XMD:SHA-256_SSWU_RO_ with
    /// the project's DST), EIP-2537 G1 encoding (128 bytes): what the signature is checked against.
    function hashToG1(bytes32 message) external view returns (bytes memory);

    /// @notice The Merkle leaf hash of `leaf` (see MarginLeafLib.hashLeaf).
    function hashLeaf(MarginLeaf calldata leaf) external pure returns (bytes32);

    // ------------------------------------------------------------------ protocol views

    /// @notice True when `root` is the published root of `epoch` and the epoch is still retained.
    function isStateRoot(uint64 epoch, bytes32 root) external view returns (bool);

    /// @notice True when the state of `epoch` was published and its ring slot still holds it.
    function isRetained(uint64 epoch) external view returns (bool);

    /// @notice Whether `leaf` with `proof` is in the published state of `epoch`. Reverts
    /// EpochNotRetained(epoch) when that state is not retained; false means a wrong leaf or proof.
    function verifyLeaf(uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (bool);

    /// @notice The margin of `account` in the state of `epoch`: equity, initial and maintenance margin in
    /// micro-USD. Reverts AccountMismatch, EpochNotRetained or InvalidProof unless the leaf is proven.
    function marginOf(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (int256 equity, uint256 im, uint256 mm);

    /// @notice Whether `account` is liquidatable (equity below maintenance margin) in the state of
    /// `epoch`. Reverts AccountMismatch, EpochNotRetained or InvalidProof unless the leaf is proven.
    function isLiquidatable(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (bool);

    /// @notice Reverts unless `leaf` belongs to `account` and is in the published state of `epoch`:
    /// AccountMismatch, then EpochNotRetained(epoch), then InvalidProof(account, epoch).
    function validateAccountLeaf(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
        view;
}
