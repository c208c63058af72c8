"""node.logs: one JSON object per line with fields as keys, libraries through the same handler,
repeats counted and summarised, and no secret reaches a log line by any path."""

from __future__ import annotations

import ast
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.logs import (
    REDACTED,
    JsonFormatter,
    RepeatLimitingHandler,
    clear_secrets,
    is_volatile_field,
    redact,
    register_secret,
    setup_logging,
)

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


@pytest.fixture
def repeat_log() -> Iterator[tuple[io.StringIO, RepeatLimitingHandler, logging.Logger]]:
    stream = io.StringIO()
    handler = RepeatLimitingHandler(stream, window_s=10.0)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("node.repeat-test")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield stream, handler, log
    log.removeHandler(handler)
    log.propagate = True
    log.setLevel(logging.NOTSET)


def emit_at(log: logging.Logger, created: float, msg: str, *args: object, level: int = logging.INFO,
            **fields: object) -> None:
    record = log.makeRecord(log.name, level, __file__, 1, msg, args, None, extra=fields)
    record.created = created
    log.handle(record)


def test_repeats_are_counted_and_summarised_once_per_window(repeat_log) -> None:
    stream, handler, log = repeat_log
    emit_at(log, 100.0, "inputs unavailable", epoch=7, reason="pin not ready")  # written
    emit_at(log, 101.0, "inputs unavailable", epoch=7, reason="pin not ready")  # the same event: held back
    emit_at(log, 102.0, "inputs unavailable", epoch=7, reason="head 41 moved")  # the reason is free text: held back
    emit_at(log, 103.0, "inputs unavailable", epoch=8, reason="pin not ready")  # another epoch: written
    emit_at(log, 104.0, "catch-up failed", reason="no peer")                    # written
    emit_at(log, 111.0, "inputs unavailable", epoch=7, reason="late")           # window closed: summary, then this
    emit_at(log, 112.0, "catch-up failed", reason="no peer")                    # held back (window until 114)
    handler.flush_repeats()
    got = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [(r["msg"], r.get("epoch"), r.get("reason"), r.get("repeats")) for r in got] == [
        ("inputs unavailable", 7, "pin not ready", None), ("inputs unavailable", 8, "pin not ready", None),
        ("catch-up failed", None, "no peer", None), ("inputs unavailable", 7, "head 41 moved", 2),
        ("inputs unavailable", 7, "late", None), ("catch-up failed", None, "no peer", 1)]
    assert got[3]["window_s"] == 10.0


