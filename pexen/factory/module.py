"""ModuleFactory: the tasks of one imported module."""

from __future__ import annotations

from fnmatch import fnmatchcase
from types import ModuleType

from ..sched import meta
from .base import BaseFactory

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Iterator, Optional


class ModuleFactory(BaseFactory):
    """Yields the callables of a module that carry metadata, plus those whose
    name fnmatches `match`; callpath = current path + the object's name."""

    def __init__(self, match: Optional[str] = None) -> None:
        super().__init__()
        self.match = match

    def is_valid_callable(self, objname: str, obj: Any) -> bool:
        if not callable(obj) or isinstance(obj, ModuleType):
            return False
        if meta.has_meta(obj):
            return True
        return bool(self.match and fnmatchcase(objname, self.match))

    def extract_from_mod(self, mod: ModuleType) -> Iterator[Any]:
        """Yield the module's tasks, in name order."""
        # (what inspect.getmembers does for a module, without importing inspect)
        for name in sorted(dir(mod)):
            try:
                obj = getattr(mod, name)
            except AttributeError:
                continue
            if not self.is_valid_callable(name, obj):
                continue
            self.callpath_burn(obj, name)
            yield obj

    def __call__(self, mod: ModuleType) -> Iterator[Any]:  # type: ignore[override]
        yield from self.extract_from_mod(mod)
