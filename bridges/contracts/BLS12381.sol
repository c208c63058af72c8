// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title BLS12-381 min-sig verification through the EIP-2537 precompiles (Prague).
/// @notice Signatures are G1 points and public keys G2 points, both in the EIP-2537 encoding
/// (64-byte field elements, 16 zero bytes + 48 big-endian bytes; G2 is x.c0 || x.c1 || y.c0 || y.c1).
/// Messages (32-byte digests) are hashed to G1 on-chain per RFC 9380 with the project tag
/// `CLEARING-V1-BLS-SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_`: expand_message_xmd with SHA-256 to 128
/// bytes, two 64-byte halves reduced mod p through MODEXP, MAP_FP_TO_G1 on each, G1ADD. The map
/// precompile clears the cofactor, which is linear, so the sum equals hash_to_curve. The readable
/// Python reference of every step is `node/crypto/bls.py` (`expand_message_xmd`, `hash_to_field`).
/// @dev The hot path is assembly over one scratch area past the free-memory pointer (publishing must
/// stay near 150k gas). Every precompile result is checked for success AND output length: on a chain
/// without EIP-2537 a call to the empty address succeeds with no output.
library BLS12381 {
    uint256 internal constant G1_POINT_BYTES = 128;
    uint256 internal constant G2_POINT_BYTES = 256;

    // I2OSP(128, 2) || I2OSP(0, 1) || DST_prime, where DST_prime = DST || I2OSP(55, 1); 59 bytes.
    uint256 private constant XMD_TAIL_0 = 0x008000434c454152494e472d56312d424c532d5349475f424c53313233383147;
    uint256 private constant XMD_TAIL_1 = 0x315f584d443a5348412d3235365f535357555f524f5f4e554c5f370000000000;
    // 0x00 (slot for I2OSP(i, 1)) || DST_prime; 57 bytes.
    uint256 private constant XMD_ROUND_0 = 0x00434c454152494e472d56312d424c532d5349475f424c53313233383147315f;
    uint256 private constant XMD_ROUND_1 = 0x584d443a5348412d3235365f535357555f524f5f4e554c5f3700000000000000;
    // Base field modulus p (48 bytes): first 32 bytes, last 16 bytes.
    uint256 private constant P_HIGH = 0x1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f624;
    uint256 private constant P_LOW = 0x1eabfffeb153ffffb9feffffffffaaab;
    // -G2 generator, EIP-2537 encoding, as eight words.
    uint256 private constant NEG_G2_0 = 0x00000000000000000000000000000000024aa2b2f08f0a91260805272dc51051;
    uint256 private constant NEG_G2_1 = 0xc6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8;
    uint256 private constant NEG_G2_2 = 0x0000000000000000000000000000000013e02b6052719f607dacd3a088274f65;
    uint256 private constant NEG_G2_3 = 0x596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e;
    uint256 private constant NEG_G2_4 = 0x000000000000000000000000000000000d1b3cc2c7027888be51d9ef691d77bc;
    uint256 private constant NEG_G2_5 = 0xb679afda66c73f17f9ee3837a55024f78c71363275a75d75d86bab79f74782aa;
    uint256 private constant NEG_G2_6 = 0x0000000000000000000000000000000013fa4d4a0ad8b1ce186ed5061789213d;
    uint256 private constant NEG_G2_7 = 0x993923066dddaf1040bc3ff59f825c78df74f2d75467e25e0f55f8a00fa030ed;

    error PrecompileFailed(string step);
    error InvalidPointLength(string field, uint256 length);

    /// @notice hash_to_curve(message) on G1 with the project tag; 128-byte EIP-2537 point.
    function hashToG1(bytes32 message) internal view returns (bytes memory point) {
        point = new bytes(G1_POINT_BYTES);
        uint256 out;
        assembly ("memory-safe") {
            out := add(point, 0x20)
        }
        writeHashToG1(message, out);
    }

    /// @notice e(signature, -G2) * e(H(message), publicKey) == 1. Malformed or out-of-subgroup points
    /// make the pairing precompile fail, which is reported as an invalid signature.
    function verify(bytes memory publicKey, bytes32 message, bytes calldata signature)
        internal
        view
        returns (bool valid)
    {
        if (signature.length != G1_POINT_BYTES) revert InvalidPointLength("signature", signature.length);
        if (publicKey.length != G2_POINT_BYTES) revert InvalidPointLength("publicKey", publicKey.length);
        // Pairing input: signature (128) || -G2 (256) || H(message) (128) || publicKey (256).
        bytes memory input = new bytes(768);
        uint256 p;
        assembly ("memory-safe") {
            p := add(input, 0x20)
            calldatacopy(p, signature.offset, 128)
            mstore(add(p, 0x080), NEG_G2_0)
            mstore(add(p, 0x0a0), NEG_G2_1)
            mstore(add(p, 0x0c0), NEG_G2_2)
            mstore(add(p, 0x0e0), NEG_G2_3)
            mstore(add(p, 0x100), NEG_G2_4)
            mstore(add(p, 0x120), NEG_G2_5)
            mstore(add(p, 0x140), NEG_G2_6)
            mstore(add(p, 0x160), NEG_G2_7)
            mcopy(add(p, 0x200), add(publicKey, 0x20), 256)
        }
        writeHashToG1(message, p + 0x180);
        assembly ("memory-safe") {
            let ok := staticcall(gas(), 0x0f, p, 768, 0x00, 0x20)
            valid := and(and(ok, eq(returndatasize(), 0x20)), eq(mload(0x00), 1))
        }
    }

    /// @notice True when `point` is a G2 point in the prime-order subgroup and not infinity.
    function isValidG2(bytes memory point) internal view returns (bool) {
        if (point.length != G2_POINT_BYTES) return false;
        bool isZero = true;
        for (uint256 i = 0; i < G2_POINT_BYTES; ++i) {
            if (point[i] != 0) {
                isZero = false;
                break;
            }
        }
        if (isZero) return false;
        // G2MSM with scalar 1 checks curve and subgroup membership and returns the point itself.
        (bool ok, bytes memory out) = address(0x0e).staticcall(bytes.concat(point, bytes32(uint256(1))));
        return ok && out.length == G2_POINT_BYTES && keccak256(out) == keccak256(point);
    }

    /// @dev Writes hash_to_curve(message) (128 bytes) at memory `out`; scratch past the free pointer.
    /// Scratch layout from s: [0x000, 0x0a0) SHA-256 input; [0x100, 0x1e1) and [0x200, 0x2e1) the two
    /// MODEXP inputs (64 || 1 || 48 || b_2k+1 || b_2k+2 || 0x01 || p); [0x300, 0x380) the two field
    /// elements; [0x380, 0x480) the two mapped points (G1ADD input).
    function writeHashToG1(bytes32 message, uint256 out) private view {
        bool ok;
        assembly ("memory-safe") {
            // Yul evaluates arguments right to left: read returndatasize() only after the call.
            function precompile(okSoFar, addr, input, inputLength, output, outputLength) -> okAfter {
                let success := staticcall(gas(), addr, input, inputLength, output, outputLength)
                okAfter := and(okSoFar, and(success, eq(returndatasize(), outputLength)))
            }
            let s := mload(0x40)
            // b_0 = H(Z_pad || msg || I2OSP(128, 2) || I2OSP(0, 1) || DST_prime), 155 bytes.
            mstore(s, 0)
            mstore(add(s, 0x20), 0)
            mstore(add(s, 0x40), message)
            mstore(add(s, 0x60), XMD_TAIL_0)
            mstore(add(s, 0x80), XMD_TAIL_1)
            ok := precompile(1, 0x02, s, 155, s, 0x20)
            let b0 := mload(s)
            // b_i = H(strxor(b_0, b_(i-1)) || I2OSP(i, 1) || DST_prime), 89 bytes; b_1 xors with zero.
            mstore(add(s, 0x40), XMD_ROUND_1)
            let prev := 0
            for { let i := 1 } lt(i, 5) { i := add(i, 1) } {
                mstore(s, xor(b0, prev))
                mstore(add(s, 0x20), or(shl(248, i), XMD_ROUND_0))
                // b_1, b_2 -> first MODEXP base; b_3, b_4 -> second.
                let dest := add(add(s, 0x160), add(mul(0x20, and(sub(i, 1), 1)), mul(0x100, shr(1, sub(i, 1)))))
                ok := precompile(ok, 0x02, s, 89, dest, 0x20)
                prev := mload(dest)
            }
            // u_k = OS2IP(b_2k+1 || b_2k+2) mod p, written as a 64-byte field element, then mapped.
            for { let k := 0 } lt(k, 2) { k := add(k, 1) } {
                let m := add(s, add(0x100, mul(k, 0x100)))
                mstore(m, 64)
                mstore(add(m, 0x20), 1)
                mstore(add(m, 0x40), 48)
                mstore8(add(m, 0xa0), 1)
                mstore(add(m, 0xa1), P_HIGH)
                mstore(add(m, 0xc1), shl(128, P_LOW))
                let fe := add(s, add(0x300, mul(k, 0x40)))
                mstore(fe, 0)
                ok := precompile(ok, 0x05, m, 209, add(fe, 0x10), 48)
                let q := add(s, add(0x380, mul(k, 0x80)))
                ok := precompile(ok, 0x10, fe, 64, q, 128)
            }
            ok := precompile(ok, 0x0b, add(s, 0x380), 256, out, 128)
        }
        if (!ok) revert PrecompileFailed("hashToG1");
    }
}
