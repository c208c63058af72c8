// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice A bytes32 key (underlying, asset symbol) that is not printable ASCII; `field` names the argument.
error InvalidKey(string field, bytes32 key);

/// @title The one check of bytes32 symbol keys shared by the oracle, the vault and the ledger.
/// @notice A valid key is 1..32 printable ASCII bytes (0x21..0x7e: no space, no control byte, nothing
/// above 0x7e), left-aligned and zero-padded on the right, with no zero byte before a non-zero one;
/// exactly what Solidity's `bytes32 x = "BTC"` and `bridges/statecodec.py` `symbol_to_bytes32` produce.
/// Validators decode every key as ASCII, so one malformed key would stop every node reading the book.
/// Callers revert with `InvalidKey(field, key)` when `isValid` is false.
library AsciiKeyLib {
    uint256 private constant HIGH_BITS = 0x8080808080808080808080808080808080808080808080808080808080808080;
    uint256 private constant ONES = 0x0101010101010101010101010101010101010101010101010101010101010101;

    /// @dev Branch-free per-byte test (SWAR). Once every byte is < 0x80, adding a constant below 0x80 to
    /// each byte cannot carry into the next one, so the high bit of each sum byte answers one comparison:
    /// b + 0x7f >= 0x80 <=> b != 0; b + 0x5f >= 0x80 <=> b >= 0x21; b + 0x01 >= 0x80 <=> b >= 0x7f.
    /// The non-zero bytes, widened to 0xff, must then form a prefix: the complement 0..01..1 is 2^k - 1.
    function isValid(bytes32 key) internal pure returns (bool) {
        uint256 word = uint256(key);
        if (word & HIGH_BITS != 0) return false;
        unchecked {
            uint256 nonZero = (word + 0x7f * ONES) & HIGH_BITS;
            uint256 printable = (word + 0x5f * ONES) & ~(word + ONES) & HIGH_BITS;
            if (nonZero == 0 || nonZero & ~printable != 0) return false;
            uint256 tail = ~((nonZero >> 7) * 0xff);
            return tail & (tail + 1) == 0;
        }
    }
}
