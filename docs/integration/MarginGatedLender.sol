// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

// Built against the published interface only: copy `bridges/contracts/interfaces/` next to this file.
import {IMarginRegistry} from "./interfaces/IMarginRegistry.sol";
import {MarginLeaf} from "./interfaces/MarginLeaf.sol";

/// @title Example consumer: a lending venue that lends against an account's cross-chain free collateral.
/// @notice What a lending or perp venue writes on top of the clearing layer: it reads an account's free
/// collateral (equity - initial margin, micro-USD) from a signed margin state, refuses a new borrow
/// above it, and lets anyone flag a liquidatable account with a proof. Leaves and proofs come from any
/// validator (gRPC `GetMargin`); the registry checks them against the signed root, so the caller is
/// not trusted. Example only: the loan is booked in micro-USD, no asset moves.
contract MarginGatedLender {
    IMarginRegistry public immutable registry;
    /// @notice How many epochs behind the registry's latest a state may be when it is used.
    uint64 public immutable maxEpochAge;

    mapping(address => uint256) public borrowedMicroUsd;
    /// @notice The epoch of the state that proved the account liquidatable (0: never flagged).
    mapping(address => uint64) public flaggedAtEpoch;

    event Borrowed(address indexed account, uint256 amountMicroUsd, uint64 epoch, int256 freeCollateralMicroUsd);
    event LiquidatableFlagged(address indexed account, uint64 epoch, address indexed by);

    /// @notice The state of `epoch` is older than `maxEpochAge` epochs before the registry's latest.
    error StaleEpoch(uint64 epoch, uint64 latestEpoch);
    /// @notice The new borrow would exceed the account's free collateral minus what it already borrowed.
    error AboveFreeCollateral(uint256 requestedMicroUsd, int256 availableMicroUsd);
    /// @notice The proven leaf does not flag the account liquidatable.
    error NotLiquidatable(address account, uint64 epoch);
    /// @notice An amount does not fit int256.
    error AmountTooLarge(uint256 amount);

    constructor(IMarginRegistry registry_, uint64 maxEpochAge_) {
        registry = registry_;
        maxEpochAge = maxEpochAge_;
    }

    /// @notice Free collateral (equity - initial margin, micro-USD) of `account` in the state of `epoch`;
    /// reverts the registry's AccountMismatch / EpochNotRetained / InvalidProof unless the leaf is proven.
    function freeCollateral(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        public
        view
        returns (int256)
    {
        (int256 equity, uint256 im,) = registry.marginOf(account, epoch, leaf, proof);
        return equity - toInt(im);
    }

    /// @notice Borrow `amountMicroUsd` against the caller's free collateral in a recent signed state.
    function borrow(uint256 amountMicroUsd, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
    {
        requireRecent(epoch);
        int256 free = freeCollateral(msg.sender, epoch, leaf, proof);
        int256 available = free - toInt(borrowedMicroUsd[msg.sender]);
        if (toInt(amountMicroUsd) > available) revert AboveFreeCollateral(amountMicroUsd, available);
        borrowedMicroUsd[msg.sender] += amountMicroUsd;
        emit Borrowed(msg.sender, amountMicroUsd, epoch, free);
    }

    /// @notice Anyone may flag `account` with a recent state whose leaf says it is liquidatable.
    function flagLiquidatable(address account, uint64 epoch, MarginLeaf calldata leaf, bytes32[] calldata proof)
        external
    {
        requireRecent(epoch);
        if (!registry.isLiquidatable(account, epoch, leaf, proof)) revert NotLiquidatable(account, epoch);
        flaggedAtEpoch[account] = epoch;
        emit LiquidatableFlagged(account, epoch, msg.sender);
    }

    function requireRecent(uint64 epoch) private view {
        uint64 latest = registry.latestEpoch();
        if (epoch + maxEpochAge < latest) revert StaleEpoch(epoch, latest);
    }

    function toInt(uint256 amount) private pure returns (int256) {
        if (amount > uint256(type(int256).max)) revert AmountTooLarge(amount);
        return int256(amount);
    }
}
