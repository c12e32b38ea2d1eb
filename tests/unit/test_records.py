"""``record`` behaves as ``dataclass`` does, for the features kforge uses: checked side by side."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
from dataclasses import dataclass, field

import pytest

from kforge_cli.records import record


def twin(decorator_args: dict, body: dict):
    """The same class body decorated by dataclass and by record."""
    made = []
    for decorate in (dataclass, record):
        cls = type("Point", (), {"__annotations__": dict(body["__annotations__"]),
                                 **{k: v for k, v in body.items() if k != "__annotations__"}})
        made.append(decorate(**decorator_args)(cls) if decorator_args else decorate(cls))
    return made


def outcome(function, value):
    try:
        return function(value)
    except Exception as exc:  # the same failure on both sides counts as the same behaviour
        return type(exc)


BODY = {"__annotations__": {"x": "int", "y": "int", "tags": "list", "note": "str"},
        "y": 2, "tags": field(default_factory=list), "note": field(default="n", repr=False, compare=False)}


@pytest.mark.parametrize("args", [{}, {"frozen": True}, {"frozen": True, "eq": False}, {"eq": False}])
def test_construction_repr_equality_and_hashing_match_dataclass(args):
    reference, ours = twin(args, BODY)
    for call in [((1,), {}), ((1, 5), {}), ((), {"x": 3, "tags": [1]}), ((1, 2, [3], "z"), {})]:
        a, b = reference(*call[0], **call[1]), ours(*call[0], **call[1])
        assert repr(a).replace("Point", "P") == repr(b).replace("Point", "P")
        values = [getattr(a, f.name) for f in dataclasses.fields(a)]
        assert values == [getattr(b, f.name) for f in dataclasses.fields(b)]
        same_a, same_b = reference(*call[0], **call[1]), ours(*call[0], **call[1])
        assert (a == same_a) == (b == same_b)
        assert (a != reference(99)) == (b != ours(99))
        hashable_a = reference.__hash__ is not None
        assert hashable_a == (ours.__hash__ is not None)
        if hashable_a and args.get("eq", True):
            assert outcome(hash, a) == outcome(hash, b)
    assert [f.name for f in dataclasses.fields(reference)] == [f.name for f in dataclasses.fields(ours)]
    assert dataclasses.is_dataclass(ours)


@pytest.mark.parametrize("args, kwargs, message", [
    ((), {}, "missing required argument: 'x'"),
    ((1, 2, [], "n", 5), {}, "takes 5 positional arguments but 6 were given"),
    ((1,), {"x": 2}, "got multiple values for argument 'x'"),
    ((1,), {"z": 2}, "got an unexpected keyword argument 'z'"),
])
def test_bad_calls_raise_type_error_like_dataclass(args, kwargs, message):
    reference, ours = twin({}, BODY)
    with pytest.raises(TypeError):
        reference(*args, **kwargs)
    with pytest.raises(TypeError, match=message):
        ours(*args, **kwargs)


def test_frozen_records_refuse_assignment_and_deletion():
    _, ours = twin({"frozen": True}, BODY)
    point = ours(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.x
    assert dataclasses.replace(point, x=7).x == 7 and point.x == 1


def test_default_factory_gives_each_instance_its_own_value():
    _, ours = twin({}, BODY)
    first, second = ours(1), ours(2)
    first.tags.append("a")
    assert second.tags == []


def test_post_init_runs_after_every_field_is_set_and_init_false_fields_get_defaults():
    @record(frozen=True)
    class Box:
        width: int
        height: int = 1
        area: int = field(init=False, compare=False, default=0)

        def __post_init__(self) -> None:
            object.__setattr__(self, "area", self.width * self.height)

    box = Box(3, height=4)
    assert box.area == 12
    assert box == Box(3, 4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'area'"):
        Box(1, area=3)


def test_subclasses_add_fields_and_keep_their_parents():
    @record
    class Base:
        a: int = 1

    @record
    class Child(Base):
        b: int = 2

    assert Child(5, 6) == Child(a=5, b=6)
    assert repr(Child()).endswith("Child(a=1, b=2)")
    assert Child() != Base()
    with pytest.raises(TypeError, match="cannot inherit frozen"):
        @record(frozen=True)
        class Frozen(Base):
            c: int = 3


def test_methods_the_class_defines_are_kept():
    @record
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

    assert repr(Named("x")) == "<x>"


def test_mutable_defaults_and_field_order_are_checked_as_dataclass_checks_them():
    with pytest.raises(ValueError, match="mutable default"):
        @record
        class Bad:
            items: list = []

    with pytest.raises(TypeError, match="non-default argument"):
        @record
        class Order:
            a: int = 1
            b: int


def test_identical_nan_members_compare_equal_as_in_dataclass():
    @record(frozen=True)
    class Value:
        x: float

    nan = math.nan
    assert Value(nan) == Value(nan)


def test_records_copy_pickle_and_convert_like_dataclasses():
    point = _Pickled(1, [2])
    assert pickle.loads(pickle.dumps(point)) == point
    assert copy.deepcopy(point) == point
    assert dataclasses.asdict(point) == {"x": 1, "items": [2]}


def test_recursive_repr_does_not_loop():
    node = _Node([])
    node.children.append(node)
    assert repr(node).endswith("_Node(children=[...])")


@record(frozen=True)
class _Pickled:
    x: int
    items: list = field(default_factory=list)


@record
class _Node:
    children: list
