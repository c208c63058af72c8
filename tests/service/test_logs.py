"""node.logs: one JSON object per line, and no secret reaches a log line by any path."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from node.logs import REDACTED, clear_secrets, redact, register_secret, setup_logging

SHARE = 0x1F2E3D4C5B6A79881F2E3D4C5B6A79881F2E3D4C5B6A79881F2E3D4C5B6A7988
OPERATOR = bytes.fromhex("ab" * 32)


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    setup_logging("DEBUG", "json", stream)
    register_secret(SHARE)
    register_secret(OPERATOR)
    yield stream
    clear_secrets()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


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
