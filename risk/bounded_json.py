"""JSON text from an untrusted source -> Python values, with every cost bounded before parsing.

`load_bounded_json(text, field, limits)` checks, in this order and without recursion:
1. size: at most `limits.max_bytes` UTF-8 bytes;
2. nesting: a linear scan over the text (strings, with their escapes, removed by one linear regular
   expression pass; then a running sum over the remaining brackets) refuses more than
   `limits.max_depth` nested arrays/objects, so the recursive parser (`json.loads`, whose C
   scanner recurses once per level and can overflow the C stack when the interpreter's recursion
   limit is raised, as `py_ecc` does) only ever sees shallow documents;
3. number tokens: none longer than `limits.max_number_chars` characters;
then parses with hooks that refuse `NaN`/`Infinity` literals, integers longer than the number
bound and floats outside the float64 range (`1e400`).

Every refusal is `InvalidInput(field, reason)`, `field` being the caller's name for the text (e.g.
`whatif_json`). Pure: no I/O, nothing is persisted.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from risk.errors import InvalidInput

# A JSON string: quote, runs of ordinary characters or backslash escapes, then the closing quote or
# the end of the text. Every quote starts a match that succeeds in one pass (an unterminated string
# runs to the end), so removing strings is linear even on hostile text (no retry per quote).
_STRING_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET_RE = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = bytes.maketrans(b"[]{}", b"\x01\xff\x01\xff")  # +1 open, -1 (signed) close


@dataclass(frozen=True)
class JsonLimits:
    max_bytes: int
    max_depth: int
    max_number_chars: int


class _Refused(ValueError):
    """Raised by a parse hook; carries the reason."""


def strip_strings(text: str) -> str:
    """`text` with the content of every string removed (linear time)."""
    return _STRING_RE.sub('""', text)


def compute_nesting_depth(stripped: str) -> int:
    """The deepest nesting of arrays/objects in `strip_strings(text)`, in linear time, no recursion.

    It equals the depth a JSON parser reaches on every prefix of the text that it accepts (after an
    unterminated string the parser stops; the scan ignores the rest)."""
    brackets = _NOT_BRACKET_RE.sub("", stripped)
    steps = array("b", brackets.encode("ascii").translate(_DEPTH_STEP))
    return max(accumulate(steps), default=0)


def _find_long_number(stripped: str, max_chars: int) -> str | None:
    found = re.search(r"[-+.0-9eE]{" + str(max_chars + 1) + ",}", stripped)
    return None if found is None else found.group()


def _make_hooks(limits: JsonLimits) -> dict[str, Any]:
    def parse_int(token: str) -> int:
        if len(token) > limits.max_number_chars:
            raise _Refused(f"integer of {len(token)} characters (at most {limits.max_number_chars})")
        return int(token)

    def parse_float(token: str) -> float:
        if len(token) > limits.max_number_chars:
            raise _Refused(f"number of {len(token)} characters (at most {limits.max_number_chars})")
        value = float(token)
        if not math.isfinite(value):
            raise _Refused(f"number {token} is outside the float64 range")
        return value

    def parse_constant(name: str) -> Any:
        raise _Refused(f"{name} is not a JSON number")

    return {"parse_int": parse_int, "parse_float": parse_float, "parse_constant": parse_constant}


def load_bounded_json(text: str | bytes, field: str, limits: JsonLimits) -> Any:
    """The JSON value of `text`, or `InvalidInput(field, reason)` for any bound or syntax violation."""
    if isinstance(text, bytes | bytearray):
        if len(text) > limits.max_bytes:
            raise InvalidInput(field, f"larger than {limits.max_bytes} bytes")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(field, f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    if len(text) > limits.max_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes:
        raise InvalidInput(field, f"larger than {limits.max_bytes} bytes")
    stripped = strip_strings(text)
    if compute_nesting_depth(stripped) > limits.max_depth:
        raise InvalidInput(field, f"nested deeper than {limits.max_depth} arrays/objects")
    long_number = _find_long_number(stripped, limits.max_number_chars)
    if long_number is not None:
        raise InvalidInput(field, f"number token of {len(long_number)} characters "
                                  f"(at most {limits.max_number_chars}): {long_number[:24]}...")
    try:
        return json.loads(text, **_make_hooks(limits))
    except _Refused as exc:
        raise InvalidInput(field, str(exc)) from exc
    except ValueError as exc:  # json.JSONDecodeError, or int() refusing a long digit string
        raise InvalidInput(field, f"invalid JSON ({exc})") from exc
