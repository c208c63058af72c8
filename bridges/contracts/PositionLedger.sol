// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Owned.sol";
import {AsciiKeyLib, InvalidKey} from "./AsciiKey.sol";

/// @title Position ledger: instruments, matched trades, signed positions, realised cash, perp funding.
/// @notice Writer authority: the owner (governance) registers instruments and authorises venues; an
/// authorised venue records MATCHED trades (maker, taker, instrument, signed quantity, price) and sets
/// the cumulative funding indices of perps; nobody else writes. A venue cannot write a position or a
/// cash amount directly: every trade moves the taker by +quantity and the maker by -quantity at one
/// price, so positions and cash are zero-sum per trade and no sequence of venue calls creates equity
/// from nothing (an off-market price only moves value between two margined accounts). A venue trading
/// against its own book uses its own address as maker. A venue IS trusted with the funding indices of
/// perps (they move value between longs and shorts) and with the choice of price.
///
/// Realised cash lives here: `cashOf(account)` (signed micro-USD) is the sum over the account's trades
/// of `floorDiv(-q * price, 1e8)` (q its signed quantity: a buyer pays, a seller receives; option
/// premiums are paid this way) plus its realised perp funding. Floor division rounds against the
/// account, so the two sides' cash changes of a trade sum to <= 0. An account's equity is its vault
/// collateral + `cashOf` + the mark value of its positions (sum q * mark / 1e8 over all instruments,
/// options at their model value) + the unrealised funding of its perps.
///
/// Settlement (docs/clearing.md section 1): the owner links the vault once (`setVault`); only the vault
/// may move an account's cash with `settleCash(account, delta)`, and only for an account that traded:
/// the vault's `sweepDebt` credits a debtor's cash by the settlement asset it moves from the debtor's
/// balance into the payout pool, its payout completion debits a winner's cash by what it pays out of
/// the pool. The bounds are the ledger's (|cash| <= type(int64).max).
///
/// Funding: `fundingIndexOf(perp)` is the cumulative funding per 1 unit of the underlying (micro-USD,
/// set by venues); a long pays when it rises. `fundingEntryOf(account, perp)` is the index at which
/// the account's funding was last realised. When a side trades a perp its accrued funding
/// `floorDiv(-oldPosition * (index - entry), 1e8)` is first added to its cash and the entry set to the
/// index; the unrealised funding of an open perp position is `floorDiv(-position * (index - entry), 1e8)`.
/// Non-perp instruments have index and entry 0.
///
/// Scales: quantity 1e8, price micro-USD (1e6). Bounds (named errors): |quantity|, |position|, |cash|,
/// |funding index| <= type(int64).max and price <= type(uint64).max, so readers can hold them in int64.
///
/// Events (chain book): every book-relevant change (InstrumentRegistered, TradeRecorded one per side,
/// taker first, FundingIndexSet, CashSettled) increments `eventSequence` and carries the new value as its first
/// non-indexed field `sequence`, with the absolute new values, so a reader detects a missing log by a
/// gap. VenueSet, VaultSet and OwnershipTransferred change no book state and neither carry nor advance it.
/// Instruments are never removed or changed once registered; accounts and their positions stay listed
/// (a closed position reads 0).
/// @dev Gas (bench/gas_report.py, Prague): one matched trade between two accounts that already hold the
/// instrument ~72k; the first trade of two new accounts ~252k; recordTrades of 200 trades ~4.3M between
/// holders, ~22M with one new account per trade. A batch of 200 trades that each open TWO new accounts
/// needs ~40M (100 of them: 19.9M), more than a 30M block: MAX_BATCH bounds the calldata; venues size
/// batches by gas.
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
        address maker;
        address taker;
        uint64 instrumentId;
        int256 quantity;
        uint256 price;
    }

    struct Position {
        uint64 instrumentId;
        int256 quantity;
        int256 fundingEntry;
    }

    /// @dev Storage form of one (account, instrument): one slot.
    struct Holding {
        int64 quantity;
        int64 fundingEntry;
        bool listed;
    }

    /// @dev Storage form of one account: one slot. An account is listed once it traded, so it holds at
    /// least one (maybe closed) position: listed <=> positionCount > 0.
    struct AccountState {
        int64 cash;
        uint32 positionCount;
    }

    uint256 public constant MAX_PAGE = 500;
    uint256 public constant MAX_BATCH = 200;
    uint256 public constant MAX_PACKED_ACCOUNTS = 200;
    uint256 public constant MAX_PACKED_POSITIONS = 2000;
    int256 public constant QTY_SCALE = 1e8;
    int256 private constant MAX_INT64 = type(int64).max;

    /// @notice Sequence number of the last book-relevant event (0 before the first).
    uint64 public eventSequence;

    mapping(uint64 => Instrument) private instruments;
    uint64[] private instrumentIds;
    mapping(address => bool) public isVenue;
    /// @notice The CollateralVault allowed to call `settleCash` (set once by the owner; 0 before).
    address public vault;
    /// @notice Cumulative funding index of a perp (micro-USD per unit of the underlying); 0 otherwise.
    mapping(uint64 => int256) public fundingIndexOf;

    address[] private accountList;
    mapping(address => AccountState) private accountStates;
    /// @dev account => slot => four instrument ids (64 bits each, first-trade order), the count in AccountState.
    mapping(address => mapping(uint256 => uint256)) private instrumentSlots;
    mapping(address => mapping(uint64 => Holding)) private holdings;

    event InstrumentRegistered(uint64 indexed id, bytes32 indexed underlying, uint64 sequence, InstrumentKind kind,
        uint256 strike, uint64 expiry, OptionRight right);
    event VenueSet(address indexed venue, bool authorised);
    event TradeRecorded(address indexed venue, address indexed account, uint64 indexed instrumentId,
        uint64 sequence, int256 quantity, uint256 price, int256 position, int256 cash, int256 fundingEntry);
    event FundingIndexSet(uint64 indexed instrumentId, uint64 sequence, int256 index);
    event VaultSet(address indexed vault);
    /// @notice `cash` is the account's new absolute cash (the chain book assigns it).
    event CashSettled(address indexed account, uint64 sequence, int256 delta, int256 cash);

    error NotVenue(address caller);
    error UnknownInstrument(uint64 id);
    error InstrumentAlreadyRegistered(uint64 id);
    error InvalidInstrument(string field);
    error ZeroQuantity(uint64 instrumentId);
    error SelfTrade(address account);
    error QuantityOutOfRange(uint64 instrumentId, int256 quantity);
    error PriceOutOfRange(uint64 instrumentId, uint256 price);
    error PositionOutOfRange(address account, uint64 instrumentId, int256 position);
    error CashOutOfRange(address account, int256 cash);
    error NotPerp(uint64 instrumentId);
    error FundingIndexOutOfRange(uint64 instrumentId, int256 index);
    error LengthMismatch(string field, uint256 length, uint256 expected);
    error BatchTooLarge(uint256 size, uint256 max);
    error NotVault(address caller);
    error VaultAlreadySet(address vault);
    error UnknownAccount(address account);

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
        emit InstrumentRegistered(instrument.id, instrument.underlying, ++eventSequence, instrument.kind,
            instrument.strike, instrument.expiry, instrument.right);
    }

    function setVenue(address venue, bool authorised) external onlyOwner {
        if (venue == address(0)) revert ZeroAddress("venue");
        isVenue[venue] = authorised;
        emit VenueSet(venue, authorised);
    }

    /// @notice Links the CollateralVault that settles cash; once (a new vault needs a new ledger).
    function setVault(address vault_) external onlyOwner {
        if (vault_ == address(0)) revert ZeroAddress("vault");
        if (vault != address(0)) revert VaultAlreadySet(vault);
        vault = vault_;
        emit VaultSet(vault_);
    }

    // ---------------------------------------------------------------- vault

    /// @notice Adds `delta` micro-USD to the cash of `account` (which must have traded); the vault only.
    function settleCash(address account, int256 delta) external returns (int256 cash) {
        if (msg.sender != vault || vault == address(0)) revert NotVault(msg.sender);
        AccountState storage state = accountStates[account];
        if (state.positionCount == 0) revert UnknownAccount(account);
        if (delta > MAX_INT64 || delta < -MAX_INT64) revert CashOutOfRange(account, delta);
        cash = int256(state.cash) + delta;
        if (cash > MAX_INT64 || cash < -MAX_INT64) revert CashOutOfRange(account, cash);
        state.cash = int64(cash);
        emit CashSettled(account, ++eventSequence, delta, cash);
    }

    // ---------------------------------------------------------------- venues

    /// @notice One matched trade: the taker's position changes by `quantity`, the maker's by `-quantity`.
    function recordTrade(address maker, address taker, uint64 instrumentId, int256 quantity, uint256 price)
        external
        onlyVenue
    {
        processTrade(Trade(maker, taker, instrumentId, quantity, price));
    }

    function recordTrades(Trade[] calldata trades) external onlyVenue {
        if (trades.length > MAX_BATCH) revert BatchTooLarge(trades.length, MAX_BATCH);
        for (uint256 i = 0; i < trades.length; ++i) processTrade(trades[i]);
    }

    /// @notice Sets the cumulative funding index of perps (absolute values, not increments).
    function setFundingIndices(uint64[] calldata ids, int256[] calldata indices) external onlyVenue {
        if (indices.length != ids.length) revert LengthMismatch("indices", indices.length, ids.length);
        if (ids.length > MAX_BATCH) revert BatchTooLarge(ids.length, MAX_BATCH);
        for (uint256 i = 0; i < ids.length; ++i) {
            uint64 id = ids[i];
            InstrumentKind kind = instruments[id].kind;
            if (kind == InstrumentKind.NONE) revert UnknownInstrument(id);
            if (kind != InstrumentKind.PERP) revert NotPerp(id);
            int256 index = indices[i];
            if (index > MAX_INT64 || index < -MAX_INT64) revert FundingIndexOutOfRange(id, index);
            fundingIndexOf[id] = index;
            emit FundingIndexSet(id, ++eventSequence, index);
        }
    }

    // ---------------------------------------------------------------- views

    /// @notice Same ABI as a public mapping: account => realised cash (micro-USD, signed).
    function cashOf(address account) external view returns (int256) {
        return accountStates[account].cash;
    }

    /// @notice Same ABI as a public mapping: (account, instrument) => signed position (scale 1e8).
    function positionOf(address account, uint64 instrumentId) external view returns (int256) {
        return holdings[account][instrumentId].quantity;
    }

    /// @notice Same ABI as a public mapping: (account, perp) => funding index at the last realisation.
    function fundingEntryOf(address account, uint64 instrumentId) external view returns (int256) {
        return holdings[account][instrumentId].fundingEntry;
    }

    function isAccount(address account) external view returns (bool) {
        return accountStates[account].positionCount > 0;
    }

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

    /// @notice Funding indices of a page of instruments in registration order (0 for non-perps).
    function getFundingIndices(uint256 offset, uint256 limit)
        external
        view
        returns (uint64[] memory ids, int256[] memory indices)
    {
        uint256 n = pageLength(instrumentIds.length, offset, limit);
        ids = new uint64[](n);
        indices = new int256[](n);
        for (uint256 i = 0; i < n; ++i) {
            ids[i] = instrumentIds[offset + i];
            indices[i] = fundingIndexOf[ids[i]];
        }
    }

    function accountCount() external view returns (uint256) {
        return accountList.length;
    }

    /// @notice Accounts in first-trade order.
    function getAccounts(uint256 offset, uint256 limit) external view returns (address[] memory page) {
        uint256 n = pageLength(accountList.length, offset, limit);
        page = new address[](n);
        for (uint256 i = 0; i < n; ++i) page[i] = accountList[offset + i];
    }

    /// @notice A page of accounts (first-trade order) with their cash and listed position counts.
    function getAccountsInfo(uint256 offset, uint256 limit)
        external
        view
        returns (address[] memory accounts, int256[] memory cash, uint256[] memory positionCounts)
    {
        uint256 n = pageLength(accountList.length, offset, limit);
        accounts = new address[](n);
        cash = new int256[](n);
        positionCounts = new uint256[](n);
        for (uint256 i = 0; i < n; ++i) {
            address account = accountList[offset + i];
            accounts[i] = account;
            AccountState storage state = accountStates[account];
            cash[i] = state.cash;
            positionCounts[i] = state.positionCount;
        }
    }

    function positionCount(address account) external view returns (uint256) {
        return accountStates[account].positionCount;
    }

    /// @notice Positions of `account` in first-trade order; closed positions stay listed with 0.
    function getPositions(address account, uint256 offset, uint256 limit)
        external
        view
        returns (Position[] memory page)
    {
        uint256 n = pageLength(accountStates[account].positionCount, offset, limit);
        page = new Position[](n);
        for (uint256 i = 0; i < n; ++i) {
            uint64 id = instrumentAt(account, offset + i);
            Holding storage h = holdings[account][id];
            page[i] = Position(id, h.quantity, h.fundingEntry);
        }
    }

    /// @notice The positions of a page of accounts in one packed blob, for a reader that takes the whole book
    /// (the cold path of the validators' chain book): per account in list order
    /// `account (20 bytes) | cash (int64, 8) | count (uint32, 4)` followed by `count` positions
    /// `instrumentId (uint64, 8) | quantity (int64, 8) | fundingEntry (int64, 8)`, all big-endian, closed
    /// positions included. At most MAX_PACKED_ACCOUNTS accounts per call, fewer once MAX_PACKED_POSITIONS
    /// positions are reached (at least one account), which bounds the call's gas. The same values as
    /// `getAccountsInfo` and `getPositions`, without the ABI's 32-byte words and offsets.
    function getPositionsPacked(uint256 offset, uint256 limit) external view returns (bytes memory out) {
        if (limit > MAX_PACKED_ACCOUNTS) limit = MAX_PACKED_ACCOUNTS;
        uint256 n = pageLength(accountList.length, offset, limit);
        uint256 size = 0;
        uint256 positions = 0;
        for (uint256 i = 0; i < n; ++i) {
            uint256 count = accountStates[accountList[offset + i]].positionCount;
            if (i > 0 && positions + count > MAX_PACKED_POSITIONS) {
                n = i; // the page ends early; the reader asks again from offset + n
                break;
            }
            positions += count;
            size += 32 + 24 * count;
        }
        out = new bytes(size);
        uint256 pos = 0;
        for (uint256 i = 0; i < n; ++i) {
            address account = accountList[offset + i];
            AccountState storage state = accountStates[account];
            uint256 count = state.positionCount;
            pos = putWord(out, pos, uint256(uint160(account)), 20);
            pos = putWord(out, pos, uint256(uint64(state.cash)), 8);
            pos = putWord(out, pos, count, 4);
            for (uint256 j = 0; j < count; ++j) {
                uint64 id = instrumentAt(account, j);
                Holding storage h = holdings[account][id];
                pos = putWord(out, pos, id, 8);
                pos = putWord(out, pos, uint256(uint64(h.quantity)), 8);
                pos = putWord(out, pos, uint256(uint64(h.fundingEntry)), 8);
            }
        }
    }

    // ---------------------------------------------------------------- internals

    /// @dev Writes the low `width` bytes of `value` big-endian at `out[pos]`; returns the next offset.
    function putWord(bytes memory out, uint256 pos, uint256 value, uint256 width) private pure returns (uint256) {
        assembly ("memory-safe") {
            let p := add(add(out, 0x20), pos)
            let shifted := shl(mul(sub(32, width), 8), value)
            let keep := not(shr(mul(width, 8), not(0)))
            mstore(p, or(shifted, and(mload(p), not(keep))))
        }
        return pos + width;
    }

    function processTrade(Trade memory trade) private {
        if (trade.maker == address(0)) revert ZeroAddress("maker");
        if (trade.taker == address(0)) revert ZeroAddress("taker");
        if (trade.maker == trade.taker) revert SelfTrade(trade.maker);
        uint64 id = trade.instrumentId;
        InstrumentKind kind = instruments[id].kind;
        if (kind == InstrumentKind.NONE) revert UnknownInstrument(id);
        if (trade.quantity == 0) revert ZeroQuantity(id);
        if (trade.quantity > MAX_INT64 || trade.quantity < -MAX_INT64) revert QuantityOutOfRange(id, trade.quantity);
        if (trade.price > type(uint64).max) revert PriceOutOfRange(id, trade.price);
        bool isPerp = kind == InstrumentKind.PERP;
        int256 index = isPerp ? fundingIndexOf[id] : int256(0);
        settleSide(trade.taker, id, trade.quantity, trade.price, isPerp, index);
        settleSide(trade.maker, id, -trade.quantity, trade.price, isPerp, index);
    }

    /// @dev Applies one side: realise perp funding, pay `quantity * price`, move the position.
    function settleSide(address account, uint64 id, int256 quantity, uint256 price, bool isPerp, int256 index)
        private
    {
        AccountState memory state = accountStates[account];
        if (state.positionCount == 0) accountList.push(account);
        Holding memory holding = holdings[account][id];
        if (!holding.listed) {
            uint256 n = state.positionCount++;
            instrumentSlots[account][n >> 2] |= uint256(id) << ((n & 3) * 64);
        }
        int256 oldPosition = holding.quantity;
        int256 cash = state.cash;
        int256 entry = holding.fundingEntry;
        if (isPerp) {
            cash += floorDiv(-oldPosition * (index - entry));
            entry = index;
        }
        cash += floorDiv(-quantity * int256(price));
        int256 position = oldPosition + quantity;
        if (position > MAX_INT64 || position < -MAX_INT64) revert PositionOutOfRange(account, id, position);
        if (cash > MAX_INT64 || cash < -MAX_INT64) revert CashOutOfRange(account, cash);
        accountStates[account] = AccountState(int64(cash), state.positionCount);
        holdings[account][id] = Holding(int64(position), int64(entry), true);
        emit TradeRecorded(msg.sender, account, id, ++eventSequence, quantity, price, position, cash, entry);
    }

    function instrumentAt(address account, uint256 index) private view returns (uint64) {
        return uint64(instrumentSlots[account][index >> 2] >> ((index & 3) * 64));
    }

    /// @dev floor(value / 1e8): rounds toward minus infinity (against the account receiving `value`).
    function floorDiv(int256 value) private pure returns (int256 q) {
        q = value / QTY_SCALE;
        if (value < 0 && q * QTY_SCALE != value) q -= 1;
    }

    function validateInstrument(Instrument calldata instrument) private view {
        if (instrument.id == 0) revert InvalidInstrument("id");
        if (instruments[instrument.id].kind != InstrumentKind.NONE) revert InstrumentAlreadyRegistered(instrument.id);
        if (!AsciiKeyLib.isValid(instrument.underlying)) revert InvalidKey("underlying", instrument.underlying);
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
