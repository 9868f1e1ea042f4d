"""Validation of config.json, state, features and policy annotations against our JSON Schemas.

The schemas live in specs/ (reached here through the `schemas` symlink, which setuptools copies
into the wheel). Errors are rendered as `<source>: <dotted.path[i]>: <problem in plain words>`,
one error per call, chosen deterministically: the same document always reports the same error.

jsonschema costs ~70 ms to import, so only this module imports it, and only when called.
After the schema, `validate_config` runs the checks a schema cannot express (duplicates,
cross-field rules); they stay pure: nothing here looks at the filesystem.
"""

from __future__ import annotations

import errno

from . import jsonio
from .errors import ConfigError

# annotations are strings: `typing` (~5 ms to import) only for the type checker
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Iterable, Sequence
    from typing import Any

    from jsonschema.exceptions import ValidationError

    from .spec import Process, Spec

SCHEMA_FILES = (
    "defs.schema.json",
    "annotations.schema.json",
    "config.schema.json",
    "state.schema.json",
    "features.schema.json",
)
SECFILTER_PREFIX = "org.secfilter."
NETMASK_KEY = "org.secfilter.allowed-netmask"
ERRNO_KEY = "org.secfilter.errno"

_IDENT_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_IDENT_CHARS = _IDENT_START | frozenset("0123456789")
_TYPE_WORDS = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}

PathPart = str | int


def load_schema(name: str) -> dict[str, Any]:
    """One of SCHEMA_FILES, parsed. Read as package data so a non-editable install works too."""
    from importlib import resources  # ~10 ms of imports: only when validating for real

    text = (resources.files(__package__) / "schemas" / name).read_text(encoding="utf-8")
    return jsonio.loads(text)


_validators: dict[str, Any] = {}  # built once per process: not functools.cache (~5 ms)


def _validator(name: str) -> Any:
    validator = _validators.get(name)
    if validator is None:
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource

        schemas = {n: load_schema(n) for n in SCHEMA_FILES}
        registry = Registry().with_resources(
            (s["$id"], Resource.from_contents(s)) for s in schemas.values()
        )
        validator = _validators[name] = Draft202012Validator(schemas[name], registry=registry)
    return validator


# --- rendering -----------------------------------------------------------------------------


def _is_identifier(p: str) -> bool:
    """What ^[A-Za-z_][A-Za-z0-9_]*$ matched, without `re` (~5 ms to import): ASCII only, and
    `$` let one final newline through."""
    name = p[:-1] if p.endswith("\n") else p
    return name[:1] in _IDENT_START and _IDENT_CHARS.issuperset(name)


