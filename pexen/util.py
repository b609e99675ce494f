"""The root of pexen's error and warning tree (kept here: 0.0.x imports them
from here), and what the rooms share that belongs to none of them."""

from __future__ import annotations

import importlib
import math
import os
from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Dict, Optional, Tuple


class PexenError(Exception):
    """Base of every error pexen raises on purpose."""


class PexenWarning(UserWarning):
    """Warnings the scheduler emits (skipped tasks, locks held at exit, ...)."""


class Factory:
    """The default of a `Record` field that is made anew for each record
    (`Factory(list)`: a new list each time)."""

    __slots__ = ("make",)
    make: Callable[[], Any]

    if TYPE_CHECKING:
        # To a type checker `Factory(list)` is what it makes (as
        # dataclasses.field() is), so that a field's annotation holds for its
        # default; mypy takes a constructor's type from __new__ only when the
        # class shows it no __init__.
        def __new__(cls, make: Callable[[], Any]) -> Any: ...
    else:
        def __init__(self, make: Callable[[], Any]) -> None:
            self.make = make


class Record:
    """A class of a few named fields, given by position or by name, compared by
    value, shown with their values: what ``@dataclass`` gives, without
    importing `dataclasses` (which imports inspect, ast, dis and tokenize: a
    tenth of what ``pexen-harness start`` takes to start). The fields are the
    class's annotated names, in order (a base's first); a class attribute of
    the same name is its default (a `Factory` makes one per record).
    ``class X(Record, frozen=True)`` refuses assignments and is hashable;
    ``x.replace(field=value)`` is a copy with other values."""

    _fields: Tuple[str, ...] = ()
    _frozen = False

    def __init_subclass__(cls, frozen: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: list = []
        for klass in reversed(cls.__mro__):
            for name in klass.__dict__.get("__annotations__", {}):
                if not name.startswith("_") and name not in names:
                    names.append(name)
        cls._fields = tuple(names)
        cls._frozen = frozen or any(getattr(b, "_frozen", False) for b in cls.__bases__)
        if cls._frozen:
            # (a method of Record's put on a subclass: beyond what mypy follows)
            cls.__hash__ = Record._hash  # type: ignore[assignment]
        else:
            cls.__hash__ = None  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes at most {len(fields)} "
                            f"arguments ({len(args)} given)")
        values: Dict[str, Any] = dict(zip(fields, args))
        for name in fields[len(args):]:
            if name in kwargs:
                values[name] = kwargs.pop(name)
                continue
            default = getattr(type(self), name, _MISSING)
            if default is _MISSING:
                raise TypeError(f"{type(self).__name__}() missing the argument {name!r}")
            values[name] = default.make() if isinstance(default, Factory) else default
        if kwargs:
            extra = next(iter(kwargs))
            if extra in values:
                raise TypeError(f"{type(self).__name__}() got {extra!r} twice")
            raise TypeError(f"{type(self).__name__}() got an unexpected argument {extra!r}")
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._frozen:
            raise AttributeError(f"cannot assign to field {name!r}: "
                                 f"{type(self).__name__} is frozen")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        if self._frozen:
            raise AttributeError(f"cannot delete field {name!r}: "
                                 f"{type(self).__name__} is frozen")
        object.__delattr__(self, name)

    def _values(self) -> Tuple[Any, ...]:
        data = self.__dict__
        return tuple(data[name] for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def _hash(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        data = self.__dict__
        shown = ", ".join(f"{name}={data[name]!r}" for name in self._fields)
        return f"{type(self).__qualname__}({shown})"

    def replace(self, **changes: Any) -> Any:
        """A copy with `changes` (field=value) made."""
        values = {name: self.__dict__[name] for name in self._fields}
        values.update(changes)
        return type(self)(**values)


_MISSING = object()


class LazyModule(ModuleType):
    """A module imported on first use of one of its names (`psutil`, say,
    which costs a tenth of what `pexen-harness status` takes, and which most
    runs need only when something goes wrong). `install` makes the importing
    module's global name point at the real module from then on."""

    def __init__(self, name: str, into: Optional[dict] = None,
                 as_name: Optional[str] = None) -> None:
        super().__init__(name)
        self._into = into
        self._as = as_name or name

    def __getattr__(self, attr: str) -> Any:
        real = importlib.import_module(self.__name__)
        into = self.__dict__.get("_into")
        if into is not None:
            into[self.__dict__["_as"]] = real
        return getattr(real, attr)


_boot_time: Optional[float] = None


def start_ticks(pid: int) -> Optional[bytes]:
    """When process `pid` started, as /proc says it (clock ticks after boot,
    the digits as they are: exact, unlike a time computed from them), or None
    where it cannot say (gone, no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) S ppid ...": the fields after the name, which may hold
    # anything; the start time is the 22nd field
    return stat[stat.rfind(b")") + 2:].split()[19]


def process_start_time(pid: int) -> Optional[float]:
    """When process `pid` started (seconds since the epoch, as psutil's
    `create_time` gives it on Linux), or None if it is gone. Read from /proc
    without psutil (whose import costs more than reading two files)."""
    global _boot_time
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        # the fields after the name (which may hold spaces and parentheses)
        ticks = int(data[data.rindex(b")") + 2:].split()[19])
        if _boot_time is None:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        _boot_time = float(line.split()[1])
                        break
        if _boot_time is None:
            raise ValueError("no btime in /proc/stat")
        return _boot_time + ticks / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):   # not Linux's /proc: ask psutil
        import psutil

        try:
            return psutil.Process(pid).create_time()
        except psutil.Error:
            return None


__all__ = ["PexenError", "PexenWarning"]


def wait_exit(pid: int, timeout: float) -> None:
    """Wait up to `timeout` seconds for child `pid` to exit, without reaping
    it, by its pidfd (Linux 5.3 and later; elsewhere, return at once): woken
    the moment it exits, where a wait with a timeout polls."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        return
    try:
        import select

        select.select([fd], [], [], timeout)
    except OSError:
        pass
    finally:
        os.close(fd)



_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds from a duration as people and other harnesses write it: a
    number (seconds: ``90``, ``2.5``), or numbers with units ``s``, ``m``,
    ``h``, ``d`` (``sec`` and ``min`` too), one after the other, spaces
    allowed (``5m``, ``1h 30m``, ``1h30m``, ``1.5h``), as tmt's and
    restraint's test metadata have them. ValueError (naming the text) for
    anything else; the caller checks the range."""
    words = text.strip().lower()
    try:
        return float(words)
    except ValueError:
        pass
    total, number, unit = 0.0, "", ""
    for char in words:
        if char.isdigit() or char == ".":
            if unit:   # a new group starts
                total += _group(number, unit, text)
                number, unit = "", ""
            number += char
        elif char.isalpha():
            unit += char
        elif char == " ":
            continue
        else:
            raise ValueError(f"not a duration: {text!r}")
    if not number or not unit:
        raise ValueError(f"not a duration: {text!r} (a number of seconds, or e.g. "
                         "'5m', '1h 30m')")
    return total + _group(number, unit, text)


def _group(number: str, unit: str, text: str) -> float:
    scale = _UNITS.get(unit)
    if scale is None or not number:
        raise ValueError(f"not a duration: {text!r} (units: s, m, h, d)")
    try:
        return float(number) * scale
    except ValueError:
        raise ValueError(f"not a duration: {text!r}") from None


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10,
               "m": 1 << 20, "mb": 1000 ** 2, "mib": 1 << 20,
               "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30,
               "t": 1 << 40, "tb": 1000 ** 4, "tib": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from a size as people write it: ``1048576``, ``64MiB``, ``64M``
    (binary, as ``ls -h`` and ``head -c`` mean it), ``64MB`` (decimal),
    ``1.5G``; case does not matter. ValueError (naming the text) for
    anything else, a negative size included."""
    words = text.strip().lower().replace(" ", "")
    number = words.rstrip("bgikmt")
    unit = words[len(number):]
    factor = _SIZE_UNITS.get(unit)
    try:
        value = float(number) if factor is not None and number else -1.0
    except ValueError:
        value = -1.0
    if factor is None or not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"not a size: {text!r} (a number of bytes, or e.g. '64MiB', "
                         "'500K', '1G')")
    return int(value * factor)


def write_atomically(path: str, write: Callable[[Any], None], prefix: str,
                     suffix: str) -> None:
    """Write the text file `path` whole or not at all: `write(f)` fills a
    temporary file beside it (UTF-8, undecodable bytes written back as they
    were), which is synced, made 0644 and renamed over `path`; on any error
    it is removed and the error raised. A reader never sees half a file."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
