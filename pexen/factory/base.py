"""The factory base: a callpath (list of names) burnt onto each task made."""

from __future__ import annotations

from ..sched._keys import CALLPATH_ATTR_NAME

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Iterator, List, Optional


def get_callpath(obj: Any) -> List[str]:
    """The callpath a factory burnt onto a task (AttributeError if none)."""
    return getattr(obj, CALLPATH_ATTR_NAME)


class BaseFactory:
    """A factory: configured in __init__, run by calling it; yields callables.

    It keeps a callpath, the names leading to where it is now (e.g. the
    packages and modules a tree walk went through); each task it yields gets
    the callpath plus its own name, and the task key is that path joined
    with '/'.
    """

    def __init__(self) -> None:
        self.callpath: List[str] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(())

    def callpath_transfer(self, tofactory: BaseFactory) -> None:
        """Let a sub-factory continue from this factory's callpath (shared)."""
        tofactory.callpath = self.callpath

    def callpath_push(self, name: str) -> None:
        self.callpath.append(name)

    def callpath_pop(self) -> None:
        self.callpath.pop()

    def callpath_burn(self, obj: Any, objname: str = "",
                      path: Optional[List[str]] = None) -> None:
        """Store a callpath on `obj`: `path` (default: the current callpath)
        plus `objname` if given. A copy is stored, never the live list."""
        burnt = list(path) if path else list(self.callpath)
        if objname:
            burnt.append(objname)
        setattr(obj, CALLPATH_ATTR_NAME, burnt)
