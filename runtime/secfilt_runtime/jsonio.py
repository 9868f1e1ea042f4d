"""JSON through `_json`, the C accelerator the `json` package is built on, without importing
`json`: json.decoder and json.encoder import `re` (and with it `enum`), ~12 ms of every
start on the project's VM before any work (issue 7, docs/benchmarks.md).

loads and dumps return what json.loads and json.dumps return for the arguments this package
uses. Whatever they do not handle themselves goes to `json`: every decoding error (so the
caller gets json's own JSONDecodeError, message, line and column), bytes in another encoding
than UTF-8, and what the indenting printer does not know. Error paths may import `json`.
"""

from __future__ import annotations

import _json
import errno

_WHITESPACE = " \t\n\r"  # json.decoder.WHITESPACE
_escape = _json.encode_basestring_ascii  # ensure_ascii=True, json.dumps's default


class _Decoder:
    """The attributes _json.make_scanner reads from a json.JSONDecoder built with defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


_scan = _json.make_scanner(_Decoder())


def __getattr__(name: str) -> object:
    # `except jsonio.JSONDecodeError:` evaluates the name only when something was raised
    if name == "JSONDecodeError":
        import json

        return json.JSONDecodeError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_bounded(f, limit: int) -> bytes | str:  # noqa: ANN001 - a binary or text file
    """At most `limit` bytes (characters, from a text file) of a document named where a file
    is expected: a device such as /dev/zero never ends. OSError(EFBIG) beyond the limit."""
    data = f.read(limit + 1)
    if len(data) > limit:
        unit, shift = ("MiB", 20) if limit >= 1 << 20 else ("KiB", 10)
        raise OSError(errno.EFBIG, f"larger than {limit >> shift} {unit}")
    return data


def loads(s: str | bytes | bytearray) -> object:
    """json.loads(s)."""
    try:
        text = s if isinstance(s, str) else _utf8(s)
        obj, end = _scan(text, len(text) - len(text.lstrip(_WHITESPACE)))
        if end == len(text) or not text[end:].lstrip(_WHITESPACE):
            return obj
    except Exception:  # json raises its own error below, or decodes what we cannot
        pass
    import json

    return json.loads(s)  # "Extra data", a syntax error, another encoding: json's answer


def _utf8(b: bytes | bytearray) -> str:
    """The text of bytes that json.detect_encoding would call UTF-8 (no BOM, no NUL among the
    first two bytes, as UTF-16 and UTF-32 have); anything else raises, for json to decode."""
    if not b[:2].isascii() or 0 in b[:2]:
        raise ValueError("not plain UTF-8")
    return b.decode("utf-8", "surrogatepass")


def _unserializable(o: object) -> object:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps(obj: object, *, indent: int | str | None = None,
          separators: tuple[str, str] | None = None, sort_keys: bool = False,
          default: object = None) -> str:
    """json.dumps(obj, indent=, separators=, sort_keys=, default=) (ensure_ascii, allow_nan
    and check_circular as json's defaults)."""
    if indent is not None:
        try:
            return _indented(obj, indent, separators or (",", ": "), sort_keys, default)
        except Exception:  # json raises its own error below, or writes what we cannot
            pass
        import json

        return json.dumps(obj, indent=indent, separators=separators, sort_keys=sort_keys,
                          default=default)  # type: ignore[arg-type]
    item_sep, key_sep = separators or (", ", ": ")
    # the arguments json.encoder.JSONEncoder.iterencode passes, as json.dumps does
    encode = _json.make_encoder({}, default or _unserializable, _escape, None, key_sep,
                                item_sep, sort_keys, False, True)
    return "".join(encode(obj, 0))


class _Unhandled(Exception):
    """A value the indenting printer leaves to json (default=, keys that are not strings)."""


def _float(f: float) -> str:
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "Infinity" if f > 0 else "-Infinity"
    return float.__repr__(f)


def _indented(obj: object, indent: int | str, separators: tuple[str, str], sort_keys: bool,
              default: object) -> str:
    """The C encoder cannot indent: json.encoder._make_iterencode's output, for the plain
    values `state` and friends print. A cycle, like anything unknown, is left to json."""
    if default is not None:
        raise _Unhandled
    step = indent if isinstance(indent, str) else " " * indent
    item_sep, key_sep = separators
    out: list[str] = []
    open_ids: set[int] = set()

    def value(o: object, level: int) -> None:
        if isinstance(o, str):
            out.append(_escape(o))
        elif o is None:
            out.append("null")
        elif o is True:
            out.append("true")
        elif o is False:
            out.append("false")
        elif isinstance(o, int):
            out.append(int.__repr__(o))
        elif isinstance(o, float):
            out.append(_float(o))
        elif isinstance(o, list | tuple | dict):
            container(o, level)
        else:
            raise _Unhandled

    def container(o: list | tuple | dict, level: int) -> None:
        is_dict = isinstance(o, dict)
        if not o:
            out.append("{}" if is_dict else "[]")
            return
        if id(o) in open_ids:
            raise _Unhandled
        open_ids.add(id(o))
        newline = "\n" + step * (level + 1)
        out.append(("{" if is_dict else "[") + newline)
        items = (sorted(o.items()) if sort_keys else o.items()) if is_dict else o
        for i, item in enumerate(items):
            if i:
                out.append(item_sep + newline)
            if is_dict:
                key, item = item
                if not isinstance(key, str):
                    raise _Unhandled
                out.append(_escape(key) + key_sep)
            value(item, level + 1)
        out.append("\n" + step * level + ("}" if is_dict else "]"))
        open_ids.discard(id(o))

    value(obj, 0)
    return "".join(out)
