"""Task keys: a task's identity in a run (the callpath joined with '/')."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Optional

# Written by pexen.factory (BaseFactory.callpath_burn); read here, so that the
# engine does not import the factory room.
CALLPATH_ATTR_NAME = "pexen_factory_callpath_"


def explicit_key(task: Any) -> Optional[str]:
    """The key a factory gave the task (its callpath), or None."""
    path = getattr(task, CALLPATH_ATTR_NAME, None)
    if not path:
        return None
    return "/".join(str(part) for part in path)


def auto_name(task: Any) -> str:
    """A readable base for the key of a task no factory named."""
    name = getattr(task, "__name__", None)
    if not isinstance(name, str) or not name:
        name = type(task).__name__
    return name


def describe(task: Any) -> str:
    """Where a task comes from, for error messages: module:qualname or its repr."""
    module = getattr(task, "__module__", None)
    qualname = getattr(task, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}:{qualname}"
    return repr(task)
