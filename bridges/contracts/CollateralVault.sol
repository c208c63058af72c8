// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Owned} from "./Owned.sol";
import {MarginLeaf, MarginLeafLib} from "./MarginLeaf.sol";
import {MarginStateRegistry} from "./MarginStateRegistry.sol";

interface IERC20 {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title Collateral vault: ERC-20 deposits per account, two-phase withdrawals, liquidation flag.
/// @notice A withdrawal is requested (the amount is locked, the registry's latest epoch recorded) and
/// completes only with a signed margin state of a LATER epoch whose leaf for the account lists the
/// request's id `keccak256(abi.encode(block.chainid, address(this), requestId))` among its approved
/// withdrawals. The validators approve a request only if the account stays >= IM after deducting all
/// approved withdrawals across chains (off-chain, in the node). A leaf flagged liquidatable freezes
/// new requests until a later state clears it. Validators read everything through paginated views at
/// a pinned block. Assets are assumed to be plain ERC-20s (no fee on transfer, no rebasing): the vault
/// credits the requested amount.
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
        RequestStatus status;
    }

    /// @dev Storage form: account, epoch and status share one slot (the id is the mapping key).
    struct StoredRequest {
        address account;
        uint64 requestEpoch;
        RequestStatus status;
        address token;
        uint256 amount;
    }

    uint256 public constant MAX_PAGE = 500;

    MarginStateRegistry public immutable registry;

    Asset[] private assets;
    mapping(address => bool) public isAsset;
    address[] private accounts;
    mapping(address => bool) public isAccount;
    mapping(address => mapping(address => uint256)) public balanceOf;
    mapping(address => mapping(address => uint256)) public lockedOf;
    /// @notice Epoch of the state that flagged the account liquidatable; 0 = not frozen.
    mapping(address => uint64) public frozenAtEpoch;
    /// @notice Epoch of the last state used to flag or clear the account; older states are refused,
    /// so a stale liquidatable leaf cannot re-freeze an account that a later state cleared.
    mapping(address => uint64) public liquidationStatusEpoch;

    uint256 public nextRequestId = 1;
    mapping(uint256 => StoredRequest) private requests;
    uint256[] private openRequestIds;
    mapping(uint256 => uint256) private openIndexPlusOne;

    event AssetRegistered(bytes32 indexed symbol, address indexed token);
    event Deposited(address indexed account, address indexed token, uint256 amount, uint256 balance);
    event WithdrawalRequested(uint256 indexed requestId, address indexed account, address indexed token,
        uint256 amount, uint64 requestEpoch);
    event WithdrawalCompleted(uint256 indexed requestId, address indexed account, address indexed token,
        uint256 amount, uint64 approvalEpoch);
    event WithdrawalCancelled(uint256 indexed requestId, address indexed account);
    event LiquidationFlagged(address indexed account, uint64 indexed epoch, address flaggedBy);
    event LiquidationCleared(address indexed account, uint64 indexed epoch);

    error UnknownAsset(address token);
    error AssetAlreadyRegistered(address token);
    error ZeroAmount(string field);
    error InsufficientFreeBalance(address account, address token, uint256 free, uint256 requested);
    error AccountFrozen(address account, uint64 frozenAtEpoch);
    error RequestNotOpen(uint256 requestId, RequestStatus status);
    error NotRequestOwner(uint256 requestId, address caller);
    error StateNotLater(uint256 requestId, uint64 epoch, uint64 requiredAfter);
    error LeafAccountMismatch(address expected, address leafAccount);
    error InvalidLeafProof(address account, uint64 epoch);
    error WithdrawalNotApproved(uint256 requestId, bytes32 withdrawalId);
    error NotLiquidatable(address account, uint64 epoch);
    error StillLiquidatable(address account, uint64 epoch);
    error NotFrozen(address account);
    error StaleLiquidationState(address account, uint64 epoch, uint64 statusEpoch);
    error TokenTransferFailed(address token);

    constructor(MarginStateRegistry registry_, address initialOwner) Owned(initialOwner) {
        if (address(registry_) == address(0)) revert ZeroAddress("registry");
        registry = registry_;
    }

    // ---------------------------------------------------------------- admin

    function registerAsset(bytes32 symbol, address token) external onlyOwner {
        if (token == address(0)) revert ZeroAddress("token");
        if (isAsset[token]) revert AssetAlreadyRegistered(token);
        isAsset[token] = true;
        assets.push(Asset(symbol, token));
        emit AssetRegistered(symbol, token);
    }

    // ---------------------------------------------------------------- deposits and withdrawals

    function deposit(address token, uint256 amount) external {
        if (!isAsset[token]) revert UnknownAsset(token);
        if (amount == 0) revert ZeroAmount("amount");
        if (!isAccount[msg.sender]) {
            isAccount[msg.sender] = true;
            accounts.push(msg.sender);
        }
        uint256 balance = balanceOf[msg.sender][token] + amount;
        balanceOf[msg.sender][token] = balance;
        callToken(token, abi.encodeCall(IERC20.transferFrom, (msg.sender, address(this), amount)));
        emit Deposited(msg.sender, token, amount, balance);
    }

    function requestWithdrawal(address token, uint256 amount) external returns (uint256 requestId) {
        if (!isAsset[token]) revert UnknownAsset(token);
        if (amount == 0) revert ZeroAmount("amount");
        if (frozenAtEpoch[msg.sender] != 0) revert AccountFrozen(msg.sender, frozenAtEpoch[msg.sender]);
        uint256 free = balanceOf[msg.sender][token] - lockedOf[msg.sender][token];
        if (free < amount) revert InsufficientFreeBalance(msg.sender, token, free, amount);
        lockedOf[msg.sender][token] += amount;
        requestId = nextRequestId++;
        uint64 epoch = registry.latestEpoch();
        requests[requestId] = StoredRequest(msg.sender, epoch, RequestStatus.OPEN, token, amount);
        openRequestIds.push(requestId);
        openIndexPlusOne[requestId] = openRequestIds.length;
        emit WithdrawalRequested(requestId, msg.sender, token, amount, epoch);
    }

    /// @notice Completes request `requestId` with the account's leaf in the signed state of `epoch`.
    function completeWithdrawal(
        uint256 requestId,
        uint64 epoch,
        MarginLeaf calldata leaf,
        bytes32[] calldata proof
    ) external {
        StoredRequest storage request = requests[requestId];
        if (request.status != RequestStatus.OPEN) revert RequestNotOpen(requestId, request.status);
        uint64 requiredAfter = request.requestEpoch;
        uint64 frozenAt = frozenAtEpoch[request.account];
        if (frozenAt > requiredAfter) requiredAfter = frozenAt;
        if (epoch <= requiredAfter) revert StateNotLater(requestId, epoch, requiredAfter);
        validateLeaf(request.account, epoch, leaf, proof);
        bytes32 id = withdrawalId(requestId);
        if (!leaf.approves(id)) revert WithdrawalNotApproved(requestId, id);

        request.status = RequestStatus.COMPLETED;
        removeOpenRequest(requestId);
        address account = request.account;
        address token = request.token;
        uint256 amount = request.amount;
        lockedOf[account][token] -= amount;
        balanceOf[account][token] -= amount;
        callToken(token, abi.encodeCall(IERC20.transfer, (account, amount)));
        emit WithdrawalCompleted(requestId, account, token, amount, epoch);
    }

    /// @notice The requester gives up an open request; the amount is unlocked.
    function cancelWithdrawal(uint256 requestId) external {
        StoredRequest storage request = requests[requestId];
        if (request.status != RequestStatus.OPEN) revert RequestNotOpen(requestId, request.status);
        if (request.account != msg.sender) revert NotRequestOwner(requestId, msg.sender);
        request.status = RequestStatus.CANCELLED;
        removeOpenRequest(requestId);
        lockedOf[msg.sender][request.token] -= request.amount;
        emit WithdrawalCancelled(requestId, msg.sender);
    }

    // ---------------------------------------------------------------- liquidation hook

    /// @notice Anyone may flag an account whose leaf in a signed state carries the liquidatable flag.
    function flagLiquidation(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
    {
        uint64 statusEpoch = liquidationStatusEpoch[account];
        if (epoch <= statusEpoch) revert StaleLiquidationState(account, epoch, statusEpoch);
        validateLeaf(account, epoch, leaf, proof);
        if (!leaf.isLiquidatable()) revert NotLiquidatable(account, epoch);
        liquidationStatusEpoch[account] = epoch;
        frozenAtEpoch[account] = epoch;
        emit LiquidationFlagged(account, epoch, msg.sender);
    }

    /// @notice Unfreezes an account with a later signed leaf that no longer carries the flag.
    function clearLiquidation(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
    {
        if (frozenAtEpoch[account] == 0) revert NotFrozen(account);
        uint64 statusEpoch = liquidationStatusEpoch[account];
        if (epoch <= statusEpoch) revert StaleLiquidationState(account, epoch, statusEpoch);
        validateLeaf(account, epoch, leaf, proof);
        if (leaf.isLiquidatable()) revert StillLiquidatable(account, epoch);
        liquidationStatusEpoch[account] = epoch;
        frozenAtEpoch[account] = 0;
        emit LiquidationCleared(account, epoch);
    }

    // ---------------------------------------------------------------- views

    /// @notice Id the validators put in a leaf to approve request `requestId` of this vault.
    function withdrawalId(uint256 requestId) public view returns (bytes32) {
        return keccak256(abi.encode(block.chainid, address(this), requestId));
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
        return accounts.length;
    }

    function getAccounts(uint256 offset, uint256 limit) external view returns (address[] memory page) {
        uint256 n = pageLength(accounts.length, offset, limit);
        page = new address[](n);
        for (uint256 i = 0; i < n; ++i) page[i] = accounts[offset + i];
    }

    /// @notice Balances and locked amounts of a page of accounts; inner arrays follow the asset order.
    function getBalancesPage(uint256 offset, uint256 limit)
        external
        view
        returns (address[] memory page, uint256[][] memory balances, uint256[][] memory locked)
    {
        uint256 n = pageLength(accounts.length, offset, limit);
        uint256 m = assets.length;
        page = new address[](n);
        balances = new uint256[][](n);
        locked = new uint256[][](n);
        for (uint256 i = 0; i < n; ++i) {
            address account = accounts[offset + i];
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
        return WithdrawalRequest(requestId, r.account, r.token, r.amount, r.requestEpoch, r.status);
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

    function removeOpenRequest(uint256 requestId) private {
        uint256 index = openIndexPlusOne[requestId] - 1;
        uint256 last = openRequestIds[openRequestIds.length - 1];
        openRequestIds[index] = last;
        openIndexPlusOne[last] = index + 1;
        openRequestIds.pop();
        delete openIndexPlusOne[requestId];
    }

    function pageLength(uint256 total, uint256 offset, uint256 limit) private pure returns (uint256) {
        if (limit > MAX_PAGE) limit = MAX_PAGE;
        if (offset >= total) return 0;
        uint256 rest = total - offset;
        return rest < limit ? rest : limit;
    }
}
