"""Task metadata: what a task needs, gives, locks, and how it is called.

Metadata lives on the callable itself (an attribute), so factories, decorators
and plain code can all attach it, and it travels with the task into a forked
worker. Every field is checked when it is set; `Sched.add_tasks` checks again,
naming the task, because a set can still be mutated in place afterwards.
"""

from __future__ import annotations

import numbers

TYPE_CHECKING = False
if TYPE_CHECKING:   # (annotations only: typing is not loaded at run time)
    from typing import Any, Callable, Dict, Optional, Set, TypeVar, overload

    F = TypeVar("F", bound=Callable[..., Any])

SCHED_ATTR_NAME = "pexen_sched_meta_"

_SET_FIELDS = ("requires", "provides", "uses", "claims")
FIELDS = _SET_FIELDS + ("priority", "kwargs", "timeout", "rerun_on_interrupt", "when",
                        "resources")


class MetaTypeError(AttributeError, TypeError):
    """A metadata field was given a value of the wrong type.

    An `AttributeError` as in pexen 0.0.x, and a `TypeError` as one would expect.
    """


class MetaValueError(AttributeError, ValueError):
    """A metadata field was given a value of the right type but out of range."""


def _defaults() -> Dict[str, Any]:
    return {
        "requires": set(),
        "provides": set(),
        "uses": set(),
        "claims": set(),
        "priority": 0,
        "kwargs": {},
        "timeout": None,
        "rerun_on_interrupt": False,
        "when": None,
        "resources": {},
    }


# Immutable stand-ins for unset fields, shared by all (never handed out by the
# public readers, which return fresh mutable defaults).
_DEFAULTS: Dict[str, Any] = {
    "requires": frozenset(), "provides": frozenset(), "uses": frozenset(),
    "claims": frozenset(), "priority": 0, "kwargs": {}, "timeout": None,
    "rerun_on_interrupt": False, "when": None, "resources": {},
}


def _convert(field: str, value: Any) -> Any:
    """Return `value` converted for `field`, or raise naming the field."""
    if field in _SET_FIELDS:
        if isinstance(value, set):
            return value
        if isinstance(value, (list, tuple, frozenset)):
            # Kept packed: a tuple of the distinct items (48 bytes for one item,
            # where a set takes 216), turned into a set when the field is read
            # through an attribute or a get_* reader.
            try:
                return tuple(dict.fromkeys(value))
            except TypeError as exc:
                raise MetaTypeError(f"{field} holds an unhashable value: {exc}") from None
        raise MetaTypeError(f"{type(value)} cannot be used for {field}")
    if field == "priority":
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return value
        raise MetaTypeError(f"{type(value)} cannot be used for priority")
    if field == "kwargs":
        if not isinstance(value, dict):
            raise MetaTypeError(f"{type(value)} cannot be used for kwargs")
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise MetaTypeError(f"kwargs keys must be str, not {bad[0]!r}")
        return value
    if field == "timeout":
        if value is None:
            return None
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise MetaTypeError(f"{type(value)} cannot be used for timeout")
        # (typeshed's Real declares no __gt__; `not >` keeps NaN out)
        if not value > 0:  # type: ignore[operator]
            raise MetaValueError(f"timeout must be a positive number of seconds, not {value!r}")
        return value
    if field == "rerun_on_interrupt":
        if not isinstance(value, bool):
            raise MetaTypeError(f"{type(value)} cannot be used for rerun_on_interrupt "
                                "(True or False)")
        return value
    if field == "when":
        if value is None or callable(value):
            return value
        if isinstance(value, str):
            if not value.strip():
                raise MetaValueError("when must be a callable or a shell command, "
                                     "not an empty string")
            return value
        raise MetaTypeError(f"{type(value)} cannot be used for when "
                            "(a callable, or a shell command as a str)")
    if field == "resources":
        return parse_resources(value)
    raise AttributeError(f"{field} is not a valid metadata field")


