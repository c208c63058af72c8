// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Governance of the clearing layer (home chain).
/// @notice Holds the validator set (by version), proposals that carry either the COMPLETE canonical
/// risk parameter encoding (kind 1) or a validator-set change (kind 2), and one vote per validator
/// per proposal. Approval: with n the set size when the proposal was created, votes cast >= ceil(2n/3)
/// (quorum) and yes >= ceil(2n/3); only members of the set current at creation vote.
/// Voting periods: 1 ..= `maxVotingPeriodBlocks` blocks, fixed at deployment by the network (at most
/// VOTING_PERIOD_CAP_BLOCKS; a few days of blocks on a public chain, e.g. 21,600 = 3 days of 12 s).
/// Validator-set changes: no lock. Any member may propose one while others are open, so no single
/// member can block set changes (not even its own removal) by keeping a change open: the rules are
/// - at proposal, the change is checked against the CURRENT set (a typo fails fast);
/// - `execute(id)` (permissionless) applies an approved change after its voting period and within
///   `maxVotingPeriodBlocks` blocks after it (ExecutionWindowClosed), computed against the set current
///   AT EXECUTION: a removal of a non-member, an addition of a member, a new size or a threshold out of
///   range revert (InvalidRemoval, InvalidAddition, InvalidSetSize, InvalidThreshold) and change nothing;
///   the payload's threshold is absolute, checked against the size the change leads to;
/// - executed changes apply in approval order, by (endBlock, id): a change that ended before the last
///   executed one (or at the same block with a smaller id) can no longer be executed
///   (ChangeSuperseded): when several approved changes are executable they apply oldest first, and once
///   a newer one is executed it wins over every older one left unexecuted;
/// - activation epochs strictly increase along executed changes (ActivationNotIncreasing), so the
///   nodes' signing-set schedule follows the executed changes one by one.
/// Each execution creates the next set version; `getProposal(id).resultingSetVersion` and
/// `.executedBlock` record it. The nodes derive the signing sets from the EXECUTED changes only, in that
/// order, and take a change's activation epoch only when it lies beyond the epoch of its execution block
/// plus their margin; a change approved but never executed changes nothing.
/// @dev The contract does not interpret parameter payloads nor epochs; the node's tally validates the
/// parameter set and the activation epoch (defence in depth: it also re-checks every vote and replays
/// every executed change).
contract Governance {
    uint8 public constant KIND_PARAMETER_SET = 1;
    uint8 public constant KIND_VALIDATOR_SET = 2;
    uint8 public constant CHOICE_YES = 1;
    uint8 public constant CHOICE_NO = 2;
    uint8 public constant CHOICE_ABSTAIN = 3;
    uint256 public constant MAX_PAYLOAD_BYTES = 4096;
    /// @notice Largest `maxVotingPeriodBlocks` a deployment may choose (two weeks of 12-second blocks).
    uint256 public constant VOTING_PERIOD_CAP_BLOCKS = 100_800;
    uint256 public constant MAX_VALIDATORS = 128;
    /// @notice Proposals one member may have live at once: a proposal is live until its execution window
    /// closes (`endBlock + maxVotingPeriodBlocks`). Bounds what the nodes re-read each epoch, so one
    /// member cannot stall the network with proposal spam.
    uint256 public constant MAX_LIVE_PROPOSALS_PER_MEMBER = 8;

    struct Proposal {
        uint64 id;
        uint8 kind;
        address proposer;
        bytes payload;
        uint64 createdBlock;
        uint64 endBlock;
        uint64 activationEpoch;
        uint32 setVersion;
        uint32 setSize;
        uint32 yes;
        uint32 no;
        uint32 abstain;
        bool executed;
        uint32 resultingSetVersion;
        uint64 executedBlock;
    }

    struct Vote {
        address voter;
        uint8 choice;
        uint64 blockNumber;
    }

    /// The caller is not a member of the validator set that governs this action.
    error NotValidator(address account, uint32 setVersion);
    /// The validator already voted on this proposal.
    error AlreadyVoted(uint256 id, address voter);
    /// No proposal with this id.
    error UnknownProposal(uint256 id);
    /// The kind is neither PARAMETER_SET (1) nor VALIDATOR_SET (2).
    error InvalidKind(uint8 kind);
    /// The choice is not yes (1), no (2) or abstain (3).
    error InvalidChoice(uint8 choice);
    /// The payload is empty or longer than MAX_PAYLOAD_BYTES.
    error InvalidPayloadLength(uint256 length);
    /// The voting period is zero or longer than maxVotingPeriodBlocks (or, at deployment, that bound is
    /// zero or above VOTING_PERIOD_CAP_BLOCKS).
    error InvalidVotingPeriod(uint256 blocks, uint256 maxBlocks);
    /// Votes are accepted only up to and including the end block.
    error VotingClosed(uint256 id, uint64 endBlock);
    /// Execution is possible only after the end block.
    error VotingNotEnded(uint256 id, uint64 endBlock);
    /// The proposal did not reach quorum and approval.
    error NotApproved(uint256 id);
    /// The proposal was already executed.
    error AlreadyExecuted(uint256 id);
    /// Only validator-set proposals are executed on chain.
    error NotValidatorSetProposal(uint256 id);
    /// The proposer already has MAX_LIVE_PROPOSALS_PER_MEMBER proposals whose execution window is open.
    error TooManyLiveProposals(address proposer, uint256 limit);
    /// The execution window (maxVotingPeriodBlocks blocks after the end block) is over.
    error ExecutionWindowClosed(uint256 id, uint256 lastBlock);
    /// A change approved later (by end block, then id) was already executed.
    error ChangeSuperseded(uint256 id, uint256 executedId);
    /// The activation epoch is not after that of the last executed change.
    error ActivationNotIncreasing(uint64 activationEpoch, uint64 lastActivationEpoch);
    /// An added validator is the zero address, already a member, or listed twice.
    error InvalidAddition(address account);
    /// A removed validator is not a member or listed twice.
    error InvalidRemoval(address account);
    /// The new set would be empty or larger than MAX_VALIDATORS.
    error InvalidSetSize(uint256 size);
    /// The threshold must satisfy 2n/3 < t <= n for the new set size n.
    error InvalidThreshold(uint256 threshold, uint256 size);

    event ProposalCreated(
        uint256 indexed id, uint8 kind, address indexed proposer, uint64 endBlock, uint64 activationEpoch
    );
    event VoteCast(uint256 indexed id, address indexed voter, uint8 choice);
    event ProposalExecuted(uint256 indexed id, uint32 newSetVersion);
    event ValidatorSetChanged(uint32 indexed version, address[] members, uint32 threshold);

    uint64 public immutable maxVotingPeriodBlocks;
    uint32 public setVersion;
    /// @notice The last executed validator-set change (0: none yet).
    uint256 public lastExecutedChange;
    mapping(uint32 => address[]) private _members;
    mapping(uint32 => mapping(address => bool)) private _isMemberAt;
    mapping(uint32 => uint32) private _thresholdAt;
    Proposal[] private _proposals;
    mapping(uint256 => Vote[]) private _votes;
    mapping(uint256 => mapping(address => bool)) private _hasVoted;
    /// Per proposer, the last block of each of its live proposals' execution windows (pruned on propose).
    mapping(address => uint64[]) private _liveUntil;

    constructor(address[] memory genesisValidators, uint32 genesisThreshold, uint64 maxVotingPeriodBlocks_) {
        if (maxVotingPeriodBlocks_ == 0 || maxVotingPeriodBlocks_ > VOTING_PERIOD_CAP_BLOCKS) {
            revert InvalidVotingPeriod(maxVotingPeriodBlocks_, VOTING_PERIOD_CAP_BLOCKS);
        }
        maxVotingPeriodBlocks = maxVotingPeriodBlocks_;
        uint256 n = genesisValidators.length;
        if (n == 0 || n > MAX_VALIDATORS) revert InvalidSetSize(n);
        if (3 * uint256(genesisThreshold) <= 2 * n || genesisThreshold > n) {
            revert InvalidThreshold(genesisThreshold, n);
        }
        for (uint256 i = 0; i < n; i++) {
            address a = genesisValidators[i];
            if (a == address(0) || _isMemberAt[0][a]) revert InvalidAddition(a);
            _isMemberAt[0][a] = true;
            _members[0].push(a);
        }
        _thresholdAt[0] = genesisThreshold;
        emit ValidatorSetChanged(0, genesisValidators, genesisThreshold);
    }

    // ---------------------------------------------------------------- transactions

    function propose(uint8 kind, bytes calldata payload, uint64 votingPeriodBlocks, uint64 activationEpoch)
        external
        returns (uint256 id)
    {
        uint32 version = setVersion;
        if (!_isMemberAt[version][msg.sender]) revert NotValidator(msg.sender, version);
        if (kind != KIND_PARAMETER_SET && kind != KIND_VALIDATOR_SET) revert InvalidKind(kind);
        if (payload.length == 0 || payload.length > MAX_PAYLOAD_BYTES) {
            revert InvalidPayloadLength(payload.length);
        }
        if (votingPeriodBlocks == 0 || votingPeriodBlocks > maxVotingPeriodBlocks) {
            revert InvalidVotingPeriod(votingPeriodBlocks, maxVotingPeriodBlocks);
        }
        id = _proposals.length + 1;
        if (kind == KIND_VALIDATOR_SET) _computeNewSet(payload); // fail fast; re-checked at execution
        uint64 endBlock = uint64(block.number) + votingPeriodBlocks;
        _admitLiveProposal(msg.sender, endBlock + maxVotingPeriodBlocks);
        _proposals.push(
            Proposal({
                id: uint64(id),
                kind: kind,
                proposer: msg.sender,
                payload: payload,
                createdBlock: uint64(block.number),
                endBlock: endBlock,
                activationEpoch: activationEpoch,
                setVersion: version,
                setSize: uint32(_members[version].length),
                yes: 0,
                no: 0,
                abstain: 0,
                executed: false,
                resultingSetVersion: 0,
                executedBlock: 0
            })
        );
        emit ProposalCreated(id, kind, msg.sender, endBlock, activationEpoch);
    }

    /// @notice How many proposals of `proposer` are live at this block (see MAX_LIVE_PROPOSALS_PER_MEMBER).
    function liveProposalsOf(address proposer) external view returns (uint256 live) {
        uint64[] storage until = _liveUntil[proposer];
        for (uint256 i = 0; i < until.length; i++) {
            if (until[i] >= block.number) live += 1;
        }
    }

    function _admitLiveProposal(address proposer, uint64 liveUntil) private {
        uint64[] storage until = _liveUntil[proposer];
        uint256 i = 0;
        while (i < until.length) {
            if (until[i] < block.number) {
                until[i] = until[until.length - 1];
                until.pop();
            } else {
                i++;
            }
        }
        if (until.length >= MAX_LIVE_PROPOSALS_PER_MEMBER) {
            revert TooManyLiveProposals(proposer, MAX_LIVE_PROPOSALS_PER_MEMBER);
        }
        until.push(liveUntil);
    }

    function vote(uint256 id, uint8 choice) external {
        Proposal storage p = _getProposal(id);
        if (choice < CHOICE_YES || choice > CHOICE_ABSTAIN) revert InvalidChoice(choice);
        if (block.number > p.endBlock) revert VotingClosed(id, p.endBlock);
        if (!_isMemberAt[p.setVersion][msg.sender]) revert NotValidator(msg.sender, p.setVersion);
        if (_hasVoted[id][msg.sender]) revert AlreadyVoted(id, msg.sender);
        _hasVoted[id][msg.sender] = true;
        _votes[id].push(Vote({voter: msg.sender, choice: choice, blockNumber: uint64(block.number)}));
        if (choice == CHOICE_YES) p.yes += 1;
        else if (choice == CHOICE_NO) p.no += 1;
        else p.abstain += 1;
        emit VoteCast(id, msg.sender, choice);
    }

    /// Apply an approved validator-set change to the current set (permissionless; see the contract notice
    /// for the window, the order and the checks).
    function execute(uint256 id) external {
        Proposal storage p = _getProposal(id);
        if (p.kind != KIND_VALIDATOR_SET) revert NotValidatorSetProposal(id);
        if (p.executed) revert AlreadyExecuted(id);
        if (block.number <= p.endBlock) revert VotingNotEnded(id, p.endBlock);
        uint256 lastBlock = uint256(p.endBlock) + maxVotingPeriodBlocks;
        if (block.number > lastBlock) revert ExecutionWindowClosed(id, lastBlock);
        if (!_isApproved(p)) revert NotApproved(id);
        uint256 lastId = lastExecutedChange;
        if (lastId != 0) {
            Proposal storage last = _proposals[lastId - 1];
            if (p.endBlock < last.endBlock || (p.endBlock == last.endBlock && id < lastId)) {
                revert ChangeSuperseded(id, lastId);
            }
            if (p.activationEpoch <= last.activationEpoch) {
                revert ActivationNotIncreasing(p.activationEpoch, last.activationEpoch);
            }
        }
        (address[] memory newMembers, uint32 threshold) = _computeNewSet(p.payload);
        uint32 version = setVersion + 1;
        for (uint256 i = 0; i < newMembers.length; i++) {
            _isMemberAt[version][newMembers[i]] = true;
        }
        _members[version] = newMembers;
        _thresholdAt[version] = threshold;
        setVersion = version;
        p.executed = true;
        p.resultingSetVersion = version;
        p.executedBlock = uint64(block.number);
        lastExecutedChange = id;
        emit ProposalExecuted(id, version);
        emit ValidatorSetChanged(version, newMembers, threshold);
    }

    // ---------------------------------------------------------------- views

    function proposalCount() external view returns (uint256) {
        return _proposals.length;
    }

    function getProposal(uint256 id) external view returns (Proposal memory) {
        return _getProposal(id);
    }

    function getVotes(uint256 id) external view returns (Vote[] memory) {
        _getProposal(id);
        return _votes[id];
    }

    function validatorsAt(uint32 version) external view returns (address[] memory) {
        return _members[version];
    }

    function thresholdAt(uint32 version) external view returns (uint32) {
        return _thresholdAt[version];
    }

    function isValidatorAt(uint32 version, address account) external view returns (bool) {
        return _isMemberAt[version][account];
    }

    function isApproved(uint256 id) external view returns (bool) {
        return _isApproved(_getProposal(id));
    }

    // ---------------------------------------------------------------- internals

    function _getProposal(uint256 id) private view returns (Proposal storage) {
        if (id == 0 || id > _proposals.length) revert UnknownProposal(id);
        return _proposals[id - 1];
    }

    function _isApproved(Proposal storage p) private view returns (bool) {
        uint256 needed = (2 * uint256(p.setSize) + 2) / 3; // ceil(2n/3)
        uint256 cast = uint256(p.yes) + p.no + p.abstain;
        return cast >= needed && p.yes >= needed;
    }

    /// Decode and check a change against the current set: abi.encode(address[] add, address[] remove,
    /// uint256 threshold). Returns the new member list (old order minus removals, then additions).
    function _computeNewSet(bytes memory payload) private view returns (address[] memory, uint32) {
        (address[] memory add, address[] memory remove, uint256 threshold) =
            abi.decode(payload, (address[], address[], uint256));
        uint32 version = setVersion;
        address[] storage old = _members[version];
        for (uint256 i = 0; i < remove.length; i++) {
            if (!_isMemberAt[version][remove[i]]) revert InvalidRemoval(remove[i]);
            for (uint256 j = 0; j < i; j++) {
                if (remove[j] == remove[i]) revert InvalidRemoval(remove[i]);
            }
        }
        for (uint256 i = 0; i < add.length; i++) {
            if (add[i] == address(0) || _isMemberAt[version][add[i]]) revert InvalidAddition(add[i]);
            for (uint256 j = 0; j < i; j++) {
                if (add[j] == add[i]) revert InvalidAddition(add[i]);
            }
        }
        uint256 size = old.length - remove.length + add.length;
        if (size == 0 || size > MAX_VALIDATORS) revert InvalidSetSize(size);
        if (3 * threshold <= 2 * size || threshold > size) revert InvalidThreshold(threshold, size);
        address[] memory next = new address[](size);
        uint256 k = 0;
        for (uint256 i = 0; i < old.length; i++) {
            bool removed = false;
            for (uint256 j = 0; j < remove.length; j++) {
                if (remove[j] == old[i]) removed = true;
            }
            if (!removed) next[k++] = old[i];
        }
        for (uint256 i = 0; i < add.length; i++) {
            next[k++] = add[i];
        }
        return (next, uint32(threshold));
    }
}
