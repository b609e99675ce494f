"""Values in the journal are JSON, never pickle."""

from __future__ import annotations

import json
from typing import Any, Tuple


def to_json_value(value: Any) -> Tuple[str, bool]:
    """(JSON text, restorable): a value that is not JSON is stored as its
    repr (a JSON string) and marked not restorable."""
    try:
        return json.dumps(value, allow_nan=False), True
    except (TypeError, ValueError, RecursionError):
        try:
            text = repr(value)
        except Exception as exc:  # a broken __repr__
            text = f"<unrepresentable {type(value).__name__}: {exc}>"
        return json.dumps(text), False
