"""Metadata for executables of a directory suite: a comment block near the
top of the file, a sidecar TOML file next to it, and `pexen.toml` files with
defaults for a directory and everything under it (see doc/harness.md,
"Metadata for executables").

Precedence, field by field: the directories' `pexen.toml` (outermost first),
then the comment block, then the sidecar. Anything malformed is a SuiteError
naming the file and the line; nothing is ignored silently.
"""

from __future__ import annotations

import numbers
import os
import re
import shlex
import sys

from ..util import LazyModule, Record, parse_duration

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Dict, List, Optional, Tuple

    Found = Dict[str, Tuple[Any, str]]   # field -> (value, "file:line")

# (imported when a suite has a TOML file: most executables carry comments)
tomllib: Any = LazyModule("tomllib" if sys.version_info >= (3, 11) else "tomli", globals(),
                          "tomllib")

#: The sidecar of `dir/test.sh` is `dir/test.sh.pexen.toml`.
SIDECAR_SUFFIX = ".pexen.toml"
#: Defaults for every executable in its directory and below.
DIR_FILE = "pexen.toml"
#: The comment block is looked for in the first lines of a file.
COMMENT_LINES = 40

LIST_FIELDS = ("requires", "provides", "claims", "uses")
FIELDS = LIST_FIELDS + ("priority", "timeout", "rerun_on_interrupt", "when", "resources")
#: Settings of the whole suite, only in the top directory's pexen.toml.
SUITE_FIELDS = ("prefer", "groups")
#: The exclusivity group an executable runs in (a name; see GroupDecl).
GROUP_FIELD = "group"
#: Whether the task's data directory is made before the executable starts
#: (true/false; by default, when its text names DATA_VARIABLE).
DATA_FIELD = "data"
DATA_VARIABLE = b"PEXEN_TASK_DATA"
#: The keys of a `[group]` table in a directory's pexen.toml.
GROUP_KEYS = ("name", "pool", "workers", "spare")

_COMMENT = re.compile(r"^\s*#\s*pexen:(.*)$")
_TRUE = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


class MetaSyntaxError(Exception):
    """Malformed metadata; the message names the file and line."""


class GroupDecl(Record, frozen=True):
    """An exclusivity group a directory declares (`[group]` in its
    pexen.toml): every executable under it runs in the group. `pool`,
    `workers` and `spare` left None are the run's own (--pool, -j)."""

    name: str
    pool: Optional[str] = None
    workers: Optional[int] = None
    spare: Optional[int] = None
    where: str = ""


def _group_table(value: Dict[str, Any], where: str, default_name: str) -> GroupDecl:
    """The `[group]` table of a pexen.toml, checked."""
    extra = sorted(k for k in value if k not in GROUP_KEYS)
    if extra:
        raise MetaSyntaxError(f"{where}: unknown key {extra[0]!r} in [group] (one of "
                              f"{', '.join(GROUP_KEYS)})")
    name = value.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        what = ("needs a name (name = \"...\")" if not default_name
                else f"name must be a non-empty string, not {name!r}")
        raise MetaSyntaxError(f"{where}: [group] {what}")
    pool = value.get("pool")
    if pool is not None and pool not in ("thread", "process"):
        raise MetaSyntaxError(f"{where}: [group] pool must be \"thread\" or \"process\", "
                              f"not {pool!r}")
    numbers_of: Dict[str, Optional[int]] = {}
    for key, low in (("workers", 1), ("spare", 0)):
        number = value.get(key)
        if number is not None and (not isinstance(number, int) or isinstance(number, bool)
                                   or number < low):
            raise MetaSyntaxError(f"{where}: [group] {key} must be a whole number >= {low}, "
                                  f"not {number!r}")
        numbers_of[key] = number
    return GroupDecl(name.strip(), pool, numbers_of["workers"], numbers_of["spare"], where)