def parse_resources(value: Any) -> Dict[str, float]:
    """Worker resources a task needs (on a Dask cluster: it runs only on
    workers that have them, and holds them while it runs): a dict of names
    to amounts > 0, or text ``"gpu:1"``, ``"gpu:1,mem:4"`` (``"gpu"``: 1)."""
    if isinstance(value, str):
        parsed: Dict[str, Any] = {}
        for part in value.split(","):
            name, _, amount = part.strip().partition(":")
            if not name.strip():
                raise MetaValueError(f"resources must be NAME:AMOUNT[,...], not {value!r}")
            try:
                parsed[name.strip()] = float(amount) if amount.strip() else 1.0
            except ValueError:
                raise MetaValueError(f"resources: {amount.strip()!r} is not an amount "
                                     f"(in {value!r})") from None
        value = parsed
    if not isinstance(value, dict):
        raise MetaTypeError(f"{type(value)} cannot be used for resources (a dict of "
                            "names to amounts, or 'gpu:1')")
    out: Dict[str, float] = {}
    for name, amount in value.items():
        if not isinstance(name, str) or not name.strip():
            raise MetaTypeError(f"resources names must be non-empty str, not {name!r}")
        if not isinstance(amount, numbers.Real) or isinstance(amount, bool):
            raise MetaTypeError(f"resources: the amount of {name} must be a number, "
                                f"not {amount!r}")
        if not amount > 0 or amount != amount:  # type: ignore[operator]
            raise MetaValueError(f"resources: the amount of {name} must be > 0, "
                                 f"not {amount!r}")
        out[name.strip()] = float(amount)  # type: ignore[arg-type]
    return out


