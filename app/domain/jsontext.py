"""JSON text in and out without recursion, so that a deep job tree (a chain of thousands of
links is thousands of nested objects) cannot exhaust the stack.

Python's ``json`` module recurses once per nesting level in both directions and gives up
cleanly (RecursionError) near the interpreter's recursion limit, about 500 links of a chain.
Its C code is about ten times faster than a loop in Python, so :func:`loads` and :func:`dumps`
try it first and, when it gives up, do the same work in a loop that keeps containers on an
explicit stack and leaves every scalar to the ``json`` module's own helpers. Both ways accept
and produce exactly what ``json.loads`` and ``json.dumps`` do: strict strings, NaN and
Infinity, arbitrarily large integers, the last of duplicate keys (or, with
``unique_keys``, DuplicateKeyError for an object naming a key twice). Libraries that parse
iteratively (yajl through ijson) refuse NaN and integers beyond 64 bits, which ``json``
accepts; hence this module.
"""

from __future__ import annotations

import json
import math
import re
from json import JSONDecodeError
from json.decoder import scanstring  # type: ignore[attr-defined]  # the C scanner json uses
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

__all__ = [
    "DuplicateKeyError",
    "JSONDecodeError",
    "dumps",
    "dumps_iteratively",
    "loads",
    "loads_iteratively",
]

_WS = re.compile(r"[ \t\n\r]*")
# The number grammar of json.scanner: integer, fraction, exponent.
_NUMBER = re.compile(r"(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?")
_CONSTANTS: tuple[tuple[str, Any], ...] = (
    ("null", None),
    ("true", True),
    ("false", False),
    ("NaN", math.nan),
    ("Infinity", math.inf),
    ("-Infinity", -math.inf),
)


class DuplicateKeyError(ValueError):
    """An object names the same key twice (only raised when asked for ``unique_keys``)."""

    def __init__(self, key: str):
        super().__init__(f"duplicate key {json.dumps(key)} in an object")
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for the recursive decoder: a dict, or DuplicateKeyError."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return obj


def loads(
    data: str | bytes | bytearray, *, max_depth: int | None = None, unique_keys: bool = False
) -> Any:
    """``json.loads(data)`` at any depth. Past the recursion limit the loop decodes it, and
    ``max_depth`` (arrays and objects nested in each other) bounds what a hostile body can
    build there. Raises ``json.JSONDecodeError`` (a ValueError) or, for bytes in no Unicode
    encoding, UnicodeDecodeError; with ``unique_keys``, DuplicateKeyError (a ValueError) for
    an object that names a key twice, where ``json`` keeps the last."""
    try:
        if unique_keys:
            return json.loads(data, object_pairs_hook=_unique_object)
        return json.loads(data)
    except RecursionError:
        return loads_iteratively(data, max_depth=max_depth, unique_keys=unique_keys)


def loads_iteratively(
    data: str | bytes | bytearray, *, max_depth: int | None = None, unique_keys: bool = False
) -> Any:
    """:func:`loads` without trying the recursive decoder first."""
    if isinstance(data, bytes | bytearray):
        text = data.decode(json.detect_encoding(data), "surrogatepass")
    else:
        text = data
    if text.startswith("\ufeff"):
        raise JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _Decoder(text, max_depth, unique_keys).run()


