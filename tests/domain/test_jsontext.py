"""app.domain.jsontext: json.loads and json.dumps at any depth, and the same answers."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest

from app.domain import jsontext
from app.domain.jsontext import dumps_iteratively, loads_iteratively

ODD_STRINGS = ["", "é", "\u2028", "\x00", '"\\/', "\ud800", "😀", "a\nb"]
SCALARS: list[Any] = [None, True, False, 0, -1, 10**40, -(10**25), 1.5, -2e-7, 1e300, -0.0]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 6 and roll < 0.2:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 6 and roll < 0.4:
        return {rng.choice(ODD_STRINGS): random_value(rng, depth + 1) for _ in range(4)}
    return rng.choice([*SCALARS, *ODD_STRINGS, math.inf, -math.inf])


def same(a: Any, b: Any) -> bool:
    """Equal as JSON text (NaN != NaN as values, but not as text)."""
    return json.dumps(a) == json.dumps(b)


def chain_text(links: int) -> str:
    return '{"targetObject":"NOOP","nextJobs":[' * (links - 1) + '{"a":1}' + "]}" * (links - 1)


def test_the_loop_decodes_what_json_decodes() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        value = random_value(rng)
        for text in (
            json.dumps(value),
            json.dumps(value, indent=2, ensure_ascii=False),
            json.dumps(value, separators=(",", ":")),
        ):
            assert same(loads_iteratively(text), json.loads(text))
            raw = text.encode("utf-8", "surrogatepass")
            assert same(loads_iteratively(raw), json.loads(raw))


def test_the_loop_refuses_what_json_refuses() -> None:
    """Random damage to valid documents: both decoders accept or both refuse, alike."""
    rng = random.Random(11)
    marks = ["", ",", "[", "]", "{", "}", ":", '"', "x", " ", "1", "-", ".", "e", "\\"]
    for _ in range(3000):
        text = json.dumps(random_value(rng))
        at = rng.randrange(len(text) + 1)
        damaged = text[:at] + rng.choice(marks) + text[at + rng.randint(0, 2) :]
        try:
            expected: Any = ("ok", json.dumps(json.loads(damaged)))
        except ValueError:
            expected = ("refused",)
        try:
            got: Any = ("ok", json.dumps(loads_iteratively(damaged)))
        except ValueError:
            got = ("refused",)
        assert got == expected, damaged


@pytest.mark.parametrize(
    "text",
    ["", " ", "[1,]", '{"a":1,}', "{'a':1}", "[1] 2", "01", "1.", "-", '"\x01"', "nul", "[", "}"],
)
def test_invalid_documents_raise_json_decode_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        loads_iteratively(text)


def test_json_s_liberties_are_kept() -> None:
    """NaN and Infinity, big integers and the last of duplicate keys, as json.loads."""
    value = loads_iteratively('{"a": NaN, "b": [Infinity, -Infinity], "c": 1, "c": 2, "d": 1e999}')
    assert math.isnan(value["a"]) and value["b"] == [math.inf, -math.inf]
    assert value["c"] == 2 and list(value) == ["a", "b", "c", "d"] and value["d"] == math.inf
    assert loads_iteratively(str(10**100)) == 10**100
    with pytest.raises(json.JSONDecodeError, match="BOM"):
        loads_iteratively("\ufeff[]")
    with pytest.raises(UnicodeDecodeError):
        loads_iteratively(b'"\xff\xfe\xfd"')


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"b": {"x": [], "a": 1, "a": 1}}',
        '[{"c": 0}, {"d": 1, "a": null, "a": {}}]',
    ],
)
def test_unique_keys_refuses_a_key_named_twice(text: str) -> None:
    for decode in (jsontext.loads, loads_iteratively):
        with pytest.raises(jsontext.DuplicateKeyError, match='duplicate key "a"') as caught:
            decode(text, unique_keys=True)
        assert caught.value.key == "a" and isinstance(caught.value, ValueError)
        assert decode(text) == json.loads(text)  # by default, as json: the last one wins
    assert loads_iteratively('{"a": {"a": 1}, "b": [{"a": 2}]}', unique_keys=True) == {
        "a": {"a": 1},
        "b": [{"a": 2}],
    }


def test_unique_keys_past_the_recursion_limit() -> None:
    deep = chain_text(5_000)
    assert jsontext.dumps(jsontext.loads(deep, unique_keys=True)) == deep
    repeated = deep.replace('{"a":1}', '{"a":1,"a":1}')
    with pytest.raises(jsontext.DuplicateKeyError, match='duplicate key "a"'):
        jsontext.loads(repeated, unique_keys=True)


def test_deep_documents_decode_without_recursion() -> None:
    text = chain_text(10_000)
    with pytest.raises(RecursionError):
        json.loads(text)
    node = jsontext.loads(text)
    links = 1
    while "nextJobs" in node:
        node = node["nextJobs"][0]
        links += 1
    assert links == 10_000 and node == {"a": 1}
    assert jsontext.loads("[" * 50_000 + "]" * 50_000) is not None


def test_max_depth_bounds_a_body_of_brackets() -> None:
    assert loads_iteratively("[" * 10 + "]" * 10, max_depth=10) is not None
    with pytest.raises(json.JSONDecodeError, match="nested deeper than 10 levels"):
        loads_iteratively("[" * 11 + "]" * 11, max_depth=10)
    with pytest.raises(json.JSONDecodeError, match="nested deeper than 2000 levels"):
        jsontext.loads("[" * 100_000, max_depth=2000)


def test_the_loop_encodes_what_json_encodes() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        value = random_value(rng)
        for options in ({}, {"sort_keys": True}, {"ensure_ascii": False}):
            expected = json.dumps(value, separators=(",", ":"), **options)  # type: ignore[arg-type]
            assert dumps_iteratively(value, **options) == expected  # type: ignore[arg-type]
        assert dumps_iteratively(value, separators=(", ", ": ")) == json.dumps(value)
    assert dumps_iteratively({1: [(2,)], None: 0.5, False: 0, 2.5: 1}) == json.dumps(
        {1: [(2,)], None: 0.5, False: 0, 2.5: 1}, separators=(",", ":")
    )
    with pytest.raises(TypeError):
        dumps_iteratively({"a": object()})
    for not_finite in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="not JSON compliant"):
            dumps_iteratively({"a": [not_finite]}, allow_nan=False)


def test_deep_documents_encode_and_round_trip() -> None:
    text = chain_text(10_000)
    value = jsontext.loads(text)
    with pytest.raises(RecursionError):
        json.dumps(value)
    assert jsontext.dumps(value) == text
    assert jsontext.loads(jsontext.dumps(value, separators=(", ", ": "))) is not None
