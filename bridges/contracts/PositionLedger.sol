// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Owned.sol";

/// @title Position ledger: instruments, authorised venues, signed positions per account.
/// @notice The owner (governance) registers instruments and authorises venues; venues record trades
/// (account, instrument, signed quantity scale 1e8, price micro-USD). Positions are the running sum
/// of recorded quantities. Validators read instruments, accounts and positions through paginated views
/// at a pinned block. Instruments are never removed or changed once registered.
contract PositionLedger is Owned {
    enum InstrumentKind { NONE, OPTION, FUTURE, PERP, SPOT }
    enum OptionRight { NONE, CALL, PUT }

    struct Instrument {
        uint64 id;
        bytes32 underlying;
        InstrumentKind kind;
        uint256 strike;
        uint64 expiry;
        OptionRight right;
    }

    struct Trade {
        address account;
        uint64 instrumentId;
        int256 quantity;
        uint256 price;
    }

    struct Position {
        uint64 instrumentId;
        int256 quantity;
    }

    uint256 public constant MAX_PAGE = 500;
    uint256 public constant MAX_BATCH = 200;

    mapping(uint64 => Instrument) private instruments;
    uint64[] private instrumentIds;
    mapping(address => bool) public isVenue;

    address[] private accounts;
    mapping(address => bool) public isAccount;
    mapping(address => uint64[]) private accountInstruments;
    mapping(address => mapping(uint64 => bool)) private hasInstrument;
    mapping(address => mapping(uint64 => int256)) public positionOf;
    uint256 public tradeCount;

    event InstrumentRegistered(uint64 indexed id, bytes32 indexed underlying, InstrumentKind kind,
        uint256 strike, uint64 expiry, OptionRight right);
    event VenueSet(address indexed venue, bool authorised);
    event TradeRecorded(uint256 indexed sequence, address indexed venue, address indexed account,
        uint64 instrumentId, int256 quantity, uint256 price, int256 position);

    error NotVenue(address caller);
    error UnknownInstrument(uint64 id);
    error InstrumentAlreadyRegistered(uint64 id);
    error InvalidInstrument(string field);
    error ZeroQuantity(address account, uint64 instrumentId);
    error BatchTooLarge(uint256 size, uint256 max);

    constructor(address initialOwner) Owned(initialOwner) {}

    modifier onlyVenue() {
        if (!isVenue[msg.sender]) revert NotVenue(msg.sender);
        _;
    }

    // ---------------------------------------------------------------- admin

    function registerInstrument(Instrument calldata instrument) external onlyOwner {
        validateInstrument(instrument);
        instruments[instrument.id] = instrument;
        instrumentIds.push(instrument.id);
        emit InstrumentRegistered(instrument.id, instrument.underlying, instrument.kind, instrument.strike,
            instrument.expiry, instrument.right);
    }

    function setVenue(address venue, bool authorised) external onlyOwner {
        if (venue == address(0)) revert ZeroAddress("venue");
        isVenue[venue] = authorised;
        emit VenueSet(venue, authorised);
    }

    // ---------------------------------------------------------------- trades

    function recordTrade(address account, uint64 instrumentId, int256 quantity, uint256 price) external onlyVenue {
        processTrade(Trade(account, instrumentId, quantity, price));
    }

    function recordTrades(Trade[] calldata trades) external onlyVenue {
        if (trades.length > MAX_BATCH) revert BatchTooLarge(trades.length, MAX_BATCH);
        for (uint256 i = 0; i < trades.length; ++i) processTrade(trades[i]);
    }

    // ---------------------------------------------------------------- views

    function getInstrument(uint64 id) external view returns (Instrument memory) {
        if (instruments[id].kind == InstrumentKind.NONE) revert UnknownInstrument(id);
        return instruments[id];
    }

    function instrumentCount() external view returns (uint256) {
        return instrumentIds.length;
    }

    function getInstruments(uint256 offset, uint256 limit) external view returns (Instrument[] memory page) {
        uint256 n = pageLength(instrumentIds.length, offset, limit);
        page = new Instrument[](n);
        for (uint256 i = 0; i < n; ++i) page[i] = instruments[instrumentIds[offset + i]];
    }

    function accountCount() external view returns (uint256) {
        return accounts.length;
    }

    function getAccounts(uint256 offset, uint256 limit) external view returns (address[] memory page) {
        uint256 n = pageLength(accounts.length, offset, limit);
        page = new address[](n);
        for (uint256 i = 0; i < n; ++i) page[i] = accounts[offset + i];
    }

    function positionCount(address account) external view returns (uint256) {
        return accountInstruments[account].length;
    }

    /// @notice Positions of `account` in first-trade order; closed positions stay listed with 0.
    function getPositions(address account, uint256 offset, uint256 limit)
        external
        view
        returns (Position[] memory page)
    {
        uint64[] storage ids = accountInstruments[account];
        uint256 n = pageLength(ids.length, offset, limit);
        page = new Position[](n);
        for (uint256 i = 0; i < n; ++i) {
            uint64 id = ids[offset + i];
            page[i] = Position(id, positionOf[account][id]);
        }
    }

    // ---------------------------------------------------------------- internals

    function processTrade(Trade memory trade) private {
        if (trade.account == address(0)) revert ZeroAddress("account");
        if (instruments[trade.instrumentId].kind == InstrumentKind.NONE) revert UnknownInstrument(trade.instrumentId);
        if (trade.quantity == 0) revert ZeroQuantity(trade.account, trade.instrumentId);
        if (!isAccount[trade.account]) {
            isAccount[trade.account] = true;
            accounts.push(trade.account);
        }
        if (!hasInstrument[trade.account][trade.instrumentId]) {
            hasInstrument[trade.account][trade.instrumentId] = true;
            accountInstruments[trade.account].push(trade.instrumentId);
        }
        int256 position = positionOf[trade.account][trade.instrumentId] + trade.quantity;
        positionOf[trade.account][trade.instrumentId] = position;
        uint256 sequence = ++tradeCount;
        emit TradeRecorded(sequence, msg.sender, trade.account, trade.instrumentId, trade.quantity, trade.price,
            position);
    }

    function validateInstrument(Instrument calldata instrument) private view {
        if (instrument.id == 0) revert InvalidInstrument("id");
        if (instruments[instrument.id].kind != InstrumentKind.NONE) revert InstrumentAlreadyRegistered(instrument.id);
        if (instrument.underlying == bytes32(0)) revert InvalidInstrument("underlying");
        if (instrument.kind == InstrumentKind.NONE) revert InvalidInstrument("kind");
        bool isOption = instrument.kind == InstrumentKind.OPTION;
        if (isOption != (instrument.right != OptionRight.NONE)) revert InvalidInstrument("right");
        if (isOption && instrument.strike == 0) revert InvalidInstrument("strike");
        bool dated = isOption || instrument.kind == InstrumentKind.FUTURE;
        if (dated != (instrument.expiry != 0)) revert InvalidInstrument("expiry");
    }

    function pageLength(uint256 total, uint256 offset, uint256 limit) private pure returns (uint256) {
        if (limit > MAX_PAGE) limit = MAX_PAGE;
        if (offset >= total) return 0;
        uint256 rest = total - offset;
        return rest < limit ? rest : limit;
    }
}
