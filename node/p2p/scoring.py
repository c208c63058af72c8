"""Peer score table: demotes peers that forward rejected gossip, and marks them for disconnection.

py-libp2p's built-in gossipsub scoring is inert with default weights, so the node keeps its own
table. Every rejected message costs the forwarding peer a penalty that depends on why it was
rejected; accepted messages earn a small, capped reward. A peer whose score falls to or below
`ban_threshold` is banned (the host blacklists and disconnects it) until the ban expires. The table is
bounded (`max_peers`, least recently seen peers dropped first). Held in memory only.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# Penalty per rejection reason; anything unlisted costs DEFAULT_PENALTY.
PENALTIES: dict[str, float] = {
    "malformed": 25.0,
    "bad_signature": 25.0,
    "not_member": 25.0,
    "invalid_partial": 40.0,
    "equivocation": 40.0,
    "peer_binding": 40.0,
    "out_of_window": 0.0,  # honest laggards and relays produce these: dropped, never penalised
    "unknown_keyset": 0.0,  # a key set this node has not learned yet (during a validator-set change)
    "oversize": 25.0,
}
DEFAULT_PENALTY = 10.0
REWARD = 0.5
MAX_SCORE = 20.0


@dataclass(frozen=True)
class ScoreParams:
    """Bounds of the score table."""

    ban_threshold: float = -100.0
    ban_seconds: float = 600.0
    max_peers: int = 1024


class PeerScores:
    """Score per peer id (str); not thread-safe: used from the trio loop only."""

    def __init__(self, params: ScoreParams | None = None) -> None:
        self.params = params or ScoreParams()
        self._scores: OrderedDict[str, float] = OrderedDict()
        self._banned_until: dict[str, float] = {}
        self.rejections: dict[str, int] = {}

    def _touch(self, peer: str) -> float:
        score = self._scores.pop(peer, 0.0)
        self._scores[peer] = score
        while len(self._scores) > self.params.max_peers:
            self._scores.popitem(last=False)
        return score

    def process_accepted(self, peer: str) -> None:
        self._scores[peer] = min(MAX_SCORE, self._touch(peer) + REWARD)

    def process_rejected(self, peer: str, reason: str, now: float) -> bool:
        """Apply the penalty for `reason`; returns True when the peer has just become banned."""
        penalty = PENALTIES.get(reason, DEFAULT_PENALTY)
        self.rejections[reason] = self.rejections.get(reason, 0) + 1
        if penalty == 0.0:
            return False
        score = self._touch(peer) - penalty
        self._scores[peer] = score
        if score <= self.params.ban_threshold and not self.is_banned(peer, now):
            self._banned_until[peer] = now + self.params.ban_seconds
            return True
        return False

    def get_score(self, peer: str) -> float:
        return self._scores.get(peer, 0.0)

    def is_banned(self, peer: str, now: float) -> bool:
        until = self._banned_until.get(peer)
        if until is None:
            return False
        if now >= until:
            del self._banned_until[peer]
            self._scores[peer] = 0.0
            return False
        return True

    def get_snapshot(self) -> dict[str, float]:
        return dict(self._scores)
