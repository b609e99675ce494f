"""Discovery: turn a directory, a module tree or a module into tasks."""

from .base import BaseFactory, get_callpath
from .filesystem import FilesystemFactory
from .modtree import ModTreeFactory
from .module import ModuleFactory

__all__ = ["BaseFactory", "FilesystemFactory", "ModTreeFactory", "ModuleFactory",
           "get_callpath"]
