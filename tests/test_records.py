"""records: the dataclass subset the package uses, checked against dataclasses itself."""

from __future__ import annotations

import dataclasses

import pytest

from secfilt_runtime.records import FrozenRecordError, asdict, field, fields, record, replace


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    note: str = field(default="", compare=False, repr=False)


@record
class Bag:
    items: list[int] = field(default_factory=list)
    inner: Point | None = None


@dataclasses.dataclass(frozen=True)
class DPoint:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    note: str = dataclasses.field(default="", compare=False, repr=False)


def test_construction_and_repr_match_dataclasses() -> None:
    for args, kwargs in [((1,), {}), ((1, 2), {}), ((), {"x": 3, "tags": ("a",)}),
                         ((1,), {"note": "n"})]:
        assert repr(Point(*args, **kwargs)).replace("Point", "DPoint") == \
            repr(DPoint(*args, **kwargs))


@pytest.mark.parametrize("args,kwargs,message", [
    ((), {}, "missing required argument 'x'"),
    ((1, 2, (), "", 5), {}, "takes 4 positional arguments but 5 were given"),
    ((1,), {"x": 2}, "multiple values for argument 'x'"),
    ((1,), {"z": 2}, "unexpected keyword argument 'z'"),
])
def test_bad_arguments_are_refused(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Point(*args, **kwargs)


def test_equality_and_hash_skip_uncompared_fields() -> None:
    assert Point(1, note="a") == Point(1, note="b")
    assert hash(Point(1, note="a")) == hash(Point(1, note="b"))
    assert Point(1) != Point(2)
    assert Point(1) != DPoint(1)
    assert len({Point(1), Point(1), Point(2)}) == 2


def test_frozen_refuses_assignment_and_mutable_is_unhashable() -> None:
    p = Point(1)
    with pytest.raises(FrozenRecordError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(FrozenRecordError):
        del p.x
    with pytest.raises(TypeError):
        hash(Bag())


def test_default_factory_gives_each_instance_its_own_value() -> None:
    a, b = Bag(), Bag()
    a.items.append(1)
    assert b.items == []
    assert "items" not in Bag.__dict__  # no Field object left on the class


def test_replace_asdict_fields() -> None:
    p = Point(1, 2, ("t",))
    q = replace(p, y=5)
    assert (q.x, q.y, q.tags, p.y) == (1, 5, ("t",), 2)
    with pytest.raises(TypeError, match="no field 'z'"):
        replace(p, z=1)
    assert asdict(Bag([1], Point(1))) == {"items": [1], "inner": {"x": 1, "y": 0, "tags": (),
                                                                  "note": ""}}
    assert [f.name for f in fields(Point)] == ["x", "y", "tags", "note"]


def test_definition_errors() -> None:
    with pytest.raises(TypeError, match="without a default follows"):
        @record
        class Bad:
            a: int = 1
            b: int

    with pytest.raises(TypeError, match="cannot extend record"):
        @record
        class Sub(Point):
            z: int = 0

    with pytest.raises(ValueError):
        field(default=1, default_factory=list)