class _Decoder:
    def __init__(self, text: str, max_depth: int | None, unique_keys: bool = False):
        self.text = text
        self.max_depth = max_depth
        self.unique_keys = unique_keys

    def _ws(self, pos: int) -> int:
        return _WS.match(self.text, pos).end()  # type: ignore[union-attr]

    def _key(self, pos: int) -> tuple[str, int]:
        """A member's name and colon at ``pos``; the position of its value."""
        text = self.text
        if text[pos : pos + 1] != '"':
            raise JSONDecodeError("Expecting property name enclosed in double quotes", text, pos)
        key, pos = scanstring(text, pos + 1, True)
        pos = self._ws(pos)
        if text[pos : pos + 1] != ":":
            raise JSONDecodeError("Expecting ':' delimiter", text, pos)
        return key, self._ws(pos + 1)

    def _scalar(self, pos: int) -> tuple[Any, int]:
        text = self.text
        if text[pos : pos + 1] == '"':
            return scanstring(text, pos + 1, True)
        number = _NUMBER.match(text, pos)
        if number is not None:
            integer, fraction, exponent = number.groups()
            if fraction or exponent:
                return float(integer + (fraction or "") + (exponent or "")), number.end()
            return int(integer), number.end()
        for word, value in _CONSTANTS:
            if text.startswith(word, pos):
                return value, pos + len(word)
        raise JSONDecodeError("Expecting value", text, pos)

    def run(self) -> Any:
        text, end = self.text, len(self.text)
        # Open containers, innermost last; keys[i] is the member name awaited by stack[i].
        stack: list[list[Any] | dict[str, Any]] = []
        keys: list[str] = []
        pos = self._ws(0)
        while True:
            # A value starts at pos.
            char = text[pos : pos + 1]
            if char in ("{", "["):
                if self.max_depth is not None and len(stack) >= self.max_depth:
                    raise JSONDecodeError(f"nested deeper than {self.max_depth} levels", text, pos)
                pos = self._ws(pos + 1)
                if char == "[":
                    if text[pos : pos + 1] != "]":
                        stack.append([])
                        keys.append("")
                        continue
                    value: Any = []
                    pos += 1
                else:
                    if text[pos : pos + 1] != "}":
                        key, pos = self._key(pos)
                        stack.append({})
                        keys.append(key)
                        continue
                    value = {}
                    pos += 1
            else:
                value, pos = self._scalar(pos)
            # Put the value in its container; close every container that ends here.
            while True:
                if not stack:
                    pos = self._ws(pos)
                    if pos != end:
                        raise JSONDecodeError("Extra data", text, pos)
                    return value
                top = stack[-1]
                pos = self._ws(pos)
                char = text[pos : pos + 1]
                if isinstance(top, list):
                    top.append(value)
                    closer = "]"
                else:
                    if self.unique_keys and keys[-1] in top:
                        raise DuplicateKeyError(keys[-1])
                    top[keys[-1]] = value
                    closer = "}"
                if char == ",":
                    pos = self._ws(pos + 1)
                    if closer == "}":
                        keys[-1], pos = self._key(pos)
                    break
                if char != closer:
                    raise JSONDecodeError("Expecting ',' delimiter", text, pos)
                pos += 1
                value = stack.pop()
                keys.pop()


_NOT_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})


class _Raw(str):
    """Text to emit as it is (punctuation), as opposed to a value still to encode."""


def dumps(
    obj: Any,
    *,
    sort_keys: bool = False,
    ensure_ascii: bool = True,
    separators: tuple[str, str] = (",", ":"),
    allow_nan: bool = True,
) -> str:
    """``json.dumps(obj, separators=separators)`` at any depth (same options, same text) for
    dicts, lists, tuples, strings, numbers, booleans and None; TypeError for anything else."""
    try:
        return json.dumps(
            obj,
            sort_keys=sort_keys,
            ensure_ascii=ensure_ascii,
            separators=separators,
            allow_nan=allow_nan,
        )
    except RecursionError:
        return dumps_iteratively(
            obj,
            sort_keys=sort_keys,
            ensure_ascii=ensure_ascii,
            separators=separators,
            allow_nan=allow_nan,
        )


def dumps_iteratively(
    obj: Any,
    *,
    sort_keys: bool = False,
    ensure_ascii: bool = True,
    separators: tuple[str, str] = (",", ":"),
    allow_nan: bool = True,
) -> str:
    """:func:`dumps` without trying the recursive encoder first."""
    string = encode_basestring_ascii if ensure_ascii else encode_basestring
    comma, colon = separators
    parts: list[str] = []
    stack: list[Any] = [obj]
    while stack:
        item = stack.pop()
        if type(item) is _Raw:
            parts.append(item)
        elif isinstance(item, str):
            parts.append(string(item))
        elif isinstance(item, dict):
            if not item:
                parts.append("{}")
                continue
            members = [(_key(k), v) for k, v in item.items()]
            if sort_keys:
                members.sort(key=lambda member: member[0])
            stack.append(_Raw("}"))
            for index in range(len(members) - 1, -1, -1):
                name, value = members[index]
                stack.append(value)
                stack.append(_Raw(f"{comma if index else '{'}{string(name)}{colon}"))
        elif isinstance(item, list | tuple):
            if not item:
                parts.append("[]")
                continue
            stack.append(_Raw("]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                stack.append(_Raw(comma if index else "["))
        else:
            text = _scalar_text(item)
            if not allow_nan and text in _NOT_FINITE:
                raise ValueError(f"Out of range float values are not JSON compliant: {text}")
            parts.append(text)
    return "".join(parts)


def _scalar_text(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _key(key: Any) -> str:
    """A member name as json.dumps writes it: strings as they are, scalars as their text."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return _scalar_text(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
