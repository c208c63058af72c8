"""Peer score table: penalties by reason, capped rewards, bans and their expiry, bounded size."""

from __future__ import annotations

from node.p2p.scoring import MAX_SCORE, PeerScores, ScoreParams


def test_rejections_lower_the_score_until_a_ban() -> None:
    scores = PeerScores(ScoreParams(ban_threshold=-50.0, ban_seconds=10.0))
    assert not scores.process_rejected("p", "malformed", now=0.0)  # -25
    assert scores.process_rejected("p", "invalid_partial", now=1.0)  # -65: banned now
    assert scores.is_banned("p", now=5.0)
    assert not scores.process_rejected("p", "malformed", now=6.0)  # already banned: not "newly"
    assert not scores.is_banned("p", now=11.5)  # expired, score reset
    assert scores.get_score("p") == 0.0
    assert scores.rejections == {"malformed": 2, "invalid_partial": 1}


def test_out_of_window_is_dropped_without_penalty() -> None:
    scores = PeerScores()
    for _ in range(100):
        assert not scores.process_rejected("p", "out_of_window", now=0.0)
    assert scores.get_score("p") == 0.0 and not scores.is_banned("p", 0.0)


def test_rewards_are_capped_and_table_is_bounded() -> None:
    scores = PeerScores(ScoreParams(max_peers=3))
    for _ in range(1000):
        scores.process_accepted("a")
    assert scores.get_score("a") == MAX_SCORE
    for peer in ("b", "c", "d"):
        scores.process_accepted(peer)
    assert set(scores.get_snapshot()) == {"b", "c", "d"}
