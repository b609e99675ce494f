"""A package for ModTreeFactory: tasks in the package, a module, a subpackage."""

from pexen.sched.meta import func_meta


@func_meta
def pkg_task():
    return "pkg"
