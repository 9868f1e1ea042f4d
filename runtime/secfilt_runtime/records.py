"""Typed records: the part of dataclasses this package uses, at a fraction of its start-up cost.

`dataclasses` imports inspect (and with it ast, dis, tokenize, enum, re) and compiles each
class's methods with exec: on the project's VM that was ~35 ms for the import and ~1.5 ms a
class, paid by every `secfilt-runtime run` and `secfilt` start before any work (docs/
benchmarks.md). A record gets the same methods from closures over its field list instead:
nothing is compiled, and defining one costs microseconds.

Supported, as in dataclasses: fields from the class annotations in order, plain defaults,
`field(default=, default_factory=, repr=, compare=, hash=)`, `frozen=True` (immutable and
hashable), `replace`, `asdict` and `fields`. Inheritance between records is not: no record
here extends another, and refusing it keeps field order unambiguous.
"""

from __future__ import annotations

_MISSING = object()


class FrozenRecordError(AttributeError):
    """An assignment to a field of a frozen record."""


class Field:
    __slots__ = ("name", "default", "default_factory", "repr", "compare", "hash")

    def __init__(self, default=_MISSING, default_factory=_MISSING, repr=True,  # noqa: A002
                 compare=True, hash=None):  # noqa: A002
        if default is not _MISSING and default_factory is not _MISSING:
            raise ValueError("a field cannot have both a default and a default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare
        self.hash = compare if hash is None else hash

    def __repr__(self) -> str:
        return f"Field({self.name!r})"


def field(*, default=_MISSING, default_factory=_MISSING, repr=True, compare=True,  # noqa: A002
          hash=None):  # noqa: A002
    return Field(default, default_factory, repr, compare, hash)


def record(cls=None, /, *, frozen: bool = False):
    """Class decorator: `@record` or `@record(frozen=True)`."""
    if cls is None:
        return lambda c: _build(c, frozen)
    return _build(cls, frozen)


def fields(obj_or_cls) -> tuple[Field, ...]:
    try:
        return obj_or_cls.__record_fields__
    except AttributeError:
        raise TypeError(f"{obj_or_cls!r} is not a record") from None


def is_record(obj) -> bool:
    return hasattr(obj, "__record_fields__")


def replace(obj, /, **changes):
    """A copy of a record with some fields changed (frozen ones too)."""
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}
    unknown = changes.keys() - values.keys()
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    values.update(changes)
    return type(obj)(**values)


def asdict(obj):
    """Records to dicts, recursively through lists, tuples and dicts (as dataclasses.asdict)."""
    if is_record(obj):
        return {f.name: asdict(getattr(obj, f.name)) for f in obj.__record_fields__}
    if isinstance(obj, list | tuple):
        return type(obj)(asdict(v) for v in obj)
    if isinstance(obj, dict):
        return {asdict(k): asdict(v) for k, v in obj.items()}
    return obj


def _collect(cls) -> tuple[Field, ...]:
    for base in cls.__mro__[1:]:
        if "__record_fields__" in base.__dict__:
            raise TypeError(f"{cls.__name__}: a record cannot extend record {base.__name__}")
    out = []
    seen_default = None
    for name in cls.__dict__.get("__annotations__", {}):
        value = cls.__dict__.get(name, _MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if f.default is _MISSING:
            if name in cls.__dict__:
                delattr(cls, name)  # a factory's Field object must not linger as a class attribute
        else:
            setattr(cls, name, f.default)
        has_default = f.default is not _MISSING or f.default_factory is not _MISSING
        if has_default:
            seen_default = name
        elif seen_default is not None:
            raise TypeError(f"{cls.__name__}: field {name!r} without a default follows "
                            f"{seen_default!r}, which has one")
        out.append(f)
    return tuple(out)


def _build(cls, frozen: bool):
    all_fields = _collect(cls)
    names = tuple(f.name for f in all_fields)
    known = frozenset(names)
    fill = tuple((f.name, f.default, f.default_factory) for f in all_fields)
    shown = tuple(f.name for f in all_fields if f.repr)
    compared = tuple(f.name for f in all_fields if f.compare)
    hashed = tuple(f.name for f in all_fields if f.hash)
    qualname = cls.__qualname__

    def __init__(self, *args, **kwargs):
        if len(args) > len(names):
            raise TypeError(f"{qualname}() takes {len(names)} positional arguments "
                            f"but {len(args)} were given")
        values = dict(zip(names, args, strict=False))  # fewer args: defaults fill the rest
        for key in kwargs:
            if key not in known:
                raise TypeError(f"{qualname}() got an unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"{qualname}() got multiple values for argument {key!r}")
        values.update(kwargs)
        if len(values) < len(names):
            for name, default, factory in fill:
                if name in values:
                    continue
                if default is not _MISSING:
                    values[name] = default
                elif factory is not _MISSING:
                    values[name] = factory()
                else:
                    raise TypeError(f"{qualname}() missing required argument {name!r}")
        self.__dict__.update(values)

    def __repr__(self):
        inner = ", ".join(f"{n}={self.__dict__[n]!r}" for n in shown)
        return f"{qualname}({inner})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        mine, theirs = self.__dict__, other.__dict__
        return all(mine[n] == theirs[n] for n in compared)

    for method in (__init__, __repr__, __eq__):
        method.__qualname__ = f"{qualname}.{method.__name__}"
        if method.__name__ not in cls.__dict__:  # a class's own method wins, as in dataclasses
            setattr(cls, method.__name__, method)
    cls.__record_fields__ = all_fields
    if frozen:
        def __hash__(self):
            d = self.__dict__
            return hash(tuple(d[n] for n in hashed))

        def __setattr__(self, name, value):
            raise FrozenRecordError(f"cannot assign to field {name!r} of frozen {qualname}")

        def __delattr__(self, name):
            raise FrozenRecordError(f"cannot delete field {name!r} of frozen {qualname}")

        cls.__hash__ = __hash__
        cls.__setattr__ = __setattr__
        cls.__delattr__ = __delattr__
    else:
        cls.__hash__ = None  # mutable and compared by value: unhashable, as a dataclass
    return cls
