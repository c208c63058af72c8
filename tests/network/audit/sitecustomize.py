"""Test-only: record every file a Python process opens (audit hook `open`), one absolute path per line,
in `$CLEARING_TEST_OPEN_LOG_DIR/<pid>.log`. Put this folder on PYTHONPATH (Python imports
`sitecustomize` at start-up); without the variable it does nothing. `tests/network` uses it to show that
no operator's process ever opened a file of another operator's home."""

from __future__ import annotations

import os
import sys

_DIR = os.environ.get("CLEARING_TEST_OPEN_LOG_DIR")
if _DIR:
    _fd = os.open(os.path.join(_DIR, f"{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(_fd, ("# " + " ".join(getattr(sys, "argv", [])) + "\n").encode(errors="replace"))

    def _record(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], str | bytes | os.PathLike):
            path = os.fsdecode(args[0])
            os.write(_fd, (os.path.abspath(path) + "\n").encode(errors="replace"))

    sys.addaudithook(_record)
