"""Structured logs (one JSON object per line), repeat limiting, and secret redaction.

Every record becomes `{"ts", "level", "logger", "msg", ...fields}`; fields are passed with
`extra={"epoch": 5, "digest": b"..."}` (bytes become 0x-hex, containers are kept as JSON), so the
message stays a constant text and values are keys; exceptions add `exc`. `setup_logging` installs
ONE handler for everything: the root logger's, and `logging.lastResort` (libraries such as py-libp2p
turn propagation off on their loggers, whose records would otherwise reach stderr as plain text),
with `warnings` captured too; libp2p, web3 and the other chatty libraries log at WARNING or above
(whatever level their modules set: `LibraryLevelFilter`).

Repeats: a record whose key (logger, level, message template, its %-arguments and its `extra` fields
but the volatile ones: times, durations such as `delay_s`, scores, the free-text `reason`; see
`is_volatile_field`) was emitted less than `window_s` ago is counted, not written, so one event
repeated is limited while two events that differ in a field (an ALERT from two peers, reorgs on two
chains) are both written; the first record of that key after the window (or any record, which
sweeps expired keys, or closing the handler) writes one summary: the last suppressed record with
`"repeats": N` and `"window_s"`. Bounded: `MAX_REPEAT_KEYS` keys tracked.

Redaction runs on the final line, so no path can bypass it: values of fields whose name looks
secret (`passphrase`, `secret`, `private_key`, `share_sk`, `seed`, `password`, `token`),
`key=value` pairs with such names inside messages, and the hex/decimal text of every secret
registered with `register_secret` (the node registers its keystore secrets at start) become
"[REDACTED]". Bounded: at most `MAX_SECRETS` registered secrets, messages cut at
`MAX_MESSAGE_CHARS`. Nothing is persisted (logs go to the given stream).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from typing import IO, Any

REDACTED = "[REDACTED]"
MAX_SECRETS = 64
MAX_MESSAGE_CHARS = 8_192
MAX_REPEAT_KEYS = 1_024
DEFAULT_REPEAT_WINDOW_S = 60.0
SECRET_NAME = r"(?:passphrase|password|secret|private[_-]?key|share[_-]?sk|seed|token|mnemonic)"
SECRET_FIELD_RE = re.compile(rf"^\w*{SECRET_NAME}\w*$", re.IGNORECASE)
SECRET_PAIR_RE = re.compile(rf"(\b\w*{SECRET_NAME}\w*\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)", re.IGNORECASE)
STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
LIBRARY_LOGGERS = ("libp2p", "multiaddr", "urllib3", "web3", "asyncio", "trio")
LIBRARY_ROOTS = frozenset(LIBRARY_LOGGERS)
# Not part of the repeat key: times, scores, and free-text descriptions (`reason`, `error`), whose block
# numbers and counts change from one try to the next of the same event.
VOLATILE_FIELDS = frozenset({"ts", "time", "timestamp", "score", "computing", "repeats", "window_s", "reason",
                             "error"})
VOLATILE_FIELD_RE = re.compile(r"^\w+_(?:s|ms|ts|at)$")  # durations and instants: delay_s, t_e_s, retry_in_s

_secrets: list[str] = []
_secrets_re: re.Pattern[str] | None = None
_lock = threading.Lock()


def _compile() -> None:
    global _secrets_re
    forms = sorted(_secrets, key=len, reverse=True)
    _secrets_re = re.compile("|".join(re.escape(f) for f in forms), re.IGNORECASE) if forms else None


def register_secret(value: bytes | int | str) -> None:
    """Redact every later occurrence of this secret (hex in any case, or decimal) from log lines."""
    if isinstance(value, bytes):
        forms = [value.hex()]
    elif isinstance(value, int):
        forms = [str(value), format(value, "x"), format(value, "064x")]
    else:
        forms = [value]
    with _lock:
        for form in forms:
            if len(form) >= 8 and form not in _secrets and len(_secrets) < MAX_SECRETS * 3:
                _secrets.append(form)
        _compile()


def clear_secrets() -> None:
    with _lock:
        _secrets.clear()
        _compile()


def redact(text: str) -> str:
    """`text` with registered secrets and secret-named key=value pairs replaced."""
    pattern = _secrets_re
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return SECRET_PAIR_RE.sub(lambda m: m.group(1) + REDACTED, text)


def _json_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if depth < 4 and isinstance(value, list | tuple | set | frozenset):
        return [_json_value(v, depth + 1) for v in (sorted(value, key=repr) if isinstance(value, set | frozenset)
                                                    else value)]
    if depth < 4 and isinstance(value, dict):
        return {str(k): _json_value(v, depth + 1) for k, v in value.items()}
    return repr(value)


def get_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's `extra` fields as JSON values (secret-named ones redacted)."""
    return {name: REDACTED if SECRET_FIELD_RE.match(name) else _json_value(value)
            for name, value in vars(record).items() if name not in STANDARD_ATTRS and not name.startswith("_")}


