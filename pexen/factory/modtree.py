"""ModTreeFactory: the tasks of a package, its subpackages and modules."""

from __future__ import annotations

import importlib
from types import ModuleType

from .base import BaseFactory
from .module import ModuleFactory

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Iterator, Optional, Union


class ModTreeFactory(BaseFactory):
    """Walks a package (importing every module in it) and applies
    `ModuleFactory(match)` to each; the callpath gets the module names
    pushed, e.g. ['subpkg', 'mod', 'func'].

    Modules are imported under their full dotted names (they land in
    sys.modules), so their functions can be pickled by reference.

    `module_factory` is the factory applied to each module (called with
    `match`); a subclass may name another, to find other things in each.
    """

    module_factory = ModuleFactory

    def __init__(self, match: Optional[str] = None) -> None:
        super().__init__()
        self.match = match

    def _extract_from_mod(self, mod: ModuleType) -> Iterator[Any]:
        subf = self.module_factory(match=self.match)
        self.callpath_transfer(subf)
        yield from subf(mod)

    def _walk_one(self, pkg: ModuleType) -> Iterator[Any]:
        yield from self._extract_from_mod(pkg)
        path = getattr(pkg, "__path__", None)
        if path is None:
            return  # a plain module, not a package
        import pkgutil  # (only to walk a package)

        for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
            self.callpath_push(info.name)
            try:
                if info.ispkg:
                    yield from self._walk_one(mod)
                else:
                    yield from self._extract_from_mod(mod)
            finally:
                self.callpath_pop()

    def __call__(self, startmod: Union[ModuleType, str]) -> Iterator[Any]:  # type: ignore[override]
        if isinstance(startmod, str):
            startmod = importlib.import_module(startmod)
        yield from self._walk_one(startmod)
