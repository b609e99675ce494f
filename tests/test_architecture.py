"""The rooms keep their import direction, and the public surface is pinned."""

import ast
import pathlib

import pexen
import pexen.factory
import pexen.sched
import pexen.sched.meta
import pexen.sched.pool

PKG = pathlib.Path(pexen.__file__).parent


def imported_rooms(module_file: pathlib.Path):
    """The top-level pexen rooms a module imports."""
    rel = module_file.relative_to(PKG).parts
    rooms = set()
    for node in ast.walk(ast.parse(module_file.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel[:-1])[: len(rel) - node.level]
                target = base + (node.module.split(".") if node.module else [])
                if not target:  # "from .. import x": each name is a room
                    rooms.update(alias.name for alias in node.names)
                else:
                    rooms.add(target[0])
            elif node.module and node.module.startswith("pexen."):
                rooms.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pexen."):
                    rooms.add(alias.name.split(".")[1])
    return rooms


def test_sched_imports_no_other_room():
    for path in (PKG / "sched").glob("*.py"):
        assert imported_rooms(path) <= {"sched", "util"}, path.name


def test_factory_imports_only_the_engine():
    for path in (PKG / "factory").glob("*.py"):
        assert imported_rooms(path) <= {"factory", "sched", "util"}, path.name


def test_public_names_are_pinned():
    assert sorted(pexen.__all__) == sorted(
        ["PexenError", "PexenWarning", "TaskContext", "context", "factory", "reboot", "report",
         "sched",
         "util",
         "__version__"])
    assert sorted(pexen.sched.__all__) == sorted([
        "DaskWorkerPool", "DepcheckError", "EventKind", "ExceptionInfo", "Listener", "MutexError",
        "PoolError", "ProcessWorkerPool", "Sched", "SchedulerError", "TaskEvent",
        "TaskFailError", "TaskGroup", "TaskKeyError", "TaskKilledError", "TaskRes",
        "TaskSkipError",
        "ThreadWorkerPool", "WorkerDiedError", "meta", "outcome_of", "planner", "pool",
        "task_fail_wrap"])
    assert sorted(pexen.factory.__all__) == sorted([
        "BaseFactory", "FilesystemFactory", "ModTreeFactory", "ModuleFactory",
        "Pulled", "Selection", "SelectionError", "get_callpath", "resolve_deps",
        "select_tasks"])
    for mod in (pexen, pexen.sched, pexen.factory, pexen.sched.meta, pexen.sched.pool):
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.{name}"


def test_public_functions_have_docstrings():
    for mod in (pexen.sched.meta, pexen.sched.pool, pexen.factory):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if callable(obj) and not name.isupper():
                assert obj.__doc__, f"{mod.__name__}.{name} has no docstring"


def test_watchdog_knows_only_the_engine():
    assert imported_rooms(PKG / "watchdog.py") <= {"sched", "util"}


def test_importing_pexen_loads_no_database_layer():
    """The library (the seed's API) stays light: `import pexen` and the engine
    load neither SQLAlchemy nor Alembic; the harness loads them when used."""
    import subprocess
    import sys

    code = ("import sys, pexen, pexen.sched, pexen.factory; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
