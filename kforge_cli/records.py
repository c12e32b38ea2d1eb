"""``record``: a dataclass whose methods are shared functions, not code compiled at import.

``dataclasses.dataclass`` writes the source of ``__init__``, ``__repr__``, ``__eq__``
(and, when frozen, ``__setattr__``/``__delattr__``/``__hash__``) for every class and
``exec``s it. Over the ~120 classes kforge defines, that compilation was most of the
start-up a plain ``kforge validate`` paid on top of its typer and rich imports
(measured: ``python benchmarks/bench_cli.py``; ``dataclasses._process_class`` alone took
~115 ms of ~160 ms of kforge imports on the 2-core CI machine).

A record is still a dataclass to everyone who asks: ``dataclasses.fields``,
``replace``, ``asdict`` and ``is_dataclass`` see the fields ``dataclass`` itself
collected (it runs with every method generation switched off), and type checkers see
the ``dataclass_transform`` declaration. Only the methods differ: one generic
implementation per method, specialised by closures over the class's field table.

Semantics kept: positional and keyword arguments, defaults, ``default_factory``,
``field(init=False)``, ``__post_init__``, ``compare=False`` and ``repr=False`` fields,
frozen instances (``FrozenInstanceError``), ``eq`` and the dataclass hashing rules.
Not supported (use ``dataclasses.dataclass``): ``slots``, ``order``, ``InitVar``, ``kw_only``.
Classes with very many instances on a hot path keep ``dataclass``: the generated
``__init__`` is faster per call.
"""

from __future__ import annotations

import dataclasses
import reprlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING or sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - Python 3.10 has no dataclass_transform at runtime

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda decorated: decorated


_T = TypeVar("_T", bound=type)
_MISSING = dataclasses.MISSING


@overload
def record(cls: _T, /) -> _T: ...


@overload
def record(*, frozen: bool = False, eq: bool = True, repr: bool = True) -> Callable[[_T], _T]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: Any = None, /, *, frozen: bool = False, eq: bool = True, repr: bool = True) -> Any:
    """Decorate a class like ``@dataclass`` / ``@dataclass(frozen=True, eq=False)``."""

    def wrap(target: type) -> type:
        return _make_record(target, frozen=frozen, eq=eq, with_repr=repr)

    return wrap if cls is None else wrap(cls)


def _make_record(cls: type, *, frozen: bool, eq: bool, with_repr: bool) -> type:
    own = cls.__dict__
    parents = [base for base in cls.__mro__[1:] if dataclasses.is_dataclass(base)]
    for base in parents:
        if getattr(base, "__record_frozen__", frozen) != frozen:
            kind = "frozen" if frozen else "non-frozen"
            raise TypeError(f"cannot inherit {kind} record {cls.__qualname__} from {base.__qualname__}")
    if not own.get("__doc__"):
        # dataclass would build one from inspect.signature(cls): a cost at every start, for nothing.
        cls.__doc__ = cls.__qualname__
    # Field collection, defaults, ordering and mutable-default checks: dataclass itself,
    # with every generated method switched off (frozen handled below, so no exec at all).
    dataclasses.dataclass(cls, init=False, repr=False, eq=False)
    fields = dataclasses.fields(cls)
    setattr(cls, "__record_frozen__", frozen)

    if "__init__" not in own:
        setattr(cls, "__init__", _initialiser(cls, fields))
    if with_repr and "__repr__" not in own:
        setattr(cls, "__repr__", _representation(tuple(f.name for f in fields if f.repr)))
    compared = tuple(f.name for f in fields if f.compare)
    if eq and "__eq__" not in own:
        setattr(cls, "__eq__", _equality(compared))
    explicit_hash = "__hash__" in own and own["__hash__"] is not None
    if eq and not explicit_hash:
        # The dataclass rule: equal frozen records hash alike; mutable ones are unhashable.
        setattr(cls, "__hash__", _hashing(compared) if frozen else None)
    if frozen:
        names = frozenset(f.name for f in fields)
        setattr(cls, "__setattr__", _frozen_setattr(cls, names))
        setattr(cls, "__delattr__", _frozen_delattr(cls, names))
    return cls


def _initialiser(cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> Callable[..., None]:
    in_init = tuple((f.name, f.default, f.default_factory) for f in fields if f.init)
    not_in_init = tuple((f.name, f.default, f.default_factory) for f in fields if not f.init)
    positional = tuple(name for name, _, _ in in_init)
    seen_default = False
    for name, default, factory in in_init:
        has_default = default is not _MISSING or factory is not _MISSING
        if seen_default and not has_default:
            raise TypeError(f"non-default argument {name!r} follows default argument")
        seen_default = seen_default or has_default
    accepted = frozenset(positional)
    post_init = getattr(cls, "__post_init__", None) is not None
    owner = cls.__qualname__
    assign = object.__setattr__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(positional):
            raise TypeError(f"{owner}.__init__() takes {len(positional) + 1} positional arguments "
                            f"but {len(args) + 1} were given")
        for name, value in zip(positional, args):
            if name in kwargs:
                raise TypeError(f"{owner}.__init__() got multiple values for argument {name!r}")
            kwargs[name] = value
        if len(kwargs) > len(positional) or not accepted.issuperset(kwargs):
            unexpected = next(name for name in kwargs if name not in accepted)
            raise TypeError(f"{owner}.__init__() got an unexpected keyword argument {unexpected!r}")
        for name, default, factory in in_init:
            if name in kwargs:
                value = kwargs[name]
            elif default is not _MISSING:
                value = default
            elif factory is not _MISSING:
                value = factory()
            else:
                raise TypeError(f"{owner}.__init__() missing required argument: {name!r}")
            assign(self, name, value)
        for name, default, factory in not_in_init:
            if default is not _MISSING:
                assign(self, name, default)
            elif factory is not _MISSING:
                assign(self, name, factory())
        if post_init:
            self.__post_init__()

    __init__.__qualname__ = f"{owner}.__init__"
    return __init__


def _representation(names: tuple[str, ...]) -> Callable[[Any], str]:
    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__qualname__}({inner})"

    return __repr__


def _equality(names: tuple[str, ...]) -> Callable[[Any, Any], Any]:
    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        # Tuples, as dataclass compares: identical members (a NaN, say) are equal.
        return tuple(getattr(self, name) for name in names) == tuple(getattr(other, name) for name in names)

    return __eq__


def _hashing(names: tuple[str, ...]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, name) for name in names))

    return __hash__


def _frozen_setattr(cls: type, names: frozenset[str]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    return __setattr__


def _frozen_delattr(cls: type, names: frozenset[str]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        object.__delattr__(self, name)

    return __delattr__