def _check(field: str, value: Any, where: str) -> Any:
    """`value` (from TOML, or parsed from a comment) checked for `field`."""
    if field in SUITE_FIELDS:
        raise MetaSyntaxError(f"{where}: {field} is read only from the pexen.toml at the "
                              "top of the suite")
    if field == GROUP_FIELD:
        if not isinstance(value, str) or not value.strip():
            raise MetaSyntaxError(f"{where}: group must be the name of a group, not "
                                  f"{value!r}")
        return value.strip()
    if field == DATA_FIELD:
        if not isinstance(value, bool):
            raise MetaSyntaxError(f"{where}: data must be true or false, not {value!r}")
        return value
    if field not in FIELDS:
        raise MetaSyntaxError(f"{where}: unknown field {field!r} (one of "
                              f"{', '.join(FIELDS + (GROUP_FIELD, DATA_FIELD))})")
    if field in LIST_FIELDS:
        if isinstance(value, str):
            value = [value]
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, str) and v.strip() for v in value)):
            raise MetaSyntaxError(f"{where}: {field} must be a list of names, not {value!r}")
        return [v.strip() for v in value]
    if field == "priority":
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise MetaSyntaxError(f"{where}: priority must be a number, not {value!r}")
        return value
    if field == "timeout":
        if isinstance(value, str):   # a duration: "5m", "1h 30m" (or "30": 30 s)
            try:
                value = int(value) if value.isdigit() else parse_duration(value)
            except ValueError:
                pass
        if (not isinstance(value, numbers.Real) or isinstance(value, bool)
                or not value > 0  # type: ignore[operator]  # (typeshed's Real: no __gt__)
                or value != value or value == float("inf")):
            raise MetaSyntaxError(f"{where}: timeout must be a duration > 0 (seconds, or "
                                  f"e.g. '5m', '1h 30m'), not {value!r}")
        return value
    if field == "resources":
        from ..sched.meta import parse_resources

        try:
            return parse_resources(value)
        except (TypeError, ValueError) as exc:
            raise MetaSyntaxError(f"{where}: {exc}") from None
    if field == "when":
        if not isinstance(value, str) or not value.strip():
            raise MetaSyntaxError(f"{where}: when must be a shell command (a non-empty "
                                  f"string), not {value!r}")
        return value
    if not isinstance(value, bool):
        raise MetaSyntaxError(f"{where}: rerun_on_interrupt must be true or false, "
                              f"not {value!r}")
    return value


def _comment_value(field: str, text: str, where: str) -> Any:
    if field in LIST_FIELDS:
        return _check(field, [v for v in text.split(",")], where)
    if field == "timeout":
        return _check(field, text.strip(), where)
    if field == "priority":
        try:
            number: Any = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise MetaSyntaxError(f"{where}: {field} must be a number, not {text!r}") \
                    from None
        return _check(field, number, where)
    if field == "rerun_on_interrupt" or field == DATA_FIELD:
        if text.lower() not in _TRUE:
            raise MetaSyntaxError(f"{where}: {field} must be true or false, not {text!r}")
        return _TRUE[text.lower()]
    return _check(field, text, where)