def format_path(parts: Iterable[PathPart]) -> str:
    """["linux", "namespaces", 2, "type"] -> "linux.namespaces[2].type"; odd keys get ["..."]."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif _is_identifier(p):
            out += f".{p}" if out else p
        else:
            out += f"[{jsonio.dumps(p)}]"
    return out


def _json(value: Any, limit: int = 60) -> str:
    text = jsonio.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_word(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


# Keywords whose message only needs the schema's value and the offending one.
_TEMPLATES = {
    "minItems": "needs at least {expected} items",
    "maxItems": "must have at most {expected} items",
    "minLength": "must be at least {expected} characters long",
    "maxLength": "must be at most {expected} characters long",
    "minimum": "must be at least {expected}, got {value}",
    "maximum": "must be at most {expected}, got {value}",
    "exclusiveMinimum": "must be greater than {expected}, got {value}",
    "exclusiveMaximum": "must be less than {expected}, got {value}",
    "pattern": "{value} does not match the pattern {expected}",
    "uniqueItems": "must not contain the same item twice",
    "additionalProperties": "has fields that are not allowed here",
    "unevaluatedProperties": "has fields that are not allowed here",
}


def _plain(error: ValidationError, show_value: bool = True) -> str:
    """The problem in words, from the failing keyword (or the subschema's own x-message)."""
    kw, expected, inst = error.validator, error.validator_value, error.instance
    schema = error.schema if isinstance(error.schema, dict) else {}
    custom = schema.get("x-message")
    if custom:
        if show_value and kw != "required" and _is_scalar(inst):
            return f"{custom}, got {_json(inst)}"
        return custom
    if kw == "required":
        missing = [k for k in expected if isinstance(inst, dict) and k not in inst]
        return f'missing required field "{missing[0] if missing else expected[0]}"'
    if kw == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        return f"must be {words}, not {_type_word(inst)}"
    if kw == "enum":
        return f"{_json(inst)} is not one of {', '.join(str(v) for v in expected)}"
    if kw == "const":
        return f"must be {_json(expected)}, got {_json(inst)}"
    if kw == "minItems" and expected == 1:
        return "must be a non-empty array"
    if kw == "minLength" and expected == 1:
        return "must be a non-empty string"
    if kw in _TEMPLATES:
        return _TEMPLATES[kw].format(expected=expected, value=_json(inst))
    if kw is None or expected is False:
        return "is not allowed here"
    return error.message


def _describe(error: ValidationError) -> tuple[list[PathPart], str]:
    path: list[PathPart] = list(error.absolute_path)
    if "propertyNames" in error.absolute_schema_path:
        # the failing instance is a key of the object at `path`, not a value
        path.append(error.instance)
        if error.validator == "minLength":
            return path, "keys must not be empty"
        return path, _plain(error, show_value=False)
    return path, _plain(error)


def _fail(source: str, path: Sequence[PathPart], message: str) -> ConfigError:
    where = format_path(path)
    return ConfigError(f"{source}: {where}: {message}" if where else f"{source}: {message}")


def _check(name: str, doc: Any, source: str, prefix: Sequence[PathPart] = ()) -> None:
    from jsonschema.exceptions import best_match

    # best_match prefers the shallowest error; among equals it keeps the first one found, and
    # jsonschema walks keywords and properties in schema order: the choice is deterministic.
    error = best_match(_validator(name).iter_errors(doc))
    if error is not None:
        path, message = _describe(error)
        raise _fail(source, [*prefix, *path], message)


# --- public API ----------------------------------------------------------------------------


def validate_config(doc: Any, source: str, *, text: bytes | None = None,
                    cache_dir: str | None = None) -> None:
    """Check a parsed config.json; raise ConfigError `<source>: <path>: <problem>` if invalid.

    With `text` (the bytes `doc` was parsed from) and `cache_dir`, a schema verdict already
    recorded for these exact bytes stands in for the schema check (validcache): a config run
    again does not import jsonschema. The checks of config_problem run every time.
    """
    from . import validcache

    cache_key = None
    if text is not None and cache_dir is not None:
        cache_key = validcache.key(text, SCHEMA_FILES)
    known = cache_key is not None and validcache.known_valid(cache_dir, cache_key)  # type: ignore
    if not known:
        _check("config.schema.json", doc, source)
    problem = config_problem(doc)
    if problem is not None:
        raise _fail(source, *problem)
    if cache_key is not None and not known:
        validcache.remember(cache_dir, cache_key)  # type: ignore[arg-type]


def validate_state(doc: Any, source: str = "state.json") -> None:
    """Check an OCI state document (what `state` prints)."""
    _check("state.schema.json", doc, source)


def validate_features(doc: Any, source: str = "features.json") -> None:
    """Check an OCI runtime features document (what `features` prints)."""
    _check("features.schema.json", doc, source)


def validate_annotations(annotations: dict[str, Any], source: str = "config.json") -> None:
    """Check annotations alone (e.g. given on a command line): the org.secfilter.* policy keys."""
    _check("annotations.schema.json", annotations, source, prefix=("annotations",))
    problem = _annotations_problem(annotations)
    if problem is not None:
        raise _fail(source, ["annotations", *problem[0]], problem[1])


def require_process(spec: Spec, source: str | None = None) -> Process:
    """The process to start: the spec makes it optional for create, but start needs it."""
    if spec.process is None:
        where = source or f"{spec.bundle}/config.json"
        raise ConfigError(
            f'{where}: missing required field "process" (needed to start the container)'
        )
    return spec.process


# --- checks a schema cannot express ---------------------------------------------------------

Problem = tuple[list[PathPart], str]


def config_problem(doc: dict[str, Any]) -> Problem | None:
    """The first rule of a schema-valid config that only code can check, or None."""
    linux = doc.get("linux") or {}
    process = doc.get("process") or {}
    for check in (
        lambda: _duplicate_namespaces(linux.get("namespaces") or []),
        lambda: _mappings_need_userns(linux),
        lambda: _rlimits_problem(process.get("rlimits") or []),
    ):
        problem = check()
        if problem is not None:
            return problem
    problem = _annotations_problem(doc.get("annotations") or {})
    if problem is not None:
        return ["annotations", *problem[0]], problem[1]
    return None


def _duplicate_namespaces(namespaces: list[dict[str, Any]]) -> Problem | None:
    # the spec: a namespace type given more than once is an error
    seen: dict[str, int] = {}
    for i, ns in enumerate(namespaces):
        first = seen.setdefault(ns["type"], i)
        if first != i:
            return (
                ["linux", "namespaces", i, "type"],
                f'"{ns["type"]}" is listed twice (also at linux.namespaces[{first}])',
            )
    return None


def _mappings_need_userns(linux: dict[str, Any]) -> Problem | None:
    # id maps are written into a user namespace: without one they would be silently ignored
    if any(ns["type"] == "user" for ns in linux.get("namespaces") or []):
        return None
    for key in ("uidMappings", "gidMappings"):
        if linux.get(key):
            return (
                ["linux", key],
                'needs a user namespace: add {"type": "user"} to linux.namespaces',
            )
    return None


def _rlimits_problem(rlimits: list[dict[str, Any]]) -> Problem | None:
    seen: dict[str, int] = {}
    for i, r in enumerate(rlimits):
        first = seen.setdefault(r["type"], i)
        if first != i:  # the spec: duplicated rlimit types are an error
            return (
                ["process", "rlimits", i, "type"],
                f'"{r["type"]}" is listed twice (also at process.rlimits[{first}])',
            )
        if r["soft"] > r["hard"]:  # setrlimit(2) would refuse it with EINVAL, after setup
            return (
                ["process", "rlimits", i],
                f"soft limit {r['soft']} is above the hard limit {r['hard']}",
            )
    return None


def _annotations_problem(annotations: dict[str, Any]) -> Problem | None:
    name = annotations.get(ERRNO_KEY)
    # the pattern admits any E-word; only the errno table knows which are real
    if isinstance(name, str) and not isinstance(getattr(errno, name, None), int):
        return [ERRNO_KEY], f"{_json(name)} is not an errno name such as EPERM or EACCES"
    value = annotations.get(NETMASK_KEY)
    if not isinstance(value, str):
        return None
    import ipaddress  # ~3 ms: only configs with a netmask need it

    for item in value.split(","):
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            return [NETMASK_KEY], f"{_json(item.strip())} is not an IPv4 or IPv6 network"
    return None


def parse_netmasks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of an already validated org.secfilter.allowed-netmask value.

    Host bits are dropped (10.1.2.3/8 means 10.0.0.0/8): the key names a mask to apply.
    """
    import ipaddress

    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in value.split(","))
