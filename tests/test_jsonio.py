"""jsonio stands in for json on the start paths (issue 7): the same values from loads, the same
text from dumps for the options callers use, json's own exceptions on errors."""

from __future__ import annotations

import json
import math

import pytest

from secfilt_runtime import jsonio

from conftest import REPO

# the real configs (podman, containerd), the OCI spec's test documents, our schemas
_CORPUS_DIRS = (REPO / "tests" / "data", REPO.parent / "shared" / "reference",
                REPO / "runtime" / "secfilt_runtime" / "schemas")
CORPUS = sorted(p for d in _CORPUS_DIRS if d.is_dir() for p in d.rglob("*.json"))

VALUES = [
    {}, [], "", 0, -0.0, 1.5, 1e300, 5e-324, 2 ** 64, -(10 ** 40), True, False, None,
    {"a": {"b": {"c": {}}}, "l": [[], [[]], [{}]], "t": (1, (2, []))},
    {"é": "\u2603 \U0001f600 \x00\x1f\"\\/ \t\n\r\b\f", "\ud800": "lone surrogate \udfff"},
    [float("nan"), float("inf"), float("-inf"), 0.1, 1e16, 123456789.123456789],
    {"z": 1, "a": 2, "m": [3, {"y": None, "b": True}]},
]

# what the callers pass: state/features (indent=2), the caches (sorted, compact, default=str),
# the tracer's log (compact), everything else plain
OPTIONS = [{}, {"indent": 2}, {"indent": 0}, {"indent": "\t"}, {"indent": 2, "sort_keys": True},
           {"separators": (",", ":")},
           {"sort_keys": True, "separators": (",", ":"), "default": str}]


def _same(a: object, b: object) -> bool:
    """Equal, NaN included, and of the same types all the way down."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)  # order too
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_the_corpus_is_there() -> None:
    names = {p.name for p in CORPUS}
    assert {"podman-4.3-run.json", "containerd-1.6-ctr-run.json"} <= names


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(REPO.parent)))
def test_files_load_and_dump_as_json_does(path) -> None:
    data = path.read_bytes()
    try:
        expected = json.loads(data)
    except ValueError as e:
        with pytest.raises(type(e)) as got:
            jsonio.loads(data)
        assert str(got.value) == str(e)
        return
    assert _same(jsonio.loads(data), expected)
    assert _same(jsonio.loads(data.decode()), expected)
    for options in OPTIONS:
        assert jsonio.dumps(expected, **options) == json.dumps(expected, **options)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_round_trip_as_json(value) -> None:
    for options in OPTIONS:
        text = jsonio.dumps(value, **options)
        assert text == json.dumps(value, **options), options
        assert _same(jsonio.loads(text), json.loads(text))
        assert _same(jsonio.loads(text.encode()), json.loads(text.encode()))


@pytest.mark.parametrize("text", [
    " \t\n\r{} \n", "NaN", "-Infinity", "[Infinity]", "1e400", "-0", "12345678901234567890123",
    '"\\ud83d\\ude00"', '"\\ud800"', '{"a": 1, "a": 2}', "[1 , 2 ]",
])
def test_odd_but_valid_documents(text) -> None:
    assert _same(jsonio.loads(text), json.loads(text))


@pytest.mark.parametrize("doc", [
    "", " ", "{", "}", "[1,]", '{"a" 1}', "{'a': 1}", "{} {}", "[1] x", "nul", "01",
    '"\x01"', '"\\x"', "\ufeff{}", b"\xef\xbb\xbf[]", b'{"a": "\xff"}', b"\xff\xfe{\x00}\x00",
    '{"a": 1}'.encode("utf-16"), '[1]'.encode("utf-32-le"), b"", "1" * 5000, 7, None,
    "[" * 100_000,
], ids=repr)
def test_errors_and_odd_inputs_are_jsons_own(doc) -> None:
    """A failure goes to json.loads itself, so the exception is json's (JSONDecodeError's
    message, line and column; UnicodeDecodeError; TypeError); bytes json decodes as UTF-16 or
    UTF-32 decode too."""
    try:
        expected = json.loads(doc)
    except (ValueError, TypeError, RecursionError) as e:
        with pytest.raises(type(e)) as got:
            jsonio.loads(doc)
        assert str(got.value) == str(e)
        if isinstance(e, json.JSONDecodeError):
            assert (got.value.lineno, got.value.colno, got.value.pos) == (e.lineno, e.colno,
                                                                          e.pos)
    else:
        assert _same(jsonio.loads(doc), expected)


def test_json_decode_error_is_jsons_class_for_except_clauses() -> None:
    assert jsonio.JSONDecodeError is json.JSONDecodeError
    with pytest.raises(AttributeError):
        jsonio.no_such_name  # noqa: B018


class _Opaque:
    def __str__(self) -> str:
        return "opaque"


@pytest.mark.parametrize("value", [
    {7: "int key", 2.5: "float", True: "t", None: "n"},  # keys json converts
    {"s": {1, 2}},                                       # needs default=
    [_Opaque()],
], ids=repr)
def test_what_the_indenting_printer_leaves_to_json(value) -> None:
    for options in OPTIONS:
        try:
            expected = json.dumps(value, **options)
        except TypeError as e:
            with pytest.raises(TypeError) as got:
                jsonio.dumps(value, **options)
            assert str(got.value) == str(e)
        else:
            assert jsonio.dumps(value, **options) == expected


def test_a_cycle_is_jsons_error() -> None:
    cycle: list = []
    cycle.append(cycle)
    for options in OPTIONS:
        with pytest.raises(ValueError, match="Circular reference detected"):
            jsonio.dumps(cycle, **options)


def test_loads_and_dumps_import_no_json() -> None:
    from test_startup_imports import imported_by

    imported = imported_by(
        "from secfilt_runtime import jsonio\n"
        "doc = jsonio.loads(b' {\"a\": [1, 2.5, null, \"\\\\u00e9\"]} ')\n"
        "assert jsonio.loads(jsonio.dumps(doc, indent=2)) == doc\n"
        "assert jsonio.dumps(doc, sort_keys=True, separators=(',', ':'), default=str)\n")
    assert "secfilt_runtime.jsonio" in imported
    assert not {"json", "re", "enum"} & imported
