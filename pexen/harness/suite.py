"""Suites: what `pexen-harness start SUITE` is given, and the tasks it holds.

A suite is one of three kinds:

- ``dir``: a directory of executables; every executable file under it is a
  task (`ExecutableTask`), keyed by its path relative to the directory without
  its extension (``net/ping.sh`` -> ``net/ping``);
- ``module``: a Python module or package, walked with
  `pexen.factory.ModTreeFactory` (its callables that carry metadata), plus
  its plain ``test_*`` functions and `unittest.TestCase` test methods
  (`_pytests`);
- ``function``: ``module:function``, a factory function called with no
  arguments that returns the tasks (Python is the configuration language).

`parse_suite` turns the command-line argument into a `SuiteSpec` (stored in the
journal as JSON, so a resumed run loads the same suite); `load_suite` turns a
spec into ``(key, task)`` pairs. Every problem with what the user gave is a
`SuiteError` with a one-line message, never a traceback.
"""

from __future__ import annotations

import importlib
import keyword
import os
import reprlib
import signal
import sys
from collections.abc import Mapping
from types import ModuleType

from ..sched import TaskGroup
from ..sched._keys import CALLPATH_ATTR_NAME, auto_name, describe, explicit_key
from ..sched._when import check_when, wait_session
from ..sched.meta import SCHED_ATTR_NAME, assign_val
from ..util import LazyModule, PexenError, Record
from . import execmeta
from ._pytests import SuiteTreeFactory
from ._words import exc_summary as _exc_summary
from .capture import current as current_capture
from .context import NoContextError, context
from .outcome import EXIT_ERROR, EXIT_SKIP, TaskOutcome

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import (
        Any,
        Callable,
        Dict,
        Iterable,
        Iterator,
        List,
        Optional,
        Sequence,
        Set,
        Tuple,
    )

# (imported when a program is first run: not for a suite of Python tasks)
subprocess: Any = LazyModule("subprocess", globals())

KINDS = ("dir", "module", "function", "pytest")


