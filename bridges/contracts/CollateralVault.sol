// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Owned.sol";
import {AsciiKeyLib, InvalidKey} from "./AsciiKey.sol";
import {MarginLeaf, MarginLeafLib} from "./interfaces/MarginLeaf.sol";
import {MarginStateRegistry} from "./MarginStateRegistry.sol";

interface IERC20 {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
    function decimals() external view returns (uint8);
}

/// @dev What the vault uses of the PositionLedger (settlement of realised cash).
interface ISettlementLedger {
    function vault() external view returns (address);
    function cashOf(address account) external view returns (int256);
    function settleCash(address account, int256 delta) external returns (int256);
}

/// @title Collateral vault: ERC-20 deposits per account, two-phase withdrawals, liquidation flag.
/// @notice Writer authority: the owner (governance) registers assets and sets their minimum withdrawal;
/// anyone deposits (for itself or, paying, for other accounts); an account requests and cancels its own
/// withdrawals; anyone submits a signed leaf to complete a request (funds always go to the requester)
/// or to flag / clear a liquidation.
///
/// A withdrawal is requested (the amount is locked; the registry's latest epoch and the block time are
/// recorded; at least `minWithdrawal[token]`; at most MAX_OPEN_REQUESTS_PER_ACCOUNT open per account)
/// and completes only with the account's leaf in a signed margin state of epoch `e` that lists the
/// request's id `keccak256(abi.encode(block.chainid, address(this), requestId))` among its approved
/// withdrawals, where `e > max(requestEpoch, withdrawalFloorEpoch[account])` and
/// `e + approvalWindow > registry.latestEpoch()` (an approval expires `approvalWindow` epochs later).
///
/// Approval rule (enforced by the validators, which the vault cannot check): every signed state
/// deducts EVERY open request of the account, on every chain, from the account's equity, and approves
/// the ones that predate its epoch if the account stays >= IM after deducting ALL of them and is not
/// liquidatable, or none (docs/clearing.md section 3).
/// So an approval given by an earlier state is already excluded from the equity of every later state,
/// and two requests on two chains can never both spend the same free collateral.
///
/// Liquidation: anyone may flag an account with its leaf in the LATEST published state if that leaf
/// carries the liquidatable flag; the account then cannot request withdrawals until a later latest
/// state without the flag clears it. Flagging raises `withdrawalFloorEpoch` to the flag epoch and
/// clearing never lowers it, so an approval given before the flag can never complete with a pre-flag
/// state, even after the flag is cleared.
///
/// Events (chain book): every book-relevant change (AssetRegistered, MinWithdrawalSet, Deposited,
/// WithdrawalRequested, WithdrawalCompleted, WithdrawalCancelled, LiquidationFlagged,
/// LiquidationCleared, DebtSwept, PayoutRequested, PayoutCompleted) increments `eventSequence` and carries the new value as its first non-indexed
/// field `sequence`, with absolute new values (balances after the change), so a reader detects a
/// missing log by a gap. The new `withdrawalFloorEpoch` after LiquidationFlagged is its `epoch`;
/// LiquidationCleared leaves it unchanged. OwnershipTransferred, LedgerSet, SettlementAssetSet and
/// PoolChanged (the pool is not an input of the margin state) carry no sequence.
///
/// Settlement (docs/clearing.md section 1): the owner links the chain's PositionLedger once (`setLedger`,
/// after `ledger.setVault(this)`) and sets one registered settlement asset once (`setSettlementAsset`,
/// e.g. USDC). Ledger cash converts to it at par: 1 micro-USD = 10**(decimals - 6) base units.
/// - `sweepDebt(account, units)` (anyone, while the account's ledger cash is negative) moves
///   min(units, the account's free settlement-asset balance, its debt at par) from its balance into the
///   payout pool and credits its ledger cash by the same micro-USD (whole micro-USD only: for more than
///   6 decimals the amount is rounded down to a multiple of 10**(decimals - 6)).
/// - `requestPayout(units)` (the account, out of its positive cash): a request in the same table as
///   withdrawals (same ids, cap, minimum, cancel, approval checks) with the payout flag set; nothing is
///   locked. Completing it needs, besides the approval, payoutPool >= units and ceil(units at par) <=
///   the account's ledger cash at completion; then the pool pays the tokens and the ledger cash falls by
///   that micro-USD. The validators deduct an open payout at par and approve it only while the account's
///   open payouts on this chain fit its cash here.
/// Invariant: the vault holds sum(balanceOf[.][token]) (+ payoutPool for the settlement asset) of every
/// token it lists.
///
/// Validators read everything through paginated views at a pinned block. Assets are assumed to be
/// plain ERC-20s (no fee on transfer, no rebasing): the vault credits the requested amount.
contract CollateralVault is Owned {
    using MarginLeafLib for MarginLeaf;

    enum RequestStatus { NONE, OPEN, COMPLETED, CANCELLED }

    struct Asset {
        bytes32 symbol;
        address token;
    }

    /// @notice A request as the views return it.
    struct WithdrawalRequest {
        uint256 id;
        address account;
        address token;
        uint256 amount;
        uint64 requestEpoch;
        uint64 requestTime;
        RequestStatus status;
        bool payout; // a payout of ledger cash in the settlement asset (else a withdrawal of a balance)
    }

    /// @dev Storage form (the id is the mapping key): three slots; `openIndexPlusOne` is the request's
    /// place in `openRequestIds` + 1 while it is open, 0 afterwards.
    struct StoredRequest {
        address account;
        uint64 requestEpoch;
        RequestStatus status;
        bool payout;
        address token;
        uint64 requestTime;
        uint32 openIndexPlusOne;
        uint256 amount;
    }

    /// @dev Storage form of one account's status: one slot.
    struct AccountStatus {
        bool listed;
        uint8 openRequests;
        uint64 frozenAtEpoch;
        uint64 liquidationStatusEpoch;
        uint64 withdrawalFloorEpoch;
    }

    uint256 public constant MAX_PAGE = 500;
    uint256 public constant MAX_BATCH = 200;
    uint256 public constant MAX_OPEN_REQUESTS_PER_ACCOUNT = 8;
    uint8 public constant MAX_SETTLEMENT_DECIMALS = 36;
    int256 private constant MAX_INT64 = type(int64).max;

    MarginStateRegistry public immutable registry;
    /// @notice Epochs an approval stays usable: completing with the state of epoch e needs
    /// e + approvalWindow > registry.latestEpoch() (>= 1).
    uint64 public immutable approvalWindow;

    /// @notice Sequence number of the last book-relevant event (0 before the first).
    uint64 public eventSequence;

    Asset[] private assets;
    mapping(address => bool) public isAsset;
    mapping(bytes32 => bool) private isSymbol;
    /// @notice Smallest amount (token units) of one withdrawal request of `token`.
    mapping(address => uint256) public minWithdrawal;
    address[] private accountList;
    mapping(address => AccountStatus) private statuses;
    mapping(address => mapping(address => uint256)) public balanceOf;
    mapping(address => mapping(address => uint256)) public lockedOf;

    uint256 public nextRequestId = 1;
    mapping(uint256 => StoredRequest) private requests;
    uint256[] private openRequestIds;

    /// @notice The chain's PositionLedger whose cash this vault settles (set once; 0 before).
    ISettlementLedger public ledger;
    /// @notice The asset ledger cash is paid out in and swept into (set once; 0 before).
    address public settlementAsset;
    uint8 public settlementDecimals;
    /// @notice Settlement-asset units swept from debtors and not yet paid out to winners.
    uint256 public payoutPool;

    event AssetRegistered(bytes32 indexed symbol, address indexed token, uint64 sequence, uint256 minWithdrawal);
    event MinWithdrawalSet(address indexed token, uint64 sequence, uint256 amount);
    event Deposited(address indexed account, address indexed token, uint64 sequence, uint256 amount,
        uint256 balance);
    event WithdrawalRequested(uint256 indexed requestId, address indexed account, address indexed token,
        uint64 sequence, uint256 amount, uint64 requestEpoch, uint64 requestTime);
    event WithdrawalCompleted(uint256 indexed requestId, address indexed account, address indexed token,
        uint64 sequence, uint256 amount, uint64 approvalEpoch, uint256 balance);
    event WithdrawalCancelled(uint256 indexed requestId, address indexed account, uint64 sequence);
    event LiquidationFlagged(address indexed account, uint64 indexed epoch, uint64 sequence, address flaggedBy);
    event LiquidationCleared(address indexed account, uint64 indexed epoch, uint64 sequence);
    event LedgerSet(address indexed ledger);
    event SettlementAssetSet(address indexed token, uint8 decimals);
    /// @notice `balance` is the account's new settlement-asset balance, `credit` the micro-USD added to its cash.
    event DebtSwept(address indexed account, address indexed token, uint64 sequence, uint256 amount, uint256 balance,
        uint256 credit);
    event PayoutRequested(uint256 indexed requestId, address indexed account, address indexed token,
        uint64 sequence, uint256 amount, uint64 requestEpoch, uint64 requestTime);
    /// @notice `debit` is the micro-USD taken from the account's ledger cash.
    event PayoutCompleted(uint256 indexed requestId, address indexed account, address indexed token,
        uint64 sequence, uint256 amount, uint64 approvalEpoch, uint256 debit);
    event PoolChanged(address indexed token, uint256 pool);

    error UnknownAsset(address token);
    error AssetAlreadyRegistered(address token);
    error SymbolAlreadyRegistered(bytes32 symbol);
    error InvalidApprovalWindow(uint64 approvalWindow);
    error ZeroAmount(string field);
    error LengthMismatch(string field, uint256 length, uint256 expected);
    error BatchTooLarge(uint256 size, uint256 max);
    error BelowMinimum(address token, uint256 amount, uint256 min);
    error TooManyOpenRequests(address account, uint256 max);
    error InsufficientFreeBalance(address account, address token, uint256 free, uint256 requested);
    error AccountFrozen(address account, uint64 frozenAtEpoch);
    error RequestNotOpen(uint256 requestId, RequestStatus status);
    error NotRequestOwner(uint256 requestId, address caller);
    error StateNotLater(uint256 requestId, uint64 epoch, uint64 requiredAfter);
    error ApprovalExpired(uint256 requestId, uint64 epoch, uint64 latestEpoch);
    error StateNotLatest(uint64 epoch, uint64 latestEpoch);
    error LeafAccountMismatch(address expected, address leafAccount);
    error InvalidLeafProof(address account, uint64 epoch);
    error WithdrawalNotApproved(uint256 requestId, bytes32 withdrawalId);
    error NotLiquidatable(address account, uint64 epoch);
    error StillLiquidatable(address account, uint64 epoch);
    error NotFrozen(address account);
    error StaleLiquidationState(address account, uint64 epoch, uint64 statusEpoch);
    error TokenTransferFailed(address token);
    error LedgerAlreadySet(address ledger);
    error LedgerNotLinked(address ledger);
    error SettlementAssetAlreadySet(address token);
    error SettlementNotConfigured();
    error InvalidDecimals(address token, uint8 decimals);
    error AmountOutOfRange(uint256 amount);
    error NoDebt(address account, int256 cash);
    error InsufficientCash(address account, int256 cash, uint256 required);
    error InsufficientPool(uint256 pool, uint256 requested);

    constructor(MarginStateRegistry registry_, uint64 approvalWindow_, address initialOwner) Owned(initialOwner) {
        if (address(registry_) == address(0)) revert ZeroAddress("registry");
        if (approvalWindow_ == 0) revert InvalidApprovalWindow(approvalWindow_);
        registry = registry_;
        approvalWindow = approvalWindow_;
    }

    // ---------------------------------------------------------------- admin

    /// @notice Registers `token` as collateral under a printable-ASCII `symbol` unique in this vault.
    function registerAsset(bytes32 symbol, address token, uint256 minWithdrawal_) external onlyOwner {
        if (token == address(0)) revert ZeroAddress("token");
        if (!AsciiKeyLib.isValid(symbol)) revert InvalidKey("symbol", symbol);
        if (isAsset[token]) revert AssetAlreadyRegistered(token);
        if (isSymbol[symbol]) revert SymbolAlreadyRegistered(symbol);
        isAsset[token] = true;
        isSymbol[symbol] = true;
        assets.push(Asset(symbol, token));
        minWithdrawal[token] = minWithdrawal_;
        emit AssetRegistered(symbol, token, ++eventSequence, minWithdrawal_);
    }

    /// @notice Sets the smallest withdrawal of `token`; open requests below it stay completable.
    function setMinWithdrawal(address token, uint256 amount) external onlyOwner {
        if (!isAsset[token]) revert UnknownAsset(token);
        minWithdrawal[token] = amount;
        emit MinWithdrawalSet(token, ++eventSequence, amount);
    }

    /// @notice Links the chain's PositionLedger once; the ledger must already name this vault.
    function setLedger(ISettlementLedger ledger_) external onlyOwner {
        if (address(ledger_) == address(0)) revert ZeroAddress("ledger");
        if (address(ledger) != address(0)) revert LedgerAlreadySet(address(ledger));
        if (ledger_.vault() != address(this)) revert LedgerNotLinked(address(ledger_));
        ledger = ledger_;
        emit LedgerSet(address(ledger_));
    }

    /// @notice Sets the settlement asset once: a registered asset with at most 36 decimals.
    function setSettlementAsset(address token) external onlyOwner {
        if (!isAsset[token]) revert UnknownAsset(token);
        if (settlementAsset != address(0)) revert SettlementAssetAlreadySet(settlementAsset);
        uint8 decimals = IERC20(token).decimals();
        if (decimals > MAX_SETTLEMENT_DECIMALS) revert InvalidDecimals(token, decimals);
        settlementAsset = token;
        settlementDecimals = decimals;
        emit SettlementAssetSet(token, decimals);
    }

    // ---------------------------------------------------------------- deposits

    function deposit(address token, uint256 amount) external {
        depositFor(msg.sender, token, amount);
    }

    /// @notice msg.sender pays `amount` of `token`; `account` is credited.
    function depositFor(address account, address token, uint256 amount) public {
        if (!isAsset[token]) revert UnknownAsset(token);
        credit(account, token, amount);
        callToken(token, abi.encodeCall(IERC20.transferFrom, (msg.sender, address(this), amount)));
    }

    /// @notice msg.sender pays the sum of `amounts` in one transfer; each account is credited its amount.
    function depositForMany(address token, address[] calldata accounts, uint256[] calldata amounts) external {
        if (!isAsset[token]) revert UnknownAsset(token);
        if (amounts.length != accounts.length) revert LengthMismatch("amounts", amounts.length, accounts.length);
        if (accounts.length > MAX_BATCH) revert BatchTooLarge(accounts.length, MAX_BATCH);
        uint256 total = 0;
        for (uint256 i = 0; i < accounts.length; ++i) {
            credit(accounts[i], token, amounts[i]);
            total += amounts[i];
        }
        if (total == 0) revert ZeroAmount("amounts");
        callToken(token, abi.encodeCall(IERC20.transferFrom, (msg.sender, address(this), total)));
    }

    // ---------------------------------------------------------------- withdrawals

    function requestWithdrawal(address token, uint256 amount) external returns (uint256 requestId) {
        if (!isAsset[token]) revert UnknownAsset(token);
        AccountStatus storage status = admitRequest(token, amount);
        uint256 locked = lockedOf[msg.sender][token];
        uint256 free = balanceOf[msg.sender][token] - locked;
        if (free < amount) revert InsufficientFreeBalance(msg.sender, token, free, amount);
        lockedOf[msg.sender][token] = locked + amount;
        status.openRequests += 1;
        uint64 epoch;
        uint64 time;
        (requestId, epoch, time) = storeRequest(token, amount, false);
        emit WithdrawalRequested(requestId, msg.sender, token, ++eventSequence, amount, epoch, time);
    }

    /// @notice Asks for `amount` units of the settlement asset out of the caller's positive ledger cash
    /// (ceil(amount at par) micro-USD <= cash now); completes like a withdrawal, from the payout pool.
    function requestPayout(uint256 amount) external returns (uint256 requestId) {
        address token = settlementAsset;
        if (token == address(0) || address(ledger) == address(0)) revert SettlementNotConfigured();
        if (amount > uint256(MAX_INT64)) revert AmountOutOfRange(amount);
        AccountStatus storage status = admitRequest(token, amount);
        validateCash(msg.sender, toMicroCeil(amount));
        status.openRequests += 1;
        uint64 epoch;
        uint64 time;
        (requestId, epoch, time) = storeRequest(token, amount, true);
        emit PayoutRequested(requestId, msg.sender, token, ++eventSequence, amount, epoch, time);
    }

    /// @notice Anyone moves settlement asset of a debtor (ledger cash < 0) into the payout pool: at most
    /// `units`, its free balance and its debt at par; its cash rises by the same micro-USD. Returns the
    /// amount moved (token units).
    function sweepDebt(address account, uint256 units) external returns (uint256 amount) {
        address token = settlementAsset;
        if (token == address(0) || address(ledger) == address(0)) revert SettlementNotConfigured();
        int256 cash = ledger.cashOf(account);
        if (cash >= 0) revert NoDebt(account, cash);
        uint256 debt = uint256(-cash);
        uint256 balance = balanceOf[account][token];
        uint256 free = balance - lockedOf[account][token];
        amount = units < free ? units : free;
        uint8 decimals = settlementDecimals;
        uint256 micro;
        if (decimals >= 6) {
            uint256 step = 10 ** (decimals - 6);
            micro = amount / step;
            if (micro > debt) micro = debt;
            amount = micro * step;
        } else {
            uint256 step = 10 ** (6 - decimals);
            uint256 most = debt / step;
            if (amount > most) amount = most;
            micro = amount * step;
        }
        if (amount == 0) revert ZeroAmount("units");
        balance -= amount;
        balanceOf[account][token] = balance;
        uint256 pool = payoutPool + amount;
        payoutPool = pool;
        ledger.settleCash(account, int256(micro));
        emit DebtSwept(account, token, ++eventSequence, amount, balance, micro);
        emit PoolChanged(token, pool);
    }

    /// @dev The checks of every new request of the caller (withdrawal or payout): a non-zero amount at least
    /// the asset's minimum, an account not frozen, below the open-request cap. Returns its status.
    function admitRequest(address token, uint256 amount) private view returns (AccountStatus storage status) {
        if (amount == 0) revert ZeroAmount("amount");
        uint256 min = minWithdrawal[token];
        if (amount < min) revert BelowMinimum(token, amount, min);
        status = statuses[msg.sender];
        if (status.frozenAtEpoch != 0) revert AccountFrozen(msg.sender, status.frozenAtEpoch);
        if (status.openRequests >= MAX_OPEN_REQUESTS_PER_ACCOUNT) {
            revert TooManyOpenRequests(msg.sender, MAX_OPEN_REQUESTS_PER_ACCOUNT);
        }
    }

    /// @notice Completes request `requestId` with the account's leaf in the signed state of `epoch`.
    function completeWithdrawal(
        uint256 requestId,
        uint64 epoch,
        MarginLeaf calldata leaf,
        bytes32[] calldata proof
    ) external {
        StoredRequest storage request = requests[requestId];
        validateCompletionEpoch(requestId, request, epoch);
        validateLeaf(request.account, epoch, leaf, proof);
        bytes32 id = withdrawalId(requestId);
        if (!leaf.approves(id)) revert WithdrawalNotApproved(requestId, id);
        if (request.payout) {
            payOutCash(requestId, request, epoch);
        } else {
            payOut(requestId, request, epoch);
        }
    }

    /// @notice The requester gives up an open request; the amount is unlocked.
    function cancelWithdrawal(uint256 requestId) external {
        StoredRequest storage request = requests[requestId];
        if (request.status != RequestStatus.OPEN) revert RequestNotOpen(requestId, request.status);
        if (request.account != msg.sender) revert NotRequestOwner(requestId, msg.sender);
        request.status = RequestStatus.CANCELLED;
        removeOpenRequest(request);
        statuses[msg.sender].openRequests -= 1;
        if (!request.payout) lockedOf[msg.sender][request.token] -= request.amount;
        emit WithdrawalCancelled(requestId, msg.sender, ++eventSequence);
    }

    // ---------------------------------------------------------------- liquidation hook

    /// @notice Anyone may flag an account whose leaf in the LATEST signed state carries the liquidatable
    /// flag; raises the account's withdrawal floor to `epoch` (never lowered afterwards).
    function flagLiquidation(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
    {
        AccountStatus storage status = statuses[account];
        validateLiquidationState(account, epoch, status.liquidationStatusEpoch);
        validateLeaf(account, epoch, leaf, proof);
        if (!leaf.isLiquidatable()) revert NotLiquidatable(account, epoch);
        status.liquidationStatusEpoch = epoch;
        status.frozenAtEpoch = epoch;
        if (epoch > status.withdrawalFloorEpoch) status.withdrawalFloorEpoch = epoch;
        emit LiquidationFlagged(account, epoch, ++eventSequence, msg.sender);
    }

    /// @notice Unfreezes an account with its leaf in the LATEST signed state, later than the flag's,
    /// that no longer carries the flag; the withdrawal floor stays where the flag put it.
    function clearLiquidation(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
    {
        AccountStatus storage status = statuses[account];
        if (status.frozenAtEpoch == 0) revert NotFrozen(account);
        validateLiquidationState(account, epoch, status.liquidationStatusEpoch);
        validateLeaf(account, epoch, leaf, proof);
        if (leaf.isLiquidatable()) revert StillLiquidatable(account, epoch);
        status.liquidationStatusEpoch = epoch;
        status.frozenAtEpoch = 0;
        emit LiquidationCleared(account, epoch, ++eventSequence);
    }

    // ---------------------------------------------------------------- views

    /// @notice Micro-USD at par of `amount` units of the settlement asset, rounded up (what a payout debits).
    function toMicroCeil(uint256 amount) public view returns (uint256) {
        uint8 decimals = settlementDecimals;
        if (decimals >= 6) {
            uint256 step = 10 ** (decimals - 6);
            return (amount + step - 1) / step;
        }
        return amount * 10 ** (6 - decimals);
    }

    /// @notice Id the validators put in a leaf to approve request `requestId` of this vault.
    function withdrawalId(uint256 requestId) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), requestId));
    }

    function isAccount(address account) external view returns (bool) {
        return statuses[account].listed;
    }

    /// @notice Epoch of the state that flagged the account liquidatable; 0 = not frozen.
    function frozenAtEpoch(address account) external view returns (uint64) {
        return statuses[account].frozenAtEpoch;
    }

    /// @notice Epoch of the last state used to flag or clear the account; older states are refused.
    function liquidationStatusEpoch(address account) external view returns (uint64) {
        return statuses[account].liquidationStatusEpoch;
    }

    /// @notice Withdrawals of `account` complete only with states of later epochs (the last flag's epoch).
    function withdrawalFloorEpoch(address account) external view returns (uint64) {
        return statuses[account].withdrawalFloorEpoch;
    }

    function openRequestCountOf(address account) external view returns (uint256) {
        return statuses[account].openRequests;
    }

    function assetCount() external view returns (uint256) {
        return assets.length;
    }

    function getAssets(uint256 offset, uint256 limit) external view returns (Asset[] memory page) {
        uint256 n = pageLength(assets.length, offset, limit);
        page = new Asset[](n);
        for (uint256 i = 0; i < n; ++i) page[i] = assets[offset + i];
    }

    function accountCount() external view returns (uint256) {
        return accountList.length;
    }

    function getAccounts(uint256 offset, uint256 limit) external view returns (address[] memory page) {
        uint256 n = pageLength(accountList.length, offset, limit);
        page = new address[](n);
        for (uint256 i = 0; i < n; ++i) page[i] = accountList[offset + i];
    }

    /// @notice Balances and locked amounts of a page of accounts; inner arrays follow the asset order.
    function getBalancesPage(uint256 offset, uint256 limit)
        external
        view
        returns (address[] memory page, uint256[][] memory balances, uint256[][] memory locked)
    {
        uint256 n = pageLength(accountList.length, offset, limit);
        uint256 m = assets.length;
        page = new address[](n);
        balances = new uint256[][](n);
        locked = new uint256[][](n);
        for (uint256 i = 0; i < n; ++i) {
            address account = accountList[offset + i];
            page[i] = account;
            balances[i] = new uint256[](m);
            locked[i] = new uint256[](m);
            for (uint256 j = 0; j < m; ++j) {
                balances[i][j] = balanceOf[account][assets[j].token];
                locked[i][j] = lockedOf[account][assets[j].token];
            }
        }
    }

    function getRequest(uint256 requestId) public view returns (WithdrawalRequest memory) {
        StoredRequest storage r = requests[requestId];
        return WithdrawalRequest(requestId, r.account, r.token, r.amount, r.requestEpoch, r.requestTime, r.status,
            r.payout);
    }

    function openRequestCount() external view returns (uint256) {
        return openRequestIds.length;
    }

    function getOpenRequests(uint256 offset, uint256 limit)
        external
        view
        returns (WithdrawalRequest[] memory page)
    {
        uint256 n = pageLength(openRequestIds.length, offset, limit);
        page = new WithdrawalRequest[](n);
        for (uint256 i = 0; i < n; ++i) page[i] = getRequest(openRequestIds[offset + i]);
    }

    // ---------------------------------------------------------------- internals

    function credit(address account, address token, uint256 amount) private {
        if (account == address(0)) revert ZeroAddress("account");
        if (amount == 0) revert ZeroAmount("amount");
        AccountStatus storage status = statuses[account];
        if (!status.listed) {
            status.listed = true;
            accountList.push(account);
        }
        uint256 balance = balanceOf[account][token] + amount;
        balanceOf[account][token] = balance;
        emit Deposited(account, token, ++eventSequence, amount, balance);
    }

    /// @dev Appends an open request of msg.sender (the caller counted it in `openRequests`).
    function storeRequest(address token, uint256 amount, bool payout)
        private
        returns (uint256 requestId, uint64 epoch, uint64 time)
    {
        requestId = nextRequestId++;
        epoch = registry.latestEpoch();
        time = uint64(block.timestamp);
        openRequestIds.push(requestId);
        requests[requestId] = StoredRequest(msg.sender, epoch, RequestStatus.OPEN, payout, token, time,
            uint32(openRequestIds.length), amount);
    }

    /// @dev The account's ledger cash covers `micro` micro-USD.
    function validateCash(address account, uint256 micro) private view {
        int256 cash = ledger.cashOf(account);
        if (cash < 0 || uint256(cash) < micro) revert InsufficientCash(account, cash, micro);
    }

    /// @dev Pays an approved payout from the pool: the ledger cash falls by its micro-USD at par.
    function payOutCash(uint256 requestId, StoredRequest storage request, uint64 epoch) private {
        address account = request.account;
        address token = request.token;
        uint256 amount = request.amount;
        uint256 pool = payoutPool;
        if (pool < amount) revert InsufficientPool(pool, amount);
        uint256 micro = toMicroCeil(amount);
        validateCash(account, micro);
        request.status = RequestStatus.COMPLETED;
        removeOpenRequest(request);
        statuses[account].openRequests -= 1;
        pool -= amount;
        payoutPool = pool;
        ledger.settleCash(account, -int256(micro));
        callToken(token, abi.encodeCall(IERC20.transfer, (account, amount)));
        emit PayoutCompleted(requestId, account, token, ++eventSequence, amount, epoch, micro);
        emit PoolChanged(token, pool);
    }

    /// @dev The request is open, `epoch` is later than its epoch and the account's withdrawal floor, and
    /// the approval of `epoch` has not expired.
    function validateCompletionEpoch(uint256 requestId, StoredRequest storage request, uint64 epoch) private view {
        if (request.status != RequestStatus.OPEN) revert RequestNotOpen(requestId, request.status);
        uint64 requiredAfter = request.requestEpoch;
        uint64 floor = statuses[request.account].withdrawalFloorEpoch;
        if (floor > requiredAfter) requiredAfter = floor;
        if (epoch <= requiredAfter) revert StateNotLater(requestId, epoch, requiredAfter);
        uint64 latest = registry.latestEpoch();
        if (uint256(epoch) + approvalWindow <= latest) revert ApprovalExpired(requestId, epoch, latest);
    }

    function payOut(uint256 requestId, StoredRequest storage request, uint64 epoch) private {
        request.status = RequestStatus.COMPLETED;
        removeOpenRequest(request);
        address account = request.account;
        address token = request.token;
        uint256 amount = request.amount;
        statuses[account].openRequests -= 1;
        lockedOf[account][token] -= amount;
        uint256 balance = balanceOf[account][token] - amount;
        balanceOf[account][token] = balance;
        callToken(token, abi.encodeCall(IERC20.transfer, (account, amount)));
        emit WithdrawalCompleted(requestId, account, token, ++eventSequence, amount, epoch, balance);
    }

    /// @dev Flag and clear accept only the latest published state, later than the last one used.
    function validateLiquidationState(address account, uint64 epoch, uint64 statusEpoch) private view {
        if (epoch <= statusEpoch) revert StaleLiquidationState(account, epoch, statusEpoch);
        uint64 latest = registry.latestEpoch();
        if (epoch != latest) revert StateNotLatest(epoch, latest);
    }

    function validateLeaf(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        private
        view
    {
        if (leaf.account != account) revert LeafAccountMismatch(account, leaf.account);
        if (!registry.verifyLeaf(epoch, leaf, proof)) revert InvalidLeafProof(account, epoch);
    }

    /// @dev Accepts tokens that return true or nothing (USDT style); a token revert is bubbled up.
    function callToken(address token, bytes memory data) private {
        if (token.code.length == 0) revert TokenTransferFailed(token);
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok && ret.length != 0) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        if (!ok || (ret.length != 0 && (ret.length != 32 || abi.decode(ret, (uint256)) != 1))) {
            revert TokenTransferFailed(token);
        }
    }

    /// @dev Swap-and-pop out of `openRequestIds`, keeping the moved request's index.
    function removeOpenRequest(StoredRequest storage request) private {
        uint256 index = request.openIndexPlusOne - 1;
        uint256 last = openRequestIds[openRequestIds.length - 1];
        openRequestIds[index] = last;
        requests[last].openIndexPlusOne = uint32(index + 1);
        openRequestIds.pop();
        request.openIndexPlusOne = 0;
    }

    function pageLength(uint256 total, uint256 offset, uint256 limit) private pure returns (uint256) {
        if (limit > MAX_PAGE) limit = MAX_PAGE;
        if (offset >= total) return 0;
        uint256 rest = total - offset;
        return rest < limit ? rest : limit;
    }
}
