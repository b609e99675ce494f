"""Discovery: turn a directory, a module tree or a module into tasks."""

from .base import BaseFactory, get_callpath
from .filesystem import FilesystemFactory
from .modtree import ModTreeFactory
from .module import ModuleFactory
from .select import Pulled, Selection, SelectionError, resolve_deps, select_tasks

__all__ = ["BaseFactory", "FilesystemFactory", "ModTreeFactory", "ModuleFactory",
           "Pulled", "Selection", "SelectionError", "get_callpath", "resolve_deps",
           "select_tasks"]
