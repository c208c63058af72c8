"""JSON logs (one object per line) with secret redaction.

Every record becomes `{"ts", "level", "logger", "msg", ...extra}`; exceptions add `exc`. Redaction
runs on the final line, so no path can bypass it: values of fields whose name looks secret
(`passphrase`, `secret`, `private_key`, `share_sk`, `seed`, `password`, `token`), `key=value`
pairs with such names inside messages, and the hex/decimal text of every secret registered with
`register_secret` (the node registers its keystore secrets at start) become "[REDACTED]".
Bounded: at most `MAX_SECRETS` registered secrets, messages cut at `MAX_MESSAGE_CHARS`.
Nothing is persisted (logs go to the given stream).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from typing import IO, Any

REDACTED = "[REDACTED]"
MAX_SECRETS = 64
MAX_MESSAGE_CHARS = 8_192
SECRET_NAME = r"(?:passphrase|password|secret|private[_-]?key|share[_-]?sk|seed|token|mnemonic)"
SECRET_FIELD_RE = re.compile(rf"^\w*{SECRET_NAME}\w*$", re.IGNORECASE)
SECRET_PAIR_RE = re.compile(rf"(\b\w*{SECRET_NAME}\w*\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)", re.IGNORECASE)
STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}

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


def _field_value(name: str, value: Any) -> Any:
    if SECRET_FIELD_RE.match(name):
        return REDACTED
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "msg": record.getMessage()[:MAX_MESSAGE_CHARS],
        }
        for name, value in vars(record).items():
            if name not in STANDARD_ATTRS and not name.startswith("_"):
                doc[name] = _field_value(name, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)[:MAX_MESSAGE_CHARS]
        return redact(json.dumps(doc, default=repr))


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None) -> logging.Handler:
    """Install one handler on the root logger (replacing earlier ones); returns it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("libp2p", "multiaddr", "urllib3", "web3", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler
