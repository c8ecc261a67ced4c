"""Argument checks and JSON encoding shared by the primitives.

Every public primitive validates its arguments here *before* anything is
written, so a bad call raises and changes nothing.
"""

from __future__ import annotations

import json
import reprlib
from typing import Any

from alkdev_storage._native import Transaction
from alkdev_storage.errors import InputTypeError, InvalidInputError, LimitExceededError

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother = 3, 80, 80
_SHOWN.maxlist = _SHOWN.maxdict = _SHOWN.maxtuple = _SHOWN.maxset = 4


def shown(value: object) -> str:
    """`repr(value)` for an error message, bounded: a hostile argument (a
    10 MB string, a document nested 100,000 deep) is cut short instead of
    being copied whole into the message or exhausting the recursion limit."""
    return _SHOWN.repr(value)


def whole(name: str, value: object, *, minimum: int | None = None) -> int:
    """`value` as an int (bools refused), at least `minimum` if given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be an int, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise InvalidInputError(f"{name} must be at least {minimum}, got {value}")
    return value


def optional_whole(name: str, value: object, *, minimum: int | None = None) -> int | None:
    return None if value is None else whole(name, value, minimum=minimum)


# The longest duration accepted (about 317 years). honker stores deadlines
# as `unixepoch() + duration` in INTEGER columns; past 2**63 SQLite would
# store a REAL there, which no binding can read back as a timestamp.
MAX_DURATION_S = 10**10


def seconds(name: str, value: object, *, minimum: int = 1) -> int:
    """A duration in whole seconds; floats are accepted when whole."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    duration = whole(name, value, minimum=minimum)
    if duration > MAX_DURATION_S:
        raise InvalidInputError(f"{name} must be at most {MAX_DURATION_S} seconds, got {duration}")
    return duration


def text(name: str, value: object, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InputTypeError(f"{name} must be a str, not {type(value).__name__}")
    if not empty and not value:
        raise InvalidInputError(f"{name} must not be empty")
    return utf8(name, value)


def utf8(name: str, value: str) -> str:
    """`value` if it can be stored: SQLite holds UTF-8, which a str with
    lone surrogates (``"\ud800"``) has no form in."""
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise InvalidInputError(
                f"{name} contains a lone surrogate (at {exc.start}): not UTF-8 text"
            ) from None
    return value


# One encoder with json.dumps' defaults except allow_nan: json.dumps builds
# a new encoder per call whenever an option differs from its defaults,
# which costs more than encoding a small payload.
_encode = json.JSONEncoder(allow_nan=False).encode


def dumps(payload: Any, what: str = "payload") -> str:
    """JSON text of `payload`, as honker stores it (``json.dumps`` defaults).

    NaN and infinities are refused: they are not JSON, and other bindings
    (``JSON.parse`` in Node) could not read the row back.
    """
    try:
        return _encode(payload)
    except TypeError as exc:
        raise InputTypeError(f"{what} is not JSON-serialisable: {exc}") from None
    except ValueError as exc:
        raise InvalidInputError(f"{what} is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise LimitExceededError(f"{what} is nested too deeply to encode as JSON") from None


def loads(raw: str) -> Any:
    return json.loads(raw)


def native_tx(tx: object) -> Transaction | None:
    """The native transaction behind `tx` (ours, or a wrapper around one)."""
    if tx is None or isinstance(tx, Transaction):
        return tx
    inner = getattr(tx, "_tx", None)
    if isinstance(inner, Transaction):
        return inner
    raise InputTypeError(f"tx must be a transaction from db.transaction(), not {type(tx).__name__}")