def is_volatile_field(name: str) -> bool:
    """A field that differs between repeats of one event (a time, a duration, a score, a free-text reason):
    not in the repeat key."""
    return name in VOLATILE_FIELDS or VOLATILE_FIELD_RE.match(name) is not None


def _get_key_value(value: Any) -> Any:
    """`value` itself when a plain scalar, else its JSON text (containers of a field, the %-arguments), so
    equal values give equal keys whether or not they are hashable."""
    if isinstance(value, str | int | float | bool | bytes) or value is None:
        return value
    return json.dumps(_json_value(value), sort_keys=True, default=repr)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "msg": record.getMessage()[:MAX_MESSAGE_CHARS],
        }
        doc.update(get_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)[:MAX_MESSAGE_CHARS]
        return redact(json.dumps(doc, default=repr))


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...` for a terminal (fields as JSON values)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={json.dumps(v, default=repr)}" for k, v in get_fields(record).items())
        return redact(super().format(record) + (" " + fields if fields else ""))


class LibraryLevelFilter(logging.Filter):
    """Drops records of the chatty libraries (`LIBRARY_LOGGERS`) below `level`, whatever level their own
    modules set on their loggers (py-libp2p sets INFO on some)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or record.name.split(".", 1)[0] not in LIBRARY_ROOTS


class RepeatLimitingHandler(logging.StreamHandler):
    """A stream handler that writes a repeated record once per window and then a summary (module docstring)."""

    def __init__(self, stream: IO[str] | None = None, window_s: float = DEFAULT_REPEAT_WINDOW_S,
                 max_keys: int = MAX_REPEAT_KEYS) -> None:
        super().__init__(stream)
        self.window_s = window_s
        self.max_keys = max_keys
        self._seen: OrderedDict[tuple, list[Any]] = OrderedDict()  # key -> [window end, suppressed, last record]

    @staticmethod
    def get_key(record: logging.LogRecord) -> tuple:
        """What makes two records the same event: logger, level, template, arguments and the stable fields."""
        fields = tuple((name, _get_key_value(value)) for name, value in sorted(vars(record).items())
                       if name not in STANDARD_ATTRS and not name.startswith("_") and not is_volatile_field(name))
        return record.name, record.levelno, str(record.msg), _get_key_value(record.args), fields

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        now = record.created
        self._sweep(now)
        key = self.get_key(record)
        entry = self._seen.get(key)
        if entry is not None:
            entry[1] += 1
            entry[2] = record
            return
        self._seen[key] = [now + self.window_s, 0, None]
        if len(self._seen) > self.max_keys:
            self._summarize(self._seen.popitem(last=False)[1])
        super().emit(record)

    def _sweep(self, now: float) -> None:
        """Close the windows that ended by `now` (keys are in insertion order, hence window-end order)."""
        while self._seen:
            key, entry = next(iter(self._seen.items()))
            if entry[0] > now:
                return
            del self._seen[key]
            self._summarize(entry)

    def _summarize(self, entry: list[Any]) -> None:
        suppressed, last = entry[1], entry[2]
        if suppressed and last is not None:
            summary = copy.copy(last)
            summary.repeats, summary.window_s = suppressed, self.window_s
            super().emit(summary)

    def flush_repeats(self) -> None:
        """Write the summaries of every key still counting (at close, or on demand)."""
        self.acquire()
        try:
            while self._seen:
                self._summarize(self._seen.popitem(last=False)[1])
        finally:
            self.release()

    def close(self) -> None:
        self.flush_repeats()
        super().close()


def setup_logging(level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None,
                  repeat_window_s: float = DEFAULT_REPEAT_WINDOW_S) -> logging.Handler:
    """Install one handler for every logger (replacing earlier ones on the root); returns it."""
    handler = RepeatLimitingHandler(stream or sys.stderr, window_s=repeat_window_s)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, RepeatLimitingHandler):
            old.flush_repeats()
    root.setLevel(level.upper())
    handler.addFilter(LibraryLevelFilter(max(logging.WARNING, root.level)))
    root.addHandler(handler)
    logging.lastResort = handler  # loggers that turned propagation off (py-libp2p) end up here, formatted
    logging.captureWarnings(True)
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.setLevel(max(logging.WARNING, root.level))
        library.handlers.clear()
        library.propagate = True
    return handler