class _Unset:
    """The value of a slot whose field was never set."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


class SchedMeta:
    """The metadata of one task; fields are attributes, checked when set.

    Only fields that were set (or read through an attribute) are stored, in
    slots: a suite of 100k tasks should not carry 400k empty sets; the others
    hold a marker, so that reading one is not an exception raised and caught
    (the engine reads every field of every task). A set field given as a
    list, tuple or frozenset is stored packed (a tuple of its distinct items)
    until it is read through its attribute, which turns it into the set stored
    from then on, so that mutating it sticks as in 0.0.x. The engine reads the
    stored value (`get`) and never unpacks it.
    """

    __slots__ = FIELDS

    def __init__(self, **kwargs: Any) -> None:
        for put in _SETTERS:
            put(self, _UNSET)
        if kwargs:
            self.update(kwargs)

    def update(self, keyvals: Dict[str, Any]) -> None:
        """Set several fields from a dict."""
        for key, val in keyvals.items():
            setattr(self, key, val)

    def __getattr__(self, name: str) -> Any:
        # Only called for a name that is no field, or a slot left empty (an
        # instance made without __init__).
        if name not in FIELDS:
            raise AttributeError(f"{name} is not a valid metadata field")
        _SLOTS[name].__set__(self, _UNSET)
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        slot = _SLOTS.get(name)
        if slot is None:
            raise AttributeError(f"{name} is not a valid metadata field")
        slot.__set__(self, _convert(name, value))

    def get(self, name: str) -> Any:
        """A field's stored value without storing a default (for readers that
        only iterate: a set field may be a tuple of its distinct items)."""
        try:
            value = _SLOT_GET[name](self, SchedMeta)
        except AttributeError:  # an instance made without __init__
            return _DEFAULTS[name]
        return _DEFAULTS[name] if value is _UNSET else value

    def set_fields(self) -> Dict[str, Any]:
        """The fields that are set, as stored, as a new dict."""
        try:
            return {name: value for name, get in _GETTERS
                    if (value := get(self, SchedMeta)) is not _UNSET}
        except AttributeError:  # an instance made without __init__
            pass
        out = {}
        for name, get in _GETTERS:
            try:
                value = get(self, SchedMeta)
            except AttributeError:
                continue
            if value is not _UNSET:
                out[name] = value
        return out

    @property
    def data(self) -> Dict[str, Any]:
        """All fields as a dict (a copy; 0.0.x kept its fields in `data`)."""
        return {name: _public(name, self.get(name)) for name in FIELDS}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SchedMeta):
            return NotImplemented
        return all(_public(f, self.get(f)) == _public(f, other.get(f)) for f in FIELDS)

    def __repr__(self) -> str:
        return repr(self.data)

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> Dict[str, Any]:
        return self.set_fields()

    def __setstate__(self, state: Dict[str, Any]) -> None:
        for slot in _SLOT_LIST:
            slot.__set__(self, _UNSET)
        for name, value in state.items():
            _SLOTS[name].__set__(self, value)


# The slots themselves (member descriptors), by field name; the fields' class
# attributes are replaced by properties (a default read is stored; a packed
# set field is unpacked).
_SLOTS: Dict[str, Any] = {name: SchedMeta.__dict__[name] for name in FIELDS}
_SLOT_LIST = tuple(_SLOTS.values())
_SETTERS = tuple(slot.__set__ for slot in _SLOT_LIST)
_SLOT_GET = {name: slot.__get__ for name, slot in _SLOTS.items()}  # bound once
_GETTERS = tuple(_SLOT_GET.items())


def _public(name: str, value: Any) -> Any:
    """A stored value as readers see it (a packed set field as a set)."""
    return set(value) if type(value) is tuple and name in _SET_FIELDS else value


def _field_property(name: str) -> property:
    slot = _SLOTS[name]
    is_set = name in _SET_FIELDS

    def read(self: SchedMeta) -> Any:
        value = slot.__get__(self, SchedMeta)  # AttributeError: see __getattr__
        if value is _UNSET:
            # A default read through an attribute is stored, so that mutating
            # it (meta.requires.add(x), meta.kwargs["x"] = 1) sticks, as in 0.0.x.
            value = _defaults()[name]
        elif is_set and type(value) is tuple:
            value = set(value)  # from now on mutations stick
        else:
            return value
        slot.__set__(self, value)
        return value

    def delete(self: SchedMeta) -> None:
        slot.__get__(self, SchedMeta)  # AttributeError if it is not there
        slot.__set__(self, _UNSET)

    # Setting through object.__setattr__ stores the value as given (unchecked),
    # like a plain slot; SchedMeta.__setattr__ checks and converts first.
    return property(read, slot.__set__, delete, doc=f"The `{name}` field.")


for _name in FIELDS:
    setattr(SchedMeta, _name, _field_property(_name))
del _name


def assign_meta(callobj: Any, meta: Optional[SchedMeta] = None) -> SchedMeta:
    """Attach `meta` to `callobj` and return it; without `meta`, return the
    attached one, attaching an empty one first if there is none."""
    if meta is not None:
        setattr(callobj, SCHED_ATTR_NAME, meta)
        return meta
    try:
        return getattr(callobj, SCHED_ATTR_NAME)
    except AttributeError:
        new = SchedMeta()
        setattr(callobj, SCHED_ATTR_NAME, new)
        return new


def has_meta(callobj: Any) -> bool:
    """Return True if the object has metadata attached."""
    return hasattr(callobj, SCHED_ATTR_NAME)


def retrieve_meta(callobj: Any) -> SchedMeta:
    """Return the metadata attached to an object (AttributeError if none)."""
    return getattr(callobj, SCHED_ATTR_NAME)


def assign_val(callobj: Any, **kwargs: Any) -> None:
    """Set metadata fields on an object, creating its metadata if needed."""
    meta = getattr(callobj, SCHED_ATTR_NAME, None)
    if meta is None:
        setattr(callobj, SCHED_ATTR_NAME, SchedMeta(**kwargs))
    else:
        meta.update(kwargs)


def _reader(name: str) -> Callable[[Any], Any]:
    def get_field(callobj: Any) -> Any:
        # An object without metadata reads as the defaults; it is not modified
        # (the 0.0.x readers attached empty metadata as a side effect).
        meta = getattr(callobj, SCHED_ATTR_NAME, None)
        if meta is None:
            return _defaults()[name]
        return getattr(meta, name)

    get_field.__name__ = f"get_{name}"
    get_field.__doc__ = f"Return the `{name}` metadata field of a task."
    return get_field


get_requires: Callable[[Any], Set[Any]] = _reader("requires")
get_provides: Callable[[Any], Set[Any]] = _reader("provides")
get_uses: Callable[[Any], Set[Any]] = _reader("uses")
get_claims: Callable[[Any], Set[Any]] = _reader("claims")
get_priority: Callable[[Any], Any] = _reader("priority")
get_kwargs: Callable[[Any], Dict[str, Any]] = _reader("kwargs")
get_timeout: Callable[[Any], Optional[float]] = _reader("timeout")
get_rerun_on_interrupt: Callable[[Any], bool] = _reader("rerun_on_interrupt")
get_when: Callable[[Any], Any] = _reader("when")


if TYPE_CHECKING:
    @overload
    def func_meta(func: F) -> F: ...
    @overload
    def func_meta(func: None = None, **kwargs: Any) -> Callable[[F], F]: ...


def func_meta(func: Any = None, **kwargs: Any) -> Any:
    """Decorator attaching metadata: bare (`@func_meta`) or with fields
    (`@func_meta(priority=10, kwargs={'version': 'Last'})`)."""
    if func is None:

        def decorate_func_meta(func: F) -> F:
            assign_val(func, **kwargs)
            return func

        return decorate_func_meta
    assign_val(func)
    return func


__all__ = [
    "FIELDS",
    "MetaTypeError",
    "MetaValueError",
    "SCHED_ATTR_NAME",
    "SchedMeta",
    "assign_meta",
    "assign_val",
    "func_meta",
    "get_claims",
    "get_kwargs",
    "get_priority",
    "get_provides",
    "get_requires",
    "get_rerun_on_interrupt",
    "get_timeout",
    "get_uses",
    "get_when",
    "has_meta",
    "retrieve_meta",
]