class SuiteError(PexenError):
    """The suite cannot be used: the message (one line) names it and says why."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(obj: Any) -> str:
    """A short one-line repr of a user object, for messages."""
    try:
        text = reprlib.repr(obj)
    except Exception:  # a broken __repr__ must not hide the real problem
        text = f"<{type(obj).__name__} object>"
    return _one_line(text)


def _error(name: str, what: str) -> SuiteError:
    return SuiteError(_one_line(f"suite {name!r}: {what}"))


def _is_dotted_name(text: str) -> bool:
    """A dotted module name: identifiers (not keywords) joined by dots."""
    return bool(text) and all(part.isidentifier() and not keyword.iskeyword(part)
                              for part in text.split("."))


def _is_function_ref(text: str) -> bool:
    """'dotted.module:function'."""
    mod, sep, func = text.partition(":")
    return (bool(sep) and _is_dotted_name(mod) and func.isidentifier()
            and not keyword.iskeyword(func))


_SELECTION_FIELDS = ("select", "exclude", "keys", "prefer")


class SuiteSpec(Record, frozen=True):
    """A suite as given on the command line, resolved so it loads the same later.

    `kind` is "dir", "module", "function" or "pytest"; `target` the absolute
    directory, the dotted module name, "module:function", or the absolute
    path (with its ``::`` parts) pytest collects; `cwd` the absolute directory
    the suite was given from (put on sys.path when modules are loaded; where
    pytest runs); `pytest_args` the arguments given to pytest.

    The selection (see `pexen.factory.select_tasks`): `select` and `exclude`
    globs on task keys, `keys` exact keys to select (``--rerun-failed``),
    `prefer` the keys to prefer as providers, `deps` False for ``--no-deps``.
    """

    kind: str
    target: str
    cwd: str
    select: Tuple[str, ...] = ()
    exclude: Tuple[str, ...] = ()
    keys: Tuple[str, ...] = ()
    prefer: Tuple[str, ...] = ()
    deps: bool = True
    pytest_args: Tuple[str, ...] = ()

    @property
    def selects(self) -> bool:
        """Does the spec pick a part of the suite (or leave out unmet tasks)?"""
        return bool(self.select or self.exclude or self.keys or not self.deps)

    def to_json(self) -> Dict[str, Any]:
        """The spec as a JSON-able dict (`from_json` reads it back)."""
        out: Dict[str, Any] = {"kind": self.kind, "target": self.target, "cwd": self.cwd}
        for name in _SELECTION_FIELDS:
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        if not self.deps:
            out["deps"] = False
        if self.pytest_args:
            out["pytest_args"] = list(self.pytest_args)
        return out

    @classmethod
    def from_json(cls, data: Any) -> SuiteSpec:
        """The spec `to_json` wrote; SuiteError if `data` is not such a dict."""
        if not isinstance(data, Mapping):
            raise SuiteError(f"malformed suite record: a {type(data).__name__}, not a dict: "
                             f"{_short(data)}")
        target: Any = data.get("target")   # (checked below)
        name = target if isinstance(target, str) else _short(data)

        def bad(what: str) -> SuiteError:
            return _error(name, f"malformed suite record ({what}): {_short(data)}")

        known = ("kind", "target", "cwd", "deps", "pytest_args") + _SELECTION_FIELDS
        extra = sorted(str(k) for k in data if k not in known)
        if extra:
            raise bad(f"unknown field {extra[0]!r}")
        for field in ("kind", "target", "cwd"):
            if not isinstance(data.get(field), str):
                raise bad(f"{field!r} missing or not a string")
        kind, cwd = data["kind"], data["cwd"]
        if kind not in KINDS:
            raise bad(f"unknown kind {kind!r}")
        if not os.path.isabs(cwd):
            raise bad("cwd is not an absolute path")
        if kind == "dir" and not os.path.isabs(target):
            raise bad("directory is not an absolute path")
        if kind == "module" and not _is_dotted_name(target):
            raise bad("not a module name")
        if kind == "function" and not _is_function_ref(target):
            raise bad("not module:function")
        if kind == "pytest" and not os.path.isabs(target):
            raise bad("pytest path is not absolute")
        lists = {}
        for field in _SELECTION_FIELDS + ("pytest_args",):
            value = data.get(field, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad(f"{field!r} is not a list of strings")
            lists[field] = tuple(value)
        deps = data.get("deps", True)
        if not isinstance(deps, bool):
            raise bad("'deps' is not true or false")
        return cls(kind, target, cwd, deps=deps, **lists)


def parse_suite(arg: str, cwd: Optional[str] = None) -> SuiteSpec:
    """The `SuiteSpec` of a command-line SUITE argument given from `cwd`
    (default: the current directory).

    An existing directory is a "dir" suite, but for a package directory given
    by its bare name ("mysuite", with an ``__init__.py``), which is the package
    ("./mysuite" is the directory); "a.b:func" is a "function" suite; another
    dotted name a "module" suite (whether it imports is checked by
    `load_suite`). Anything else, a file included, is a SuiteError.
    """
    base = os.path.abspath(cwd if cwd is not None else os.getcwd())
    if not arg:
        raise _error(arg, "empty; give a directory, a module name or module:function")
    if arg.startswith("pytest:"):
        where = arg[len("pytest:"):]
        path, sep, parts = where.partition("::")
        if not path:
            raise _error(arg, "give the file or directory pytest collects: pytest:PATH")
        full = os.path.normpath(os.path.join(base, path))
        if not os.path.exists(full):
            raise _error(arg, f"no such file or directory: {path}")
        return SuiteSpec("pytest", full + sep + parts, base)
    path = os.path.join(base, arg)
    if os.path.isdir(path):
        # A package directory given by its bare name ('mysuite') is the
        # package; './mysuite' asks for the directory of executables.
        is_pkg = os.path.isfile(os.path.join(path, "__init__.py"))
        if not (is_pkg and "." not in arg and _is_dotted_name(arg)):
            return SuiteSpec("dir", os.path.abspath(path), base)
    if _is_function_ref(arg):
        return SuiteSpec("function", arg, base)
    if os.path.exists(path) and not os.path.isdir(path):
        what = "a file, not a directory, module name or module:function"
        if arg.endswith(".py"):
            what = "a Python file is not a suite; give its module name"
            hint = os.path.normpath(arg)[:-3].replace("/", ".")
            if not os.path.isabs(arg) and _is_dotted_name(hint):
                what += f" (e.g. {hint!r})"
        raise _error(arg, what)
    if _is_dotted_name(arg):
        return SuiteSpec("module", arg, base)
    raise _error(arg, "no such directory, and not a module name")


# -- executables -----------------------------------------------------------------


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return "unknown signal"


class ExecutableTask:
    """A task that runs one executable file; picklable (plain attributes).

    The executable runs with its directory as cwd, stdin from /dev/null, in a
    session of its own (so a whole process group can be killed), with the
    PEXEN_* variables of the current task context added to the environment;
    its stdout and stderr go to the attempt's output files (`capture`). Exit 0 passes (returns
    ``{"returncode": 0}``), 77 skips, 99 is an error, death by a signal is an
    error, any other status fails (`TaskOutcome`).

    Its `when` condition, if it has one, is evaluated first the same way (a
    command runs in the executable's directory, with its environment and
    output); a false one ends the task with a `TaskSkipError`.
    """

    # It evaluates its `when` itself (the engine and the harness leave it be).
    pexen_checks_when_ = True
    # It takes no shared dict (said here: inspect.signature of an instance
    # costs tens of microseconds, for each task).
    pexen_takes_shared_ = False

    def __init__(self, path: str, key: str, data: Optional[bool] = None) -> None:
        # (an absolute path without "." or ".." parts, such as a suite's walk
        # gives, is taken as it is: abspath costs more than the rest here)
        self.path = (path if path.startswith("/") and "/." not in path and "//" not in path
                     else os.path.abspath(path))
        self.key = key
        # Whether its data directory is made before it starts: None to decide
        # by its text (see `wants_data_dir`).
        self.data = data
        self.__name__ = key
        setattr(self, CALLPATH_ATTR_NAME, key.split("/"))

    def wants_data_dir(self) -> bool:
        """Whether the task's data directory is made before the program
        starts: as its metadata says (`data`), else when its first 16 KB
        name PEXEN_TASK_DATA (a script that writes there). Most programs do
        not use it, and a directory per task costs more than a small test."""
        data = self.data
        if data is None:
            data = self.data = execmeta.DATA_VARIABLE in execmeta.read_head(self.path)
        return data

    def __repr__(self) -> str:
        return f"ExecutableTask({self.path!r}, key={self.key!r})"

    def _env(self) -> Optional[Dict[str, str]]:
        """The executable's environment: None (this process's own) when that
        has the task's variables already (in a worker process), or when
        there is no task context."""
        try:
            ctx = context()
        except NoContextError:
            return None
        if os.environ.get("PEXEN_TASK_TOKEN") == ctx.token:
            return None
        env = dict(os.environ)
        env.update(ctx.variables())
        env["PEXEN_RUN_DATA"] = ctx.run_data_dir
        if self.wants_data_dir():
            env["PEXEN_TASK_DATA"] = ctx.data_dir
        return env

    def __call__(self) -> Dict[str, int]:
        """Run the executable; see the class docstring for the outcomes."""
        # In a worker process fds 1 and 2 already go to the attempt's files;
        # in the controller (thread pool) the output goes to them by hand.
        capture = current_capture()
        out, err = capture.fds() if capture is not None else (None, None)
        cwd, env = os.path.dirname(self.path), self._env()
        meta = getattr(self, SCHED_ATTR_NAME, None)
        when = meta.get("when") if meta is not None else None
        if when is not None:
            check_when(when, cwd=cwd, env=env, stdout=out, stderr=err)
        from ._spawner import current

        spawner = current()
        try:
            if spawner is not None:
                # (the thread pool: started by a process that outlives the
                # controller, see _spawner.py)
                # (fds 1 and 2 where no per-thread files: the controller's
                # own at this moment, which may be the task's files)
                status = spawner.run([self.path], cwd, env, 1 if out is None else out,
                                     2 if err is None else err, spawn_info(self))
            else:
                proc = subprocess.Popen([self.path], cwd=cwd,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        stdout=out, stderr=err, env=env)
                status = wait_session(proc)
        except OSError as exc:  # not there any more, bad interpreter line, ...
            raise TaskOutcome("error", f"cannot execute {self.path}: "
                                       f"{exc.strerror or _exc_summary(exc)}") from None
        found = exit_outcome(status)
        if found is None:
            return {"returncode": 0}
        raise TaskOutcome(*found)


def exit_outcome(status: int) -> Optional[Tuple[str, str]]:
    """(outcome, message) of an executable that ended with `status` (as
    `Popen.returncode`: negative for a signal); None: it passed."""
    if status == 0:
        return None
    if status < 0:
        return "error", f"killed by signal {-status} ({_signal_name(-status)})"
    if status == EXIT_SKIP:
        return "skip", f"exit status {EXIT_SKIP} (skip)"
    if status == EXIT_ERROR:
        return "error", f"exit status {EXIT_ERROR} (error)"
    return "fail", f"exit status {status}"


def spawn_info(task: ExecutableTask) -> Dict[str, Any]:
    """What the spawner needs to record an executable's finish on its own
    (its task context, where its output goes, the run's cap)."""
    ctx = context()
    capture = current_capture()
    return {"journal": ctx.journal, "run_id": ctx.run_id, "key": ctx.task,
            "attempt": ctx.attempt, "token": ctx.token,
            "logs": list(getattr(capture, "paths", ()) or ()),
            "limit": getattr(capture, "limit", 0)}


# -- loading ---------------------------------------------------------------------


def _display_name(spec: SuiteSpec) -> str:
    """The suite as the user would recognise it (a directory relative to cwd)."""
    if spec.kind in ("dir", "pytest"):
        rel = os.path.relpath(spec.target, spec.cwd)
        if rel != ".." and not rel.startswith("../"):
            return rel if spec.kind == "dir" else f"pytest:{rel}"
    return spec.target if spec.kind != "pytest" else f"pytest:{spec.target}"


class SuiteGroup(Record):
    """An exclusivity group of a suite (see pexen.sched.TaskGroup): its
    tasks' keys, and its pool; `pool`, `workers`, `spare` left None are the
    run's own (--pool, -j)."""

    name: str
    keys: List[str]
    pool: Optional[str] = None
    workers: Optional[int] = None
    spare: Optional[int] = None

    def to_json(self) -> Dict[str, Any]:
        return {"name": self.name, "pool": self.pool, "workers": self.workers,
                "spare": self.spare, "tasks": len(self.keys)}


class Loaded(Record):
    """A suite's tasks as (key, task) pairs, and its groups in the order they
    run (the tasks in no group run before them)."""

    tasks: List[Tuple[str, Callable[..., Any]]]
    groups: List[SuiteGroup]

    def group_of(self) -> Dict[str, str]:
        """key -> group name, for the tasks in a group."""
        return {key: group.name for group in self.groups for key in group.keys}

    def restricted(self, tasks: List[Tuple[str, Callable[..., Any]]]) -> Loaded:
        """The same groups over a part of the tasks (the empty ones left out)."""
        keep = {key for key, _ in tasks}
        groups = [SuiteGroup(g.name, [k for k in g.keys if k in keep], g.pool, g.workers,
                             g.spare) for g in self.groups]
        return Loaded(tasks, [g for g in groups if g.keys])


#: Tasks handed out ahead per worker: three under the process pool (a task
#: waits in the pool until its attempt is committed; the tasks handed out
#: while one commit is under way share the next, and the others keep the
#: workers busy meanwhile: see controller.Committer), three under the thread
#: pool (in-process tasks are often tiny: a deeper queue keeps the workers
#: busy while the controller journals what ended).
SPARE_PER_WORKER = {"process": 3, "thread": 3}


def default_spare(pool: str, workers: Optional[int]) -> Optional[int]:
    """The `spare` of a pool of `workers` of kind `pool` (None: the pool's own)."""
    return None if workers is None else workers * SPARE_PER_WORKER.get(pool, 1)


def grouped(tasks: Sequence[Tuple[str, Any]], groups: Sequence[SuiteGroup],
            make: Callable[[str, Any], Any], pool: str = "thread",
            workers: Optional[int] = None) -> List[Any]:
    """What to give `Sched.add_tasks`: `make(key, task)` of each task in no
    group first, then a TaskGroup per group, in order (its pool and workers
    from the group, else `pool` and `workers`)."""
    if not groups:
        return [make(key, task) for key, task in tasks]
    by_key = dict(tasks)
    in_group = {key for group in groups for key in group.keys}
    out: List[Any] = [make(key, task) for key, task in tasks if key not in in_group]
    for group in groups:
        size = group.workers if group.workers is not None else workers
        kind = group.pool or pool
        out.append(TaskGroup(group.name, [make(key, by_key[key]) for key in group.keys
                                          if key in by_key],
                             pool=kind, workers=size,
                             spare=(group.spare if group.spare is not None
                                    else default_spare(kind, size))))
    return out


def _dir_groups(top: str, name: str, members: Dict[str, Tuple[str, str]],
                decls: Dict[str, execmeta.GroupDecl], order: List[str]) -> List[SuiteGroup]:
    """The groups of a directory suite: `members` key -> (group, file:line),
    in walk order; `decls` the declared groups."""
    try:
        listed, where = execmeta.suite_groups(top)
    except execmeta.MetaSyntaxError as exc:
        raise _error(name, str(exc)) from None
    for group, at in members.values():
        if group not in decls:
            known = f" (declared: {', '.join(sorted(decls))})" if decls else ""
            raise _error(name, f"{at}: unknown group {group!r}; declare it with a [group] "
                               f"table in a directory's {execmeta.DIR_FILE}{known}")
    for group in listed:
        if group not in decls:
            raise _error(name, f"{where}: groups lists {group!r}, which no [group] declares")
    keys_of: Dict[str, List[str]] = {}
    for key in order:
        if key in members:
            keys_of.setdefault(members[key][0], []).append(key)
    names = [g for g in listed if g in keys_of] + [g for g in keys_of if g not in listed]
    return [SuiteGroup(g, keys_of[g], decls[g].pool, decls[g].workers, decls[g].spare)
            for g in names]


def _walk(top: str, name: str) -> Iterator[Tuple[str, str, List[str], Set[str]]]:
    """`os.walk` of a suite directory, top down, sorted, hidden names left
    out, symbolic links to directories not followed: (directory, its path
    relative to `top` ("." for `top`), its files (symbolic links to files
    included, anything else that is not a file left out), every name in
    it). With `os.scandir`: no system call per file to tell a file from a
    directory."""
    def walk(dirpath: str, rel_dir: str) -> Iterator[Tuple[str, str, List[str], Set[str]]]:
        try:
            entries = list(os.scandir(dirpath))
        except OSError as exc:
            raise _error(name, f"cannot read {exc.filename}: "
                               f"{exc.strerror or _exc_summary(exc)}") from None
        files, dirs = [], []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    dirs.append(entry.name)
                elif entry.is_file():   # (a broken symlink, a socket, ... are not)
                    files.append(entry.name)
            except OSError:
                continue
        files.sort()
        yield dirpath, rel_dir, files, {entry.name for entry in entries}
        for d in sorted(dirs):
            yield from walk(os.path.join(dirpath, d),
                            d if rel_dir == os.curdir else os.path.join(rel_dir, d))

    return walk(top, os.curdir)


def _load_dir(spec: SuiteSpec, name: str) -> Loaded:
    top = spec.target
    if not os.path.isdir(top):
        raise _error(name, "no such directory")
    found: List[Tuple[str, Callable[..., Any]]] = []
    files_of: Dict[str, str] = {}
    meta_cache: Dict[str, Any] = {}
    decls: Dict[str, execmeta.GroupDecl] = {}
    members: Dict[str, Tuple[str, str]] = {}
    not_exec = 0

    for dirpath, rel_dir, files, names in _walk(top, name):
        prefix = "" if rel_dir == os.curdir else rel_dir + os.sep
        for fname in files:
            full = os.path.join(dirpath, fname)
            if not os.access(full, os.X_OK):
                not_exec += 1
                continue
            rel = prefix + fname
            key = os.path.splitext(rel)[0]
            if key in files_of:
                raise _error(name, f"{files_of[key]} and {rel} both give the task key {key!r}")
            files_of[key] = rel
            try:
                fields = execmeta.for_executable(
                    top, full, meta_cache, decls, rel_dir=rel_dir,
                    sidecar=fname + execmeta.SIDECAR_SUFFIX in names)
                task = ExecutableTask(full, key, data=fields.pop(execmeta.DATA_FIELD))
                member = fields.pop(execmeta.GROUP_FIELD, None)
                if member is not None:
                    members[key] = member
                if fields:
                    assign_val(task, **fields)
            except execmeta.MetaSyntaxError as exc:
                raise _error(name, str(exc)) from None
            except (TypeError, ValueError) as exc:
                raise _error(name, f"{full}: {exc}") from None
            found.append((key, task))
    if not found:
        hint = f" ({not_exec} files without the executable bit)" if not_exec else ""
        raise _error(name, f"no executable files in the directory{hint}")
    return Loaded(found, _dir_groups(top, name, members, decls, [k for k, _ in found]))


def _import(spec: SuiteSpec, name: str, modname: str) -> ModuleType:
    if spec.cwd not in sys.path:
        sys.path.insert(0, spec.cwd)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(modname)
    except (Exception, SystemExit) as exc:
        raise _error(name, f"cannot import {modname}: {_exc_summary(exc)}") from None


def _keyed(name: str, tasks: Iterable[Any]) -> Loaded:
    """(key, task) pairs of Python tasks, as the engine will key them: the
    callpath when there is one, else the name. The same object twice counts
    once. A `pexen.sched.TaskGroup` among them is a group of its tasks."""
    found: List[Tuple[str, Callable[..., Any]]] = []
    seen = set()
    by_key: Dict[str, Any] = {}
    groups: List[Tuple[TaskGroup, List[Any]]] = []
    flat: List[Any] = []
    for task in tasks:
        if isinstance(task, TaskGroup):
            if not isinstance(task.pool, str):
                raise _error(name, f"group {task.name!r}: the harness runs groups in "
                                   f"'thread' or 'process' pools, not {_short(task.pool)}")
            if any(g.name == task.name for g, _ in groups):
                raise _error(name, f"two groups are named {task.name!r}")
            groups.append((task, list(task.tasks)))
            flat.extend(task.tasks)
        else:
            flat.append(task)
    for index, task in enumerate(flat):
        if not callable(task):
            raise _error(name, f"task {index} is not callable: {_short(task)}")
        if id(task) in seen:
            continue
        seen.add(id(task))
        found.append(task)
    pairs = []
    for task in found:
        key = explicit_key(task) or auto_name(task)
        other = by_key.get(key)
        if other is not None:
            raise _error(name, f"two tasks have the key {key!r}: {describe(other)} and "
                               f"{describe(task)}")
        by_key[key] = task
        pairs.append((key, task))
    if not pairs:
        raise _error(name, "no tasks")
    key_of = {id(task): key for key, task in pairs}
    in_group: Dict[str, str] = {}
    suite_groups = []
    for group, members in groups:
        keys = []
        for task in members:
            key = key_of[id(task)]
            if key in in_group and in_group[key] != group.name:
                raise _error(name, f"task {key} is in two groups: {in_group[key]!r} and "
                                   f"{group.name!r}")
            if key not in in_group:
                in_group[key] = group.name
                keys.append(key)
        if keys:
            suite_groups.append(SuiteGroup(group.name, keys, group.pool, group.workers,
                                           group.spare))
    return Loaded(pairs, suite_groups)


def _load_module(spec: SuiteSpec, name: str) -> Loaded:
    mod = _import(spec, name, spec.target)
    try:
        # Keys are read after the walk: a task found twice (imported into a
        # second module) keeps the callpath burnt last, as the engine sees it.
        tasks = list(SuiteTreeFactory()(mod))
    except (Exception, SystemExit) as exc:
        raise _error(name, f"cannot walk {spec.target}: {_exc_summary(exc)}") from None
    if not tasks:
        where = spec.target
        if getattr(mod, "__path__", None) is not None:
            where += " or its submodules"
        raise _error(name, "no tasks: no functions decorated with @func_meta and no test_* "
                           f"functions or unittest.TestCase classes in {where}")
    return _keyed(name, tasks)


def _load_function(spec: SuiteSpec, name: str) -> Loaded:
    modname, _, funcname = spec.target.partition(":")
    mod = _import(spec, name, modname)
    try:
        func = getattr(mod, funcname)
    except AttributeError:
        raise _error(name, f"module {modname} has no attribute {funcname!r}") from None
    if not callable(func):
        raise _error(name, f"{funcname} is not callable: {_short(func)}")
    try:
        result = func()
    except (Exception, SystemExit) as exc:
        raise _error(name, f"calling {funcname}() raised {_exc_summary(exc)}") from None
    try:
        if isinstance(result, (str, bytes, Mapping)):
            raise TypeError("not a sequence of tasks")
        items = iter(result)
    except TypeError:
        raise _error(name, f"{funcname}() returned {_short(result)}, not tasks") from None
    try:
        tasks = list(items)
    except (Exception, SystemExit) as exc:
        raise _error(name, f"iterating what {funcname}() returned raised "
                           f"{_exc_summary(exc)}") from None
    return _keyed(name, tasks)


def _load_pytest(spec: SuiteSpec, name: str) -> Loaded:
    from . import pytestsuite

    if not pytestsuite.have_pytest():
        raise _error(name, pytestsuite.EXTRA)
    try:
        return Loaded(pytestsuite.load(spec.target, spec.cwd, spec.pytest_args), [])
    except ValueError as exc:
        raise _error(name, str(exc)) from None


def load_suite(spec: SuiteSpec) -> List[Tuple[str, Callable[..., Any]]]:
    """The tasks of a suite as (task key, task) pairs, in a stable order.

    The keys are those `pexen.sched.Sched` gives the tasks. Any problem with
    the suite (missing, does not import, no tasks, two tasks with one key, ...)
    is a SuiteError with a one-line message. `load_suite_groups` gives the
    exclusivity groups too.
    """
    return load_suite_groups(spec).tasks


def directory_tasks(path: str, pool: str = "process") -> List[Any]:
    """The tests of a directory of executables (with their metadata and
    groups, as `pexen-harness start DIR` reads them) as a list to return from
    a `module:function` suite: the tasks in no group, then a
    `pexen.sched.TaskGroup` per group (those that name no pool get `pool`).
    Any problem is a SuiteError."""
    top = os.path.abspath(path)
    loaded = load_suite_groups(SuiteSpec("dir", top, os.path.dirname(top)))
    return grouped(loaded.tasks, loaded.groups, lambda key, task: task, pool=pool)


def load_suite_groups(spec: SuiteSpec) -> Loaded:
    """The tasks of a suite (as `load_suite`) and its exclusivity groups."""
    name = _display_name(spec)
    if spec.kind == "dir":
        loaded = _load_dir(spec, name)
    elif spec.kind == "module":
        loaded = _load_module(spec, name)
    elif spec.kind == "function":
        loaded = _load_function(spec, name)
    elif spec.kind == "pytest":
        loaded = _load_pytest(spec, name)
    else:
        raise _error(name, f"unknown suite kind {spec.kind!r}")
    found = loaded.tasks
    for key, _ in found:
        if not key.isascii():
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                shown = key.encode("utf-8", "backslashreplace").decode("ascii", "replace")
                raise _error(name, f"task key '{shown}' is not valid UTF-8 (a file name in "
                                   "another encoding?); rename it") from None
    return loaded


__all__ = ["ExecutableTask", "KINDS", "Loaded", "SuiteError", "SuiteGroup", "SuiteSpec",
           "directory_tasks", "grouped", "load_suite", "load_suite_groups", "parse_suite"]
