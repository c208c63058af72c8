// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice One account's entry in a signed margin state, exactly the values the validators hashed into
/// the state's Merkle tree. Amounts are integer micro-USD (1 USD = 1e6): `equity` (collateral value
/// after haircuts plus unrealised P&L, may be negative), `im` and `mm` (initial and maintenance
/// margin, netted across every chain). Free collateral is `equity - im`. `flags` bit 0 = liquidatable
/// (`equity < mm`); the other bits are 0. `approvedWithdrawals` holds withdrawal ids
/// `keccak256(abi.encode(chainId, vault, requestId))` that the validators approved for this account.
/// A protocol gets the leaf and its proof from any validator (gRPC `GetMargin`: `leaf` is
/// `abi.encode` of these six values, `proof` the sibling hashes) and never trusts them: the
/// registry checks them against the signed root (`IMarginRegistry.verifyLeaf`).
struct MarginLeaf {
    address account;
    int256 equity;
    uint256 im;
    uint256 mm;
    uint256 flags;
    bytes32[] approvedWithdrawals;
}

/// @title Leaf hashing and Merkle proofs compatible with OpenZeppelin's StandardMerkleTree.
/// @notice leaf hash = keccak256(bytes.concat(keccak256(abi.encode(account, equity, im, mm, flags,
/// approvedWithdrawals)))); internal nodes hash the sorted pair, so `processProof` gives the same root
/// as OpenZeppelin's `MerkleProof.processProofCalldata(proof, hashLeaf(leaf))`. Written here because no
/// OpenZeppelin package is available offline; the Python twin is `bridges/merkle.py` and
/// `bridges/statecodec.py`. Part of the published interface: a consumer may hash a leaf itself (e.g.
/// to key its own records by leaf), but only the registry knows which roots were signed.
library MarginLeafLib {
    /// @notice `flags` bit set when the account's equity is below its maintenance margin.
    uint256 internal constant FLAG_LIQUIDATABLE = 1;

    /// @notice The StandardMerkleTree leaf hash of `leaf` (double keccak of its ABI encoding).
    function hashLeaf(MarginLeaf calldata leaf) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(
            leaf.account, leaf.equity, leaf.im, leaf.mm, leaf.flags, leaf.approvedWithdrawals
        ))));
    }

    /// @notice True when the leaf's liquidatable flag (bit 0) is set.
    function isLiquidatable(MarginLeaf calldata leaf) internal pure returns (bool) {
        return leaf.flags & FLAG_LIQUIDATABLE != 0;
    }

    /// @notice True when `withdrawalId` is among the leaf's approved withdrawals.
    function approves(MarginLeaf calldata leaf, bytes32 withdrawalId) internal pure returns (bool) {
        bytes32[] calldata ids = leaf.approvedWithdrawals;
        for (uint256 i = 0; i < ids.length; ++i) {
            if (ids[i] == withdrawalId) return true;
        }
        return false;
    }

    /// @notice Root obtained by folding `proof` onto `leafHash` with sorted-pair keccak.
    function processProof(bytes32[] calldata proof, bytes32 leafHash) internal pure returns (bytes32 node) {
        node = leafHash;
        for (uint256 i = 0; i < proof.length; ++i) {
            node = hashPair(node, proof[i]);
        }
    }

    /// @notice keccak256 of the two hashes in ascending order (OpenZeppelin's commutative pair hash).
    function hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32 value) {
        assembly ("memory-safe") {
            switch lt(a, b)
            case 1 {
                mstore(0x00, a)
                mstore(0x20, b)
            }
            default {
                mstore(0x00, b)
                mstore(0x20, a)
            }
            value := keccak256(0x00, 0x40)
        }
    }
}
