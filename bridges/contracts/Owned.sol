// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Single-owner access control shared by the clearing contracts.
/// @notice The owner (the deployer, later governance) registers assets, instruments, venues and
/// publishers. Ownership moves in one step; the zero address is refused.
abstract contract Owned {
    address public owner;

    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error NotOwner(address caller);
    error ZeroAddress(string field);

    constructor(address initialOwner) {
        if (initialOwner == address(0)) revert ZeroAddress("initialOwner");
        owner = initialOwner;
        emit OwnershipTransferred(address(0), initialOwner);
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        _;
    }

    function transferOwnership(address newOwner) external onlyOwner {
        if (newOwner == address(0)) revert ZeroAddress("newOwner");
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }
}