def test_repeat_key_holds_the_fields_so_distinct_events_in_one_epoch_all_print(repeat_log) -> None:
    """An ALERT from two peers, or reorgs on two chains, in one epoch are two events: both are written; the
    same peer's ALERT again is a repeat, also when only a volatile field (a score, a duration, the free-text
    reason) differs."""
    stream, handler, log = repeat_log
    alert = "ALERT partial on another digest"
    emit_at(log, 100.0, alert, level=logging.WARNING, epoch=5, peer="12D3KooA", digest=b"\x01", score=-1.0)
    emit_at(log, 100.5, alert, level=logging.WARNING, epoch=5, peer="12D3KooB", digest=b"\x01", score=-1.0)
    emit_at(log, 101.0, alert, level=logging.WARNING, epoch=5, peer="12D3KooA", digest=b"\x01", score=-2.0,
            reason="digest 0x01 at block 40")
    emit_at(log, 101.5, alert, level=logging.WARNING, epoch=5, peer="12D3KooA", digest=b"\x01", score=-3.0)
    emit_at(log, 102.0, "reorg: book rolled back", level=logging.WARNING, chain_id=31337, block=40)
    emit_at(log, 102.5, "reorg: book rolled back", level=logging.WARNING, chain_id=31338, block=40)
    emit_at(log, 103.0, "reorg: book rolled back", level=logging.WARNING, chain_id=31337, block=40)
    emit_at(log, 103.5, "dkg dealers sent no deal", epoch=5, dealers=[2, 3], delay_s=0.1)
    emit_at(log, 104.0, "dkg dealers sent no deal", epoch=5, dealers=[2], delay_s=0.2)
    emit_at(log, 104.5, "dkg dealers sent no deal", epoch=5, dealers=[2], delay_s=0.3)  # containers compare by value
    emit_at(log, 105.0, "GRAFT: ignoring request from direct peer %s", "12D3KooA", level=logging.WARNING)
    emit_at(log, 105.5, "GRAFT: ignoring request from direct peer %s", "12D3KooB", level=logging.WARNING)
    emit_at(log, 106.0, "GRAFT: ignoring request from direct peer %s", "12D3KooA", level=logging.WARNING)
    handler.flush_repeats()
    got = [json.loads(x) for x in stream.getvalue().splitlines()]
    written = [(r["msg"], r.get("peer"), r.get("chain_id"), r.get("dealers"), r.get("repeats")) for r in got]
    assert written == [
        (alert, "12D3KooA", None, None, None), (alert, "12D3KooB", None, None, None),
        ("reorg: book rolled back", None, 31337, None, None), ("reorg: book rolled back", None, 31338, None, None),
        ("dkg dealers sent no deal", None, None, [2, 3], None), ("dkg dealers sent no deal", None, None, [2], None),
        ("GRAFT: ignoring request from direct peer 12D3KooA", None, None, None, None),
        ("GRAFT: ignoring request from direct peer 12D3KooB", None, None, None, None),
        # the summaries, at flush: the last suppressed record of each repeated key
        (alert, "12D3KooA", None, None, 2), ("reorg: book rolled back", None, 31337, None, 1),
        ("dkg dealers sent no deal", None, None, [2], 1),
        ("GRAFT: ignoring request from direct peer 12D3KooA", None, None, None, 1)]
    assert got[8]["score"] == -3.0 and got[10]["delay_s"] == 0.3


def test_volatile_fields_are_times_durations_scores_and_free_text() -> None:
    assert all(is_volatile_field(n) for n in ("delay_s", "t_e_s", "retry_in_s", "ts", "score", "window_s",
                                               "reason", "error"))
    assert not any(is_volatile_field(n) for n in ("epoch", "peer", "chain_id", "digest", "keyset_id", "keys", "s"))


def test_text_format_appends_fields(restore_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("INFO", "text", stream)
    register_secret(SHARE)
    logging.getLogger("node.x").info("publish failed", extra={"epoch": 3, "reason": f"share {SHARE}"})
    line = stream.getvalue().strip()
    assert line.endswith(f'publish failed epoch=3 reason="share {REDACTED}"'), line


# --- every log call of the code passes its values as fields ---------------------------------------------

REPO = Path(__file__).resolve().parents[2]
SOURCE_PACKAGES = ("node", "bridges", "governance", "risk", "clearing_client", "scripts", "bench")
LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical"})
LOGGER_NAMES = frozenset({"log", "LOG", "logger", "LOGGER", "_log", "_logger", "logging"})
# No exception: a value that belongs in a log line is a field (`extra=`), so the message stays a constant
# text that the repeat limiter and a log query can group on.
ALLOWED: frozenset[tuple[str, int]] = frozenset()


def get_receiver_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):  # self.log, module.LOG
        return node.attr
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger":
        return "log"
    return None


def get_formatted_message_problem(message: ast.expr) -> str | None:
    """Why this message argument carries values (a %-template, an f-string, `.format`, `+` or `%`), or None."""
    if isinstance(message, ast.Constant) and isinstance(message.value, str):
        return "a %-template" if "%" in message.value else None
    if isinstance(message, ast.JoinedStr):
        return "an f-string"
    if isinstance(message, ast.Call) and isinstance(message.func, ast.Attribute) and message.func.attr == "format":
        return "a .format() call"
    if isinstance(message, ast.BinOp):
        return "an expression built with an operator"
    if isinstance(message, ast.IfExp):
        return get_formatted_message_problem(message.body) or get_formatted_message_problem(message.orelse)
    return None


