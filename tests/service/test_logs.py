"""node.logs: one JSON object per line with fields as keys, libraries through the same handler,
repeats counted and summarised, and no secret reaches a log line by any path."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from node.logs import REDACTED, RepeatLimitingHandler, clear_secrets, redact, register_secret, setup_logging

SHARE = 0x1F2E3D4C5B6A79881F2E3D4C5B6A79881F2E3D4C5B6A79881F2E3D4C5B6A7988
OPERATOR = bytes.fromhex("ab" * 32)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    libraries = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate) for n in ("libp2p", "web3")}
    saved = (list(root.handlers), root.level, logging.lastResort)
    yield
    clear_secrets()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    logging.lastResort = saved[2]
    logging.captureWarnings(False)
    for name, (level, propagate) in libraries.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).propagate = propagate


@pytest.fixture
def lines(restore_logging: None) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream)
    register_secret(SHARE)
    register_secret(OPERATOR)
    yield stream


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_fields(lines: io.StringIO) -> None:
    logging.getLogger("node.x").info("epoch %d signed", 5, extra={"epoch": 5, "root": b"\x01\x02"})
    (rec,) = records(lines)
    assert (rec["level"], rec["logger"], rec["msg"], rec["epoch"], rec["root"]) == (
        "INFO", "node.x", "epoch 5 signed", 5, "0x0102")
    assert rec["ts"].endswith("Z")


def test_registered_secrets_never_appear(lines: io.StringIO) -> None:
    log = logging.getLogger("node.x")
    log.info("share is %d", SHARE)
    log.info("share hex %x and key 0x%s", SHARE, OPERATOR.hex())
    log.warning("upper %s", OPERATOR.hex().upper())
    log.info("in a field", extra={"detail": f"k={OPERATOR.hex()}", "blob": OPERATOR})
    try:
        raise ValueError(f"bad share {SHARE:064x}")
    except ValueError:
        log.exception("failed")
    text = lines.getvalue()
    for form in (str(SHARE), format(SHARE, "x"), OPERATOR.hex(), OPERATOR.hex().upper()):
        assert form not in text
    assert text.count(REDACTED) >= 6
    assert len(records(lines)) == 5


def test_secret_named_fields_and_pairs_are_redacted(lines: io.StringIO) -> None:
    logging.getLogger("node.x").info("connecting with passphrase=hunter2 token: abc123 epoch=4",
                                     extra={"keystore_passphrase": "hunter2", "p2p_seed": "zz", "epoch": 4})
    (rec,) = records(lines)
    assert "hunter2" not in json.dumps(rec) and "abc123" not in json.dumps(rec) and "zz" not in json.dumps(rec)
    assert rec["keystore_passphrase"] == REDACTED and rec["p2p_seed"] == REDACTED and rec["epoch"] == 4
    assert "epoch=4" in rec["msg"]


def test_redact_leaves_ordinary_text() -> None:
    assert redact("epoch 12 root 0x00ff") == "epoch 12 root 0x00ff"


def test_containers_and_bytes_in_fields_stay_json(lines: io.StringIO) -> None:
    logging.getLogger("node.x").warning("round expired", extra={
        "epoch": 9, "partials": {"ab": [1, 2]}, "digests": (b"\x01", b"\x02"), "signers": {3, 1}})
    (rec,) = records(lines)
    assert rec["msg"] == "round expired" and rec["epoch"] == 9
    assert rec["partials"] == {"ab": [1, 2]} and rec["digests"] == ["0x01", "0x02"] and rec["signers"] == [1, 3]


def test_libraries_that_turn_propagation_off_are_formatted_too(lines: io.StringIO) -> None:
    """py-libp2p sets `propagate = False` on its logger at import (after setup_logging ran) and INFO on
    some modules: its warnings still come out as JSON lines, its INFO records not at all."""
    library = logging.getLogger("libp2p")
    library.propagate = False
    module = logging.getLogger("libp2p.network.auto_connector")
    module.setLevel(logging.INFO)
    logging.getLogger("libp2p.pubsub.gossipsub").warning("GRAFT: ignoring request from direct peer %s", "12D3Koo")
    module.info("Auto-connected to peer %s", "12D3Koo")
    logging.getLogger("web3.providers").warning("slow provider")
    logging.getLogger("web3.providers").info("noise")
    got = records(lines)
    assert [(r["logger"], r["level"]) for r in got] == [("libp2p.pubsub.gossipsub", "WARNING"),
                                                        ("web3.providers", "WARNING")]
    assert got[0]["msg"] == "GRAFT: ignoring request from direct peer 12D3Koo"
    module.setLevel(logging.NOTSET)


def test_repeats_are_counted_and_summarised_once_per_window() -> None:
    stream = io.StringIO()
    handler = RepeatLimitingHandler(stream, window_s=10.0)
    from node.logs import JsonFormatter

    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("node.repeat-test")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    clock = iter([100.0, 101.0, 102.0, 103.0, 104.0, 111.0, 112.0, 130.0])

    def emit(msg: str, **fields: object) -> None:
        record = log.makeRecord(log.name, logging.INFO, __file__, 1, msg, (), None, extra=fields)
        record.created = next(clock)
        log.handle(record)

    try:
        emit("inputs unavailable", epoch=7, reason="pin not ready")   # t=100: written
        emit("inputs unavailable", epoch=7, reason="pin not ready")   # held back
        emit("inputs unavailable", epoch=7, reason="head moved")      # held back (same key: logger, level, text, epoch)
        emit("inputs unavailable", epoch=8, reason="pin not ready")   # another epoch: written
        emit("catch-up failed", reason="no peer")                     # t=104: written
        emit("inputs unavailable", epoch=7, reason="late")            # t=111: window of epoch 7 closed: summary, then this
        emit("catch-up failed", reason="no peer")                     # t=112: held back (window until 114)
        handler.flush_repeats()
    finally:
        log.removeHandler(handler)
    got = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [(r["msg"], r.get("epoch"), r.get("repeats")) for r in got] == [
        ("inputs unavailable", 7, None), ("inputs unavailable", 8, None), ("catch-up failed", None, None),
        ("inputs unavailable", 7, 2), ("inputs unavailable", 7, None), ("catch-up failed", None, 1)]
    assert got[3]["reason"] == "head moved" and got[3]["window_s"] == 10.0


def test_text_format_appends_fields(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("INFO", "text", stream)
    register_secret(SHARE)
    logging.getLogger("node.x").info("publish failed", extra={"epoch": 3, "reason": f"share {SHARE}"})
    line = stream.getvalue().strip()
    assert line.endswith(f'publish failed epoch=3 reason="share {REDACTED}"'), line
