// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice One account's entry in a signed margin state. Amounts are integer micro-USD (scale 1e6).
/// `flags` bit 0 = liquidatable. `approvedWithdrawals` holds withdrawal ids
/// `keccak256(abi.encode(chainId, vault, requestId))` that the validators approved for this account.
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
/// approvedWithdrawals)))); internal nodes hash the sorted pair. Written here because no OpenZeppelin
/// package is available offline; the Python twin is `bridges/merkle.py` and `bridges/statecodec.py`.
library MarginLeafLib {
    uint256 internal constant FLAG_LIQUIDATABLE = 1;

    function hashLeaf(MarginLeaf calldata leaf) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(
            leaf.account, leaf.equity, leaf.im, leaf.mm, leaf.flags, leaf.approvedWithdrawals
        ))));
    }

    function isLiquidatable(MarginLeaf calldata leaf) internal pure returns (bool) {
        return leaf.flags & FLAG_LIQUIDATABLE != 0;
    }

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
