"""Values in the journal are JSON, never pickle."""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Tuple


def to_json_value(value: Any) -> Tuple[str, bool]:
    """(JSON text, restorable): a value that is not JSON is stored as its
    repr (a JSON string) and marked not restorable; one JSON changes (a tuple,
    a dict with int keys) is stored as JSON and marked not restorable."""
    if value is None:
        return "null", True
    kind = type(value)
    if kind is dict and not value:
        return "{}", True
    if kind is str or kind is bool or kind is int:
        return json.dumps(value), True
    if kind is dict and len(value) <= 8:
        # A small flat dict of str keys and str/int/bool/None values (an
        # executable's {"returncode": 0}, say) comes back as it was: no
        # round trip to check; the same one again costs a lookup.
        try:
            # (the types too: True == 1, and {"a": True} is not {"a": 1})
            items = tuple((k, type(v), v) for k, v in value.items())
            text = _flat.get(items)
        except TypeError:   # (an unhashable value)
            items, text = None, None
        if text is not None:
            return text, True
        if items is not None and all(type(k) is str and t in _SCALARS for k, t, _ in items):
            text = json.dumps(value)
            if len(_flat) < 256:
                _flat[items] = text
            return text, True
    try:
        text = json.dumps(value, allow_nan=False)
        # Tuples come back as lists, int keys as strings: such a value is
        # stored, but not restorable as it was.
        return text, _same(json.loads(text), value)
    except (TypeError, ValueError, RecursionError):
        try:
            text = repr(value)
        except Exception as exc:  # a broken __repr__
            text = f"<unrepresentable {type(value).__name__}: {exc}>"
        return json.dumps(text), False


_SCALARS = (str, int, bool, type(None))
_flat: dict = {}   # the items of a small flat dict -> its JSON


def _same(back: Any, value: Any) -> bool:
    if type(back) is not type(value):
        return False
    if isinstance(value, dict):
        return back.keys() == value.keys() and all(_same(back[k], value[k]) for k in value)
    if isinstance(value, list):
        return len(back) == len(value) and all(_same(b, v) for b, v in zip(back, value))
    return bool(back == value)
