// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Owned.sol";
import {AsciiKeyLib, InvalidKey} from "./AsciiKey.sol";

/// @title Market oracle: spots, forwards, implied vols, collateral asset prices, oracle confidences and
/// per-expiry rates (risk model v2 inputs).
/// @notice Writer authority: the owner (governance) authorises publishers; authorised publishers set
/// values in batches; nobody else writes. Every value carries the block timestamp of its last update.
/// Prices are integer micro-USD (1e6), vols integer 1e6; underlyings and assets are bytes32 printable
/// ASCII symbols (`AsciiKeyLib`: a malformed key is refused with InvalidKey naming the field, since
/// validators decode every key); expiries unix seconds (non-zero). Keys are enumerable (paginated) so
/// validators can read the whole book at a pinned block. Values are never deleted.
/// Confidences are 1e9 fixed point in [0, 1e9], one per (kind, key, expiry): kind 1 spot and 2 perp of an
/// underlying (expiry 0), 3 an expiry of an underlying (expiry non-zero: min of its forward, rate and vol
/// feeds), 4 a collateral asset (expiry 0). Rates are per (underlying, expiry), unsigned 1e9 fixed point
/// in [0, MAX_RATE] (the risk model floors rates at 0). Out-of-range values revert with ValueOutOfRange.
/// Events (chain book): every SpotSet, ForwardSet, VolSet, AssetPriceSet, ConfidenceSet and RateSet
/// increments `eventSequence`
/// and carries the new value as its first non-indexed field `sequence`, with the absolute new value,
/// so a reader detects a missing log by a gap. PublisherSet and OwnershipTransferred carry no sequence.
/// Atomic publish: `multicall` runs several setter calls in one transaction (OpenZeppelin's Multicall
/// pattern, written here: delegatecall to this contract, so msg.sender and every check stay those of a
/// direct call, and each call emits its usual events); one failing call reverts them all.
contract MarketOracle is Owned {
    struct Quote {
        uint192 value;
        uint64 updatedAt;
    }

    struct ForwardKey {
        bytes32 underlying;
        uint64 expiry;
    }

    struct ConfidenceKey {
        uint8 kind;
        bytes32 key;
        uint64 expiry;
    }

    uint256 public constant MAX_PAGE = 500;
    uint256 public constant MAX_BATCH = 200;
    uint256 public constant CONFIDENCE_ONE = 1e9;
    uint256 public constant MAX_RATE = 2e9; // 2.0 per year, the risk model's bound
    uint8 public constant CONFIDENCE_SPOT = 1;
    uint8 public constant CONFIDENCE_PERP = 2;
    uint8 public constant CONFIDENCE_EXPIRY = 3;
    uint8 public constant CONFIDENCE_ASSET = 4;

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
    mapping(bytes32 => Quote) private confidences; // keccak256(kind, key, expiry)
    ConfidenceKey[] private confidenceKeys;
    mapping(bytes32 => mapping(uint64 => Quote)) private rates;
    ForwardKey[] private rateKeys;

    event PublisherSet(address indexed publisher, bool authorised);
    event SpotSet(bytes32 indexed underlying, uint64 sequence, uint256 price, uint64 updatedAt);
    event ForwardSet(bytes32 indexed underlying, uint64 indexed expiry, uint64 sequence, uint256 price,
        uint64 updatedAt);
    event VolSet(uint64 indexed instrumentId, uint64 sequence, uint256 vol, uint64 updatedAt);
    event AssetPriceSet(bytes32 indexed asset, uint64 sequence, uint256 price, uint64 updatedAt);
    event ConfidenceSet(uint8 indexed kind, bytes32 indexed key, uint64 indexed expiry, uint64 sequence,
        uint256 confidence, uint64 updatedAt);
    event RateSet(bytes32 indexed underlying, uint64 indexed expiry, uint64 sequence, uint256 rate,
        uint64 updatedAt);

    error NotPublisher(address caller);
    error LengthMismatch(string field, uint256 length, uint256 expected);
    error BatchTooLarge(uint256 size, uint256 max);
    error ValueTooLarge(string field, uint256 value);
    error ZeroKey(string field);
    error ValueOutOfRange(string field, uint256 value, uint256 max);
    error InvalidConfidenceKind(uint8 kind);
    error InvalidExpiry(uint8 kind, uint64 expiry);
    error MulticallFailed(uint256 index);

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

    /// @notice Confidences of spots, perps, expiries and collateral assets (see the contract notice).
    function setConfidences(
        uint8[] calldata kinds,
        bytes32[] calldata keys,
        uint64[] calldata expiries,
        uint256[] calldata values
    ) external onlyPublisher {
        validateBatch(kinds.length, keys.length, "keys");
        validateBatch(kinds.length, expiries.length, "expiries");
        validateBatch(kinds.length, values.length, "confidences");
        for (uint256 i = 0; i < kinds.length; ++i) {
            ConfidenceKey memory k = ConfidenceKey(kinds[i], keys[i], expiries[i]);
            validateConfidenceKey(k);
            if (values[i] > CONFIDENCE_ONE) revert ValueOutOfRange("confidence", values[i], CONFIDENCE_ONE);
            bytes32 slot = keccak256(abi.encode(k.kind, k.key, k.expiry));
            if (confidences[slot].updatedAt == 0) confidenceKeys.push(k);
            confidences[slot] = Quote(uint192(values[i]), uint64(block.timestamp));
            emit ConfidenceSet(k.kind, k.key, k.expiry, ++eventSequence, values[i], uint64(block.timestamp));
        }
    }

    /// @notice Per-expiry rates (unsigned 1e9 fixed point, at most MAX_RATE).
    function setRates(bytes32[] calldata underlyings, uint64[] calldata expiries, uint256[] calldata values)
        external
        onlyPublisher
    {
        validateBatch(underlyings.length, expiries.length, "expiries");
        validateBatch(underlyings.length, values.length, "rates");
        for (uint256 i = 0; i < underlyings.length; ++i) {
            if (!AsciiKeyLib.isValid(underlyings[i])) revert InvalidKey("underlying", underlyings[i]);
            if (expiries[i] == 0) revert ZeroKey("expiry");
            if (values[i] > MAX_RATE) revert ValueOutOfRange("rate", values[i], MAX_RATE);
            if (rates[underlyings[i]][expiries[i]].updatedAt == 0) rateKeys.push(ForwardKey(underlyings[i], expiries[i]));
            rates[underlyings[i]][expiries[i]] = Quote(uint192(values[i]), uint64(block.timestamp));
            emit RateSet(underlyings[i], expiries[i], ++eventSequence, values[i], uint64(block.timestamp));
        }
    }

    // ---------------------------------------------------------------- several calls in one transaction

    /// @notice Runs each element of `data` (the calldata of one function of this contract) in order, by
    /// delegatecall to this contract: msg.sender stays the caller, so `onlyPublisher` / `onlyOwner` check each
    /// call as if it were sent alone, and the events are emitted by this contract as usual. A failing call
    /// reverts the whole transaction with that call's own revert data (e.g. NotPublisher, InvalidKey), or
    /// with MulticallFailed(index) when it gave none (an unknown selector): nothing is half-written.
    function multicall(bytes[] calldata data) external returns (bytes[] memory results) {
        results = new bytes[](data.length);
        for (uint256 i = 0; i < data.length; ++i) {
            (bool ok, bytes memory returned) = address(this).delegatecall(data[i]);
            if (!ok) {
                if (returned.length == 0) revert MulticallFailed(i);
                assembly ("memory-safe") {
                    revert(add(returned, 0x20), mload(returned))
                }
            }
            results[i] = returned;
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

    function confidenceOf(uint8 kind, bytes32 key, uint64 expiry) external view returns (Quote memory) {
        return confidences[keccak256(abi.encode(kind, key, expiry))];
    }

    function rateOf(bytes32 underlying, uint64 expiry) external view returns (Quote memory) {
        return rates[underlying][expiry];
    }

    // ---------------------------------------------------------------- enumerable reads

    /// @notice Counts of the risk model v2 tables (`counts` covers the others).
    function inputCounts() external view returns (uint256 confidenceCount, uint256 rateCount) {
        return (confidenceKeys.length, rateKeys.length);
    }

    function getConfidences(uint256 offset, uint256 limit)
        external
        view
        returns (ConfidenceKey[] memory keys, Quote[] memory quotes)
    {
        uint256 n = pageLength(confidenceKeys.length, offset, limit);
        keys = new ConfidenceKey[](n);
        quotes = new Quote[](n);
        for (uint256 i = 0; i < n; ++i) {
            keys[i] = confidenceKeys[offset + i];
            quotes[i] = confidences[keccak256(abi.encode(keys[i].kind, keys[i].key, keys[i].expiry))];
        }
    }

    function getRates(uint256 offset, uint256 limit)
        external
        view
        returns (ForwardKey[] memory keys, Quote[] memory quotes)
    {
        uint256 n = pageLength(rateKeys.length, offset, limit);
        keys = new ForwardKey[](n);
        quotes = new Quote[](n);
        for (uint256 i = 0; i < n; ++i) {
            keys[i] = rateKeys[offset + i];
            quotes[i] = rates[keys[i].underlying][keys[i].expiry];
        }
    }

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

    function validateConfidenceKey(ConfidenceKey memory k) private pure {
        if (k.kind < CONFIDENCE_SPOT || k.kind > CONFIDENCE_ASSET) revert InvalidConfidenceKind(k.kind);
        if (!AsciiKeyLib.isValid(k.key)) revert InvalidKey(k.kind == CONFIDENCE_ASSET ? "asset" : "underlying", k.key);
        if ((k.kind == CONFIDENCE_EXPIRY) != (k.expiry != 0)) revert InvalidExpiry(k.kind, k.expiry);
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