def read_head(path: str) -> bytes:
    """The first 16 KB of a file (b"" if it cannot be read): where its
    metadata comments are looked for."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        return os.read(fd, 16384)   # (no file object: this runs for every executable)
    except OSError:
        return b""
    finally:
        os.close(fd)


def from_comment(path: str, head: Optional[bytes] = None) -> Found:
    """The `# pexen: field=value ...` lines among the first COMMENT_LINES
    lines of an executable (none in a binary file); `head`: the file's
    `read_head`, if read already."""
    if head is None:
        head = read_head(path)
    if b"\0" in head:
        return {}  # a binary
    found: Found = {}
    for number, raw in enumerate(head.decode("utf-8", "replace").splitlines()[:COMMENT_LINES],
                                 start=1):
        m = _COMMENT.match(raw)
        if m is None:
            continue
        where = f"{path}:{number}"
        try:
            # quoted as in the shell: when="uname -s | grep -q Linux"
            tokens = shlex.split(m.group(1))
        except ValueError as exc:  # an unbalanced quote, a trailing backslash
            raise MetaSyntaxError(f"{where}: {str(exc).lower()} in {m.group(1).strip()!r}") \
                from None
        for token in tokens:
            field, eq, text = token.partition("=")
            if not eq or not field or not text:
                hint = " (quote a value with spaces: field=\"a b\")" if not eq else ""
                raise MetaSyntaxError(f"{where}: expected field=value, not {token!r}{hint}")
            if field in found:
                raise MetaSyntaxError(f"{where}: {field} given twice (first at "
                                      f"{found[field][1]})")
            found[field] = (_comment_value(field, text, where), where)
    return found


def _line_of(text: str, key: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", line):
            return number
    return 1


def _read_toml(path: str) -> Tuple[str, Dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise MetaSyntaxError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
        table = tomllib.loads(text)
    except UnicodeDecodeError:
        raise MetaSyntaxError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise MetaSyntaxError(f"{path}: {exc}") from None
    return text, table


def from_toml(path: str, top: bool = False,
              decls: Optional[Dict[str, GroupDecl]] = None, rel_dir: str = "") -> Found:
    """The fields of a TOML file (a sidecar, or a directory's pexen.toml;
    `top`: the suite's own, where the suite settings are allowed too and left
    out). A directory's `[group]` table (`decls` given, `rel_dir` the
    directory in the suite) is added to `decls` and makes its group the
    default `group` of what is under it."""
    text, table = _read_toml(path)
    found: Found = {}
    for key, value in table.items():
        if top and key in SUITE_FIELDS:
            continue
        if key == GROUP_FIELD and isinstance(value, dict):
            where = f"{path}:{_table_line(text, key)}"
            if decls is None:
                raise MetaSyntaxError(f"{where}: a [group] is declared in a directory's "
                                      f"{DIR_FILE}, not in a sidecar")
            decl = _group_table(value, where, rel_dir.replace(os.sep, "/"))
            other = decls.get(decl.name)
            if other is not None and other.where != decl.where:
                raise MetaSyntaxError(f"{where}: group {decl.name!r} is declared twice (also "
                                      f"at {other.where})")
            decls[decl.name] = decl
            found[key] = (decl.name, where)
            continue
        where = f"{path}:{_line_of(text, key)}"
        found[key] = (_check(key, value, where), where)
    return found


def _table_line(text: str, name: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"^\s*\[\s*{re.escape(name)}\s*\]", line):
            return number
    return _line_of(text, name)


def suite_groups(top: str) -> Tuple[List[str], str]:
    """The `groups` list of the suite directory `top` (its pexen.toml): the
    order groups run in; and where it is (file:line)."""
    path = os.path.join(top, DIR_FILE)
    if not os.path.isfile(path):
        return [], path
    text, table = _read_toml(path)
    value = table.get("groups", [])
    where = f"{path}:{_line_of(text, 'groups')}"
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                              for v in value):
        raise MetaSyntaxError(f"{where}: groups must be a list of group names, not "
                              f"{value!r}")
    return [v.strip() for v in value], where


def suite_prefer(top: str) -> List[str]:
    """The `prefer` list of the suite directory `top` (its pexen.toml): task
    keys to choose first as providers (see pexen.factory.select)."""
    path = os.path.join(top, DIR_FILE)
    if not os.path.isfile(path):
        return []
    text, table = _read_toml(path)
    value = table.get("prefer", [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                              for v in value):
        raise MetaSyntaxError(f"{path}:{_line_of(text, 'prefer')}: prefer must be a list of "
                              f"task keys, not {value!r}")
    return [v.strip() for v in value]


def for_executable(top: str, path: str, cache: Optional[Dict[str, Found]] = None,
                   decls: Optional[Dict[str, GroupDecl]] = None,
                   rel_dir: Optional[str] = None,
                   sidecar: Optional[bool] = None) -> Dict[str, Any]:
    """The metadata of executable `path` of the suite directory `top`; its
    `group`, if any, as (name, "file:line"), and the groups its directories
    declare added to `decls`. `rel_dir` (its directory relative to `top`,
    "." for `top`) and `sidecar` (whether PATH.pexen.toml exists) spare the
    caller that walked the directory a computation and a system call."""
    cache = {} if cache is None else cache
    decls = {} if decls is None else decls
    merged: Found = {}
    if rel_dir is None:
        rel_dir = os.path.relpath(os.path.dirname(path), top)
    dirs = [top]
    if rel_dir != os.curdir:
        for part in rel_dir.split(os.sep):
            dirs.append(os.path.join(dirs[-1], part))
    for d in dirs:
        if d not in cache:
            candidate = os.path.join(d, DIR_FILE)
            cache[d] = (from_toml(candidate, top=d == top, decls=decls,
                                  rel_dir=os.path.relpath(d, top) if d != top else "")
                        if os.path.isfile(candidate) else {})
        merged.update(cache[d])
    head = read_head(path)
    merged.update(from_comment(path, head))
    if sidecar is None:
        sidecar = os.path.isfile(path + SIDECAR_SUFFIX)
    if sidecar:
        merged.update(from_toml(path + SIDECAR_SUFFIX))
    out = {field: value for field, (value, _) in merged.items()}
    if GROUP_FIELD in merged:
        out[GROUP_FIELD] = merged[GROUP_FIELD]
    if DATA_FIELD not in out:
        out[DATA_FIELD] = DATA_VARIABLE in head
    return out
