// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title BLS12-381 min-sig verification through the EIP-2537 precompiles (Prague).
/// @notice Signatures are G1 points and public keys G2 points, both in the EIP-2537 encoding
/// (64-byte field elements, 16 zero bytes + 48 big-endian bytes; G2 is x.c0 || x.c1 || y.c0 || y.c1).
/// Messages are hashed to G1 on-chain per RFC 9380 (expand_message_xmd with SHA-256, two field
/// elements reduced mod p through MODEXP, MAP_FP_TO_G1 on each, G1ADD; the map precompile clears the
/// cofactor, which is linear, so the sum equals hash_to_curve).
/// @dev Every precompile result is checked for success AND length: on a chain without EIP-2537 the
/// call to an empty address succeeds with no output.
library BLS12381 {
    address private constant MODEXP = address(0x05);
    address private constant G1ADD = address(0x0b);
    address private constant G2MSM = address(0x0e);
    address private constant PAIRING = address(0x0f);
    address private constant MAP_FP_TO_G1 = address(0x10);

    uint256 internal constant G1_POINT_BYTES = 128;
    uint256 internal constant G2_POINT_BYTES = 256;

    /// @notice The project's hash-to-G1 domain tag followed by its length byte (DST_prime, 56 bytes).
    bytes internal constant DST_PRIME =
        "CLEARING-V1-BLS-SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_\x37";

    /// @notice The base field modulus p, 48 bytes big-endian (MODEXP modulus).
    bytes internal constant P_BYTES =
        hex"1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab";

    /// @notice -G2 generator in EIP-2537 encoding.
    bytes internal constant NEG_G2_GENERATOR =
        hex"00000000000000000000000000000000024aa2b2f08f0a91260805272dc51051c6e47ad4fa403b02b4510b647ae3d1770bac0326a805bbefd48056c8c121bdb8"
        hex"0000000000000000000000000000000013e02b6052719f607dacd3a088274f65596bd0d09920b61ab5da61bbdc7f5049334cf11213945d57e5ac7d055d042b7e"
        hex"000000000000000000000000000000000d1b3cc2c7027888be51d9ef691d77bcb679afda66c73f17f9ee3837a55024f78c71363275a75d75d86bab79f74782aa"
        hex"0000000000000000000000000000000013fa4d4a0ad8b1ce186ed5061789213d993923066dddaf1040bc3ff59f825c78df74f2d75467e25e0f55f8a00fa030ed";

    error PrecompileFailed(address precompile);
    error InvalidPointLength(string field, uint256 length);

    /// @notice hash_to_curve(message) on G1 with the project tag; 128-byte EIP-2537 point.
    function hashToG1(bytes32 message) internal view returns (bytes memory) {
        (bytes32 b1, bytes32 b2, bytes32 b3, bytes32 b4) = expandMessageXmd(message);
        bytes memory q0 = mapToG1(reduceModP(b1, b2));
        bytes memory q1 = mapToG1(reduceModP(b3, b4));
        return callPrecompile(G1ADD, bytes.concat(q0, q1), G1_POINT_BYTES);
    }

    /// @notice expand_message_xmd(message, DST, 128) with SHA-256 (RFC 9380 section 5.3.1).
    function expandMessageXmd(bytes32 message)
        internal
        pure
        returns (bytes32 b1, bytes32 b2, bytes32 b3, bytes32 b4)
    {
        // msg_prime = Z_pad (64 zero bytes) || msg || I2OSP(128, 2) || I2OSP(0, 1) || DST_prime
        bytes32 b0 = sha256(abi.encodePacked(bytes32(0), bytes32(0), message, uint16(128), uint8(0), DST_PRIME));
        b1 = sha256(abi.encodePacked(b0, uint8(1), DST_PRIME));
        b2 = sha256(abi.encodePacked(b0 ^ b1, uint8(2), DST_PRIME));
        b3 = sha256(abi.encodePacked(b0 ^ b2, uint8(3), DST_PRIME));
        b4 = sha256(abi.encodePacked(b0 ^ b3, uint8(4), DST_PRIME));
    }

    /// @notice (hi || lo) mod p as a 64-byte EIP-2537 field element.
    function reduceModP(bytes32 hi, bytes32 lo) internal view returns (bytes memory) {
        bytes memory input = abi.encodePacked(uint256(64), uint256(1), uint256(48), hi, lo, uint8(1), P_BYTES);
        bytes memory reduced = callPrecompile(MODEXP, input, 48);
        return bytes.concat(bytes16(0), reduced);
    }

    function mapToG1(bytes memory fieldElement) internal view returns (bytes memory) {
        return callPrecompile(MAP_FP_TO_G1, fieldElement, G1_POINT_BYTES);
    }

    /// @notice e(signature, -G2) * e(H(message), publicKey) == 1.
    function verify(bytes memory publicKey, bytes32 message, bytes calldata signature)
        internal
        view
        returns (bool)
    {
        if (signature.length != G1_POINT_BYTES) revert InvalidPointLength("signature", signature.length);
        if (publicKey.length != G2_POINT_BYTES) revert InvalidPointLength("publicKey", publicKey.length);
        bytes memory input = bytes.concat(signature, NEG_G2_GENERATOR, hashToG1(message), publicKey);
        (bool ok, bytes memory out) = PAIRING.staticcall(input);
        // A malformed or out-of-subgroup point makes the precompile fail: that is a bad signature.
        if (!ok || out.length != 32) return false;
        return abi.decode(out, (uint256)) == 1;
    }

    /// @notice True when `point` is a valid G2 point in the prime-order subgroup and not infinity.
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
        (bool ok, bytes memory out) = G2MSM.staticcall(bytes.concat(point, bytes32(uint256(1))));
        return ok && out.length == G2_POINT_BYTES && keccak256(out) == keccak256(point);
    }

    function callPrecompile(address precompile, bytes memory input, uint256 outputLength)
        private
        view
        returns (bytes memory out)
    {
        bool ok;
        (ok, out) = precompile.staticcall(input);
        if (!ok || out.length != outputLength) revert PrecompileFailed(precompile);
    }
}
