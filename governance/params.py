"""Risk parameter sets versioned like forks: an immutable schedule of (activation_epoch, RiskParams).

Invariants: versions are sorted by strictly increasing activation epoch; the first one activates at
epoch 0 (genesis = RRA1 unless the network's genesis says otherwise); a version is never mutated, a
new one is appended (`with_version`) and returns a new schedule. The active version at epoch e is the
last one whose activation epoch <= e (execution-specs `fork_criteria.py` style, by epoch).
`compute_params_hash(p) = keccak256(DST_PARAMS || encode_params(p))` over the canonical fixed-point
encoding of the risk module; it is what the signed margin state commits to. Nothing is persisted.
"""

from __future__ import annotations

from dataclasses import dataclass

from Crypto.Hash import keccak

from governance.errors import InvalidGovernanceInput, NoActiveParams
from risk.params import RRA1, RiskParams, encode_params

DST_PARAMS = b"CLEARING-RISK-PARAMS-V1"


def compute_keccak256(data: bytes) -> bytes:
    """keccak256 (Ethereum's, not SHA3-256) of `data`."""
    h = keccak.new(digest_bits=256)
    h.update(data)
    return h.digest()


def compute_params_hash(params: RiskParams) -> bytes:
    """Domain-separated hash of the canonical encoding of a parameter set (32 bytes)."""
    return compute_keccak256(DST_PARAMS + encode_params(params))


@dataclass(frozen=True)
class ParameterVersion:
    """One parameter set and the epoch from which it is active; `proposal_id` 0 means genesis."""

    activation_epoch: int
    params: RiskParams
    params_hash: bytes
    proposal_id: int = 0


def make_version(activation_epoch: int, params: RiskParams, proposal_id: int = 0) -> ParameterVersion:
    if activation_epoch < 0:
        raise InvalidGovernanceInput("activation_epoch", f"must be >= 0, got {activation_epoch}")
    return ParameterVersion(activation_epoch, params, compute_params_hash(params), proposal_id)


@dataclass(frozen=True)
class ParameterSchedule:
    """Immutable, epoch-ordered parameter versions (forks)."""

    versions: tuple[ParameterVersion, ...]

    def __post_init__(self) -> None:
        if not self.versions or self.versions[0].activation_epoch != 0:
            raise InvalidGovernanceInput("versions", "the first version must activate at epoch 0")
        for prev, cur in zip(self.versions, self.versions[1:], strict=False):
            if cur.activation_epoch <= prev.activation_epoch:
                raise InvalidGovernanceInput(
                    "versions", f"activation epochs must increase ({prev.activation_epoch} then "
                                f"{cur.activation_epoch})")

    def get_active_version(self, epoch: int) -> ParameterVersion:
        """The version in force at `epoch`: the last whose activation epoch <= epoch."""
        if epoch < 0:
            raise NoActiveParams(f"epoch must be >= 0, got {epoch}")
        active = self.versions[0]
        for v in self.versions:
            if v.activation_epoch > epoch:
                break
            active = v
        return active

    def get_active_params(self, epoch: int) -> RiskParams:
        return self.get_active_version(epoch).params

    def get_active_params_hash(self, epoch: int) -> bytes:
        return self.get_active_version(epoch).params_hash

    def get_latest_activation_epoch(self) -> int:
        return self.versions[-1].activation_epoch

    def with_version(self, version: ParameterVersion) -> ParameterSchedule:
        """A new schedule with `version` appended (its activation epoch must be after the latest)."""
        return ParameterSchedule((*self.versions, version))


def get_genesis_schedule(params: RiskParams = RRA1) -> ParameterSchedule:
    """The schedule of a fresh network: `params` (RRA1 by default) from epoch 0."""
    return ParameterSchedule((make_version(0, params),))