def find_formatted_log_calls(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and get_receiver_name(node.func.value) in LOGGER_NAMES):
            continue
        method, args = node.func.attr, node.args
        if method == "log":
            args = args[1:]  # log.log(level, message, ...)
        elif method not in LOG_METHODS:
            continue
        if not args:
            continue
        problem = get_formatted_message_problem(args[0])
        if problem is None and len(args) > 1:
            problem = "positional %-arguments"
        if problem is not None:
            yield node.lineno, problem


def test_find_formatted_log_calls_sees_each_form() -> None:
    source = """
log.info("epoch %d signed", epoch)
LOG.warning(f"chain {cid}")
self.log.error("peer {}".format(p))
logging.getLogger(__name__).info("a " + b)
log.log(logging.INFO, "x %s", y)
log.info("a" if ok else "b %d" % n)
log.info("ok", extra={"epoch": epoch})
log.log(logging.WARNING if bad else logging.INFO, "fine" if bad else "also fine", extra={"n": 1})
math.log(x / y)
"""
    assert [line for line, _ in find_formatted_log_calls(ast.parse(source))] == [2, 3, 4, 5, 6, 7]


def test_log_messages_are_constant_with_values_as_fields() -> None:
    found = []
    for package in SOURCE_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            for line, problem in find_formatted_log_calls(ast.parse(path.read_text(), filename=relative)):
                if (relative, line) not in ALLOWED:
                    found.append(f"{relative}:{line}: message is {problem}; pass the values with extra={{...}}")
    assert not found, "\n".join(found)


# --- the key ceremony's secrets ------------------------------------------------------------------------

def test_ceremony_registers_its_share_and_the_opened_dealt_shares(restore_logging: None) -> None:
    """`clearingd dkg` registers what the DKG produced: the share and every plaintext of a share sealed to
    this operator; after that no log line, message, field or traceback, shows any of them."""
    from node.cli.dkg import register_ceremony_secrets
    from node.crypto.dkg import DkgMachine, SessionConfig
    from node.crypto.dkg_bus import BusNode, make_encryption_keys, make_participants, run_bus

    keys = make_encryption_keys(range(1, 5))
    config = SessionConfig(epoch=1, threshold=3, dealers=(1, 2, 3, 4), recipients=make_participants(keys),
                           nonce=b"redaction-test")
    nodes = [BusNode(name=str(i), machine=DkgMachine(config, encryption_key=keys[i], dealer_index=i,
                                                       recipient_index=i)) for i in range(1, 5)]
    outcome = run_bus(nodes)
    assert not outcome.failures and len(outcome.results) == 4
    machine = nodes[1].machine
    assert machine.result is not None and machine.result.share is not None
    dealt = list(machine.get_received_shares())
    secrets = [machine.result.share, *dealt]
    assert len(dealt) == 4 and len(set(secrets)) == 5
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream)
    log = logging.getLogger("node.ceremony-test")
    log.info("before: %d", secrets[0])
    assert str(secrets[0]) in stream.getvalue()  # nothing registered yet: the check below can fail
    stream.truncate(0)
    stream.seek(0)

    register_ceremony_secrets(machine, machine.result)
    for value in secrets:
        log.warning("share %d hex %x", value, value, extra={"detail": f"{value:064x}", "scalar": value})
    try:
        raise ValueError(f"bad share {secrets[0]:#x}")
    except ValueError:
        log.exception("failed")
    text = stream.getvalue().lower()
    leaked = [i for i, v in enumerate(secrets) if any(f in text for f in (str(v), f"{v:x}", f"{v:064x}"))]
    assert not leaked, f"secrets {leaked} reached a log line"
    assert text.count(REDACTED.lower()) >= 4 * len(secrets)
