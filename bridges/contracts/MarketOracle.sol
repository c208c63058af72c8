// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Owned.sol";
import {AsciiKeyLib, InvalidKey} from "./AsciiKey.sol";

/// @title Market oracle: spots, forwards, implied vols and collateral asset prices.
/// @notice Writer authority: the owner (governance) authorises publishers; authorised publishers set
/// values in batches; nobody else writes. Every value carries the block timestamp of its last update.
/// Prices are integer micro-USD (1e6), vols integer 1e6; underlyings and assets are bytes32 printable
/// ASCII symbols (`AsciiKeyLib`: a malformed key is refused with InvalidKey naming the field, since
/// validators decode every key); expiries unix seconds (non-zero). Keys are enumerable (paginated) so
/// validators can read the whole book at a pinned block. Values are never deleted.
/// Events (chain book): every SpotSet, ForwardSet, VolSet and AssetPriceSet increments `eventSequence`
/// and carries the new value as its first non-indexed field `sequence`, with the absolute new value,
/// so a reader detects a missing log by a gap. PublisherSet and OwnershipTransferred carry no sequence.
contract MarketOracle is Owned {
    struct Quote {
        uint192 value;
        uint64 updatedAt;
    }

    struct ForwardKey {
        bytes32 underlying;
        uint64 expiry;
    }

    uint256 public constant MAX_PAGE = 500;
    uint256 public constant MAX_BATCH = 200;

    /// @notice Sequence number of the last value event (0 before the first).
    uint64 public eventSequence;

    mapping(address => bool) public isPublisher;

    mapping(bytes32 => Quote) private spots;
    bytes32[] private spotKeys;
    mapping(bytes32 => mapping(uint64 => Quote)) private forwards;
    ForwardKey[] private forwardKeys;
    mapping(uint64 => Quote) private vols;
    uint64[] private volKeys;
    mapping(bytes32 => Quote) private assetPrices;
    bytes32[] private assetKeys;

    event PublisherSet(address indexed publisher, bool authorised);
    event SpotSet(bytes32 indexed underlying, uint64 sequence, uint256 price, uint64 updatedAt);
    event ForwardSet(bytes32 indexed underlying, uint64 indexed expiry, uint64 sequence, uint256 price,
        uint64 updatedAt);
    event VolSet(uint64 indexed instrumentId, uint64 sequence, uint256 vol, uint64 updatedAt);
    event AssetPriceSet(bytes32 indexed asset, uint64 sequence, uint256 price, uint64 updatedAt);

    error NotPublisher(address caller);
    error LengthMismatch(string field, uint256 length, uint256 expected);
    error BatchTooLarge(uint256 size, uint256 max);
    error ValueTooLarge(string field, uint256 value);
    error ZeroKey(string field);

    constructor(address initialOwner) Owned(initialOwner) {}

    modifier onlyPublisher() {
        if (!isPublisher[msg.sender]) revert NotPublisher(msg.sender);
        _;
    }

    function setPublisher(address publisher, bool authorised) external onlyOwner {
        if (publisher == address(0)) revert ZeroAddress("publisher");
        isPublisher[publisher] = authorised;
        emit PublisherSet(publisher, authorised);
    }

    // ---------------------------------------------------------------- batch setters

    function setSpots(bytes32[] calldata underlyings, uint256[] calldata prices) external onlyPublisher {
        validateBatch(underlyings.length, prices.length, "prices");
        for (uint256 i = 0; i < underlyings.length; ++i) {
            if (!AsciiKeyLib.isValid(underlyings[i])) revert InvalidKey("underlying", underlyings[i]);
            if (spots[underlyings[i]].updatedAt == 0) spotKeys.push(underlyings[i]);
            spots[underlyings[i]] = toQuote(prices[i], "price");
            emit SpotSet(underlyings[i], ++eventSequence, prices[i], uint64(block.timestamp));
        }
    }

    function setForwards(bytes32[] calldata underlyings, uint64[] calldata expiries, uint256[] calldata prices)
        external
        onlyPublisher
    {
        validateBatch(underlyings.length, prices.length, "prices");
        validateBatch(underlyings.length, expiries.length, "expiries");
        for (uint256 i = 0; i < underlyings.length; ++i) {
            if (!AsciiKeyLib.isValid(underlyings[i])) revert InvalidKey("underlying", underlyings[i]);
            if (expiries[i] == 0) revert ZeroKey("expiry");
            if (forwards[underlyings[i]][expiries[i]].updatedAt == 0) {
                forwardKeys.push(ForwardKey(underlyings[i], expiries[i]));
            }
            forwards[underlyings[i]][expiries[i]] = toQuote(prices[i], "price");
            emit ForwardSet(underlyings[i], expiries[i], ++eventSequence, prices[i], uint64(block.timestamp));
        }
    }

    function setVols(uint64[] calldata instrumentIds, uint256[] calldata impliedVols) external onlyPublisher {
        validateBatch(instrumentIds.length, impliedVols.length, "vols");
        for (uint256 i = 0; i < instrumentIds.length; ++i) {
            if (instrumentIds[i] == 0) revert ZeroKey("instrumentId");
            if (vols[instrumentIds[i]].updatedAt == 0) volKeys.push(instrumentIds[i]);
            vols[instrumentIds[i]] = toQuote(impliedVols[i], "vol");
            emit VolSet(instrumentIds[i], ++eventSequence, impliedVols[i], uint64(block.timestamp));
        }
    }

    function setAssetPrices(bytes32[] calldata assets, uint256[] calldata prices) external onlyPublisher {
        validateBatch(assets.length, prices.length, "prices");
        for (uint256 i = 0; i < assets.length; ++i) {
            if (!AsciiKeyLib.isValid(assets[i])) revert InvalidKey("asset", assets[i]);
            if (assetPrices[assets[i]].updatedAt == 0) assetKeys.push(assets[i]);
            assetPrices[assets[i]] = toQuote(prices[i], "price");
            emit AssetPriceSet(assets[i], ++eventSequence, prices[i], uint64(block.timestamp));
        }
    }

    // ---------------------------------------------------------------- single reads

    function spotOf(bytes32 underlying) external view returns (Quote memory) {
        return spots[underlying];
    }

    function forwardOf(bytes32 underlying, uint64 expiry) external view returns (Quote memory) {
        return forwards[underlying][expiry];
    }

    function volOf(uint64 instrumentId) external view returns (Quote memory) {
        return vols[instrumentId];
    }

    function assetPriceOf(bytes32 asset) external view returns (Quote memory) {
        return assetPrices[asset];
    }

    // ---------------------------------------------------------------- enumerable reads

    function counts() external view returns (uint256 spotCount, uint256 forwardCount, uint256 volCount,
        uint256 assetCount)
    {
        return (spotKeys.length, forwardKeys.length, volKeys.length, assetKeys.length);
    }

    function getSpots(uint256 offset, uint256 limit)
        external
        view
        returns (bytes32[] memory keys, Quote[] memory quotes)
    {
        uint256 n = pageLength(spotKeys.length, offset, limit);
        keys = new bytes32[](n);
        quotes = new Quote[](n);
        for (uint256 i = 0; i < n; ++i) {
            keys[i] = spotKeys[offset + i];
            quotes[i] = spots[keys[i]];
        }
    }

    function getForwards(uint256 offset, uint256 limit)
        external
        view
        returns (ForwardKey[] memory keys, Quote[] memory quotes)
    {
        uint256 n = pageLength(forwardKeys.length, offset, limit);
        keys = new ForwardKey[](n);
        quotes = new Quote[](n);
        for (uint256 i = 0; i < n; ++i) {
            keys[i] = forwardKeys[offset + i];
            quotes[i] = forwards[keys[i].underlying][keys[i].expiry];
        }
    }

    function getVols(uint256 offset, uint256 limit)
        external
        view
        returns (uint64[] memory keys, Quote[] memory quotes)
    {
        uint256 n = pageLength(volKeys.length, offset, limit);
        keys = new uint64[](n);
        quotes = new Quote[](n);
        for (uint256 i = 0; i < n; ++i) {
            keys[i] = volKeys[offset + i];
            quotes[i] = vols[keys[i]];
        }
    }

    function getAssetPrices(uint256 offset, uint256 limit)
        external
        view
        returns (bytes32[] memory keys, Quote[] memory quotes)
    {
        uint256 n = pageLength(assetKeys.length, offset, limit);
        keys = new bytes32[](n);
        quotes = new Quote[](n);
        for (uint256 i = 0; i < n; ++i) {
            keys[i] = assetKeys[offset + i];
            quotes[i] = assetPrices[keys[i]];
        }
    }

    // ---------------------------------------------------------------- internals

    function toQuote(uint256 value, string memory field) private view returns (Quote memory) {
        if (value > type(uint192).max) revert ValueTooLarge(field, value);
        return Quote(uint192(value), uint64(block.timestamp));
    }

    function validateBatch(uint256 length, uint256 otherLength, string memory field) private pure {
        if (length != otherLength) revert LengthMismatch(field, otherLength, length);
        if (length > MAX_BATCH) revert BatchTooLarge(length, MAX_BATCH);
    }

    function pageLength(uint256 total, uint256 offset, uint256 limit) private pure returns (uint256) {
        if (limit > MAX_PAGE) limit = MAX_PAGE;
        if (offset >= total) return 0;
        uint256 rest = total - offset;
        return rest < limit ? rest : limit;
    }
}
