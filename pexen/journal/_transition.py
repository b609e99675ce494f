"""`Transition`: one state change as a value (the writer queues plain tuples;
this is for code that wants the change as an object, and its JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, Optional


@dataclass(frozen=True)
class Transition:
    """One state change of one task (key) or of the run (key None)."""

    run_id: int
    key: Optional[str]
    from_state: Optional[str]
    to_state: str
    at: float
    fields: Dict[str, Any] = field(default_factory=dict)
    detail: Optional[Dict[str, Any]] = None

    def to_json(self) -> Dict[str, Any]:
        return {"run_id": self.run_id, "key": self.key, "from": self.from_state,
                "to": self.to_state, "at": self.at, "fields": self.fields,
                "detail": self.detail}
