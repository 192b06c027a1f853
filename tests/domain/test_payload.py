"""parse_tree: every rejection names the exact path of the bad node; valid trees get defaults."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.payload import JobSpec, Limits, PayloadError, parse_tree, split_target

KNOWN = {"NOOP", "FAIL", "LPG"}
DEFAULT = Limits()
SMALL = Limits(max_depth=4, max_nodes=5)


def parse(body: Any, limits: Limits = DEFAULT) -> JobSpec:
    return parse_tree(body, limits, KNOWN.__contains__)


def rejection(body: Any, limits: Limits = DEFAULT) -> dict[str, list[str]]:
    with pytest.raises(PayloadError) as caught:
        parse(body, limits)
    assert caught.value.status == 400
    return caught.value.details


def chain(length: int) -> dict[str, Any]:
    """A chain of ``length`` nodes, built from the leaf up (no recursion)."""
    node: dict[str, Any] = {"targetObject": f"{length}.NOOP"}
    for i in range(length - 1, 0, -1):
        node = {"targetObject": f"{i}.NOOP", "nextJobs": [node]}
    return node


def at_depth(depth: int, name: str = "") -> str:
    """The path of the node at ``depth`` (root = 1) of a chain, plus an optional field."""
    path = ".".join(["nextJobs[0]"] * (depth - 1))
    return f"{path}.{name}" if path and name else path or name


def test_defaults_are_filled_and_target_split() -> None:
    spec = parse({"targetObject": "155.LPG", "nextJobs": [{"targetObject": "NOOP"}]})
    assert (spec.target_object, spec.target_id, spec.job_type) == ("155.LPG", "155", "LPG")
    assert spec.parameters == {}
    assert spec.execute_on_error is False
    assert spec.max_attempts == 1
    assert spec.timeout_seconds is None
    child = spec.next_jobs[0]
    assert (child.target_id, child.job_type, child.path) == (None, "NOOP", "nextJobs[0]")
    assert child.next_jobs == []


def test_all_fields_are_taken() -> None:
    spec = parse(
        {
            "targetObject": "a.b.FAIL",
            "parameters": {"x": [1, {"y": None}], "s": "t"},
            "executeOnError": True,
            "maxAttempts": 100,
            "timeoutSeconds": 1,
        }
    )
    assert spec.target_id == "a.b"
    assert spec.parameters == {"x": [1, {"y": None}], "s": "t"}
    assert (spec.execute_on_error, spec.max_attempts, spec.timeout_seconds) == (True, 100, 1.0)


def test_envelope_is_unwrapped() -> None:
    spec = parse({"data": {"targetObject": "NOOP", "nextJobs": [{"targetObject": "x.LPG"}]}})
    assert [n.target_object for n in spec.walk()] == ["NOOP", "x.LPG"]
    assert rejection({"data": [1]}) == {"$": ["must be a JSON object"]}


def test_children_keep_document_order_and_paths() -> None:
    spec = parse(
        {
            "targetObject": "a.NOOP",
            "nextJobs": [
                {"targetObject": "b.NOOP", "nextJobs": [{"targetObject": "c.NOOP"}]},
                {"targetObject": "d.NOOP"},
            ],
        }
    )
    assert [(n.target_object, n.path) for n in spec.walk()] == [
        ("a.NOOP", ""),
        ("b.NOOP", "nextJobs[0]"),
        ("c.NOOP", "nextJobs[0].nextJobs[0]"),
        ("d.NOOP", "nextJobs[1]"),
    ]


@pytest.mark.parametrize("body", [[], "NOOP", 1, 1.5, None, True])
def test_root_must_be_an_object(body: Any) -> None:
    assert rejection(body) == {"$": ["must be a JSON object"]}


def test_missing_target_object_deep_in_the_tree() -> None:
    body = {
        "targetObject": "NOOP",
        "nextJobs": [{"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP"}, {}]}],
    }
    assert rejection(body) == {
        "nextJobs[0].nextJobs[1].targetObject": ["Missing data for required field."]
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("targetObject", 155, "Not a valid string."),
        ("targetObject", None, "Field may not be null."),
        ("parameters", [], "Not a valid mapping type."),
        ("parameters", "x=1", "Not a valid mapping type."),
        ("parameters", None, "Field may not be null."),
        ("executeOnError", "true", "Not a valid boolean."),
        ("executeOnError", 1, "Not a valid boolean."),
        ("executeOnError", 0.0, "Not a valid boolean."),
        ("executeOnError", None, "Field may not be null."),
        ("maxAttempts", "3", "Not a valid integer."),
        ("maxAttempts", 2.0, "Not a valid integer."),
        ("maxAttempts", True, "Not a valid integer."),
        ("maxAttempts", 0, "Must be greater than or equal to 1 and less than or equal to 100."),
        ("maxAttempts", 101, "Must be greater than or equal to 1 and less than or equal to 100."),
        ("timeoutSeconds", "5", "Not a valid number."),
        ("timeoutSeconds", False, "Not a valid number."),
        ("timeoutSeconds", [5], "Not a valid number."),
        ("timeoutSeconds", float("nan"), "Not a finite number."),
        ("timeoutSeconds", 10**400, "Number too large."),
        ("nextJobs", {}, "Not a valid list."),
        ("nextJobs", "x", "Not a valid list."),
        ("nextJobs", None, "Field may not be null."),
    ],
)
def test_wrong_type_names_the_field_at_depth(field: str, value: Any, message: str) -> None:
    body: dict[str, Any] = {"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP"}]}
    body["nextJobs"][0][field] = value
    assert rejection(body) == {f"nextJobs[0].{field}": [message]}


@pytest.mark.parametrize("value", [0, -1, 0.0, 7 * 24 * 3600 + 1, float("inf")])
def test_timeout_must_be_positive_and_bounded(value: float) -> None:
    details = rejection({"targetObject": "NOOP", "timeoutSeconds": value})
    assert list(details) == ["timeoutSeconds"]


def test_timeout_null_means_none_and_fractions_are_fine() -> None:
    assert parse({"targetObject": "NOOP", "timeoutSeconds": None}).timeout_seconds is None
    assert parse({"targetObject": "NOOP", "timeoutSeconds": 0.001}).timeout_seconds == 0.001


def test_unknown_field_at_depth() -> None:
    body = chain(3)
    body["nextJobs"][0]["nextJobs"][0]["priority"] = 5
    assert rejection(body) == {"nextJobs[0].nextJobs[0].priority": ["Unknown field."]}


@pytest.mark.parametrize(
    "target",
    [
        ".LPG",
        "155.",
        "1.2.3-x",
        "155.9LPG",
        "155.L PG",
        "LPG\n",
        "155.LPG\n",
        "\x00.LPG",
        "\ud800.LPG",
        "a\tb.LPG",
        ".",
        "x." + "L" * 65,
    ],
)
def test_bad_target_object_formats(target: str) -> None:
    details = rejection({"targetObject": "NOOP", "nextJobs": [{"targetObject": target}]})
    assert list(details) == ["nextJobs[0].targetObject"]
    assert any("<id>.<TYPE>" in m for m in details["nextJobs[0].targetObject"])


@pytest.mark.parametrize("target", ["", "x" * 252 + ".LPG"])
def test_target_object_length(target: str) -> None:
    details = rejection({"targetObject": target})
    assert any("Length must be between 1 and 255" in m for m in details["targetObject"])


def test_target_ids_may_be_any_printable_text() -> None:
    for target in ["a b.LPG", "ä/ö:1.LPG", "x" * 251 + ".LPG", "1.2.LPG", "L" * 64]:
        known = KNOWN | {"L" * 64}
        spec = parse_tree({"targetObject": target}, Limits(), known.__contains__)
        assert (spec.target_id, spec.job_type) == split_target(target)


def test_unknown_job_type_names_every_node() -> None:
    body = {
        "targetObject": "1.NOPE",
        "nextJobs": [{"targetObject": "NOOP"}, {"targetObject": "2.LGP"}],
    }
    assert rejection(body) == {
        "targetObject": ["unknown job type 'NOPE'"],
        "nextJobs[1].targetObject": ["unknown job type 'LGP'"],
    }


def test_errors_of_several_nodes_are_reported_together() -> None:
    body = {
        "targetObject": "NOOP",
        "maxAttempts": 0,
        "nextJobs": [{"targetObject": "1.NOPE"}, {"targetObject": "NOOP", "x": 1}],
    }
    assert set(rejection(body)) == {
        "maxAttempts",
        "nextJobs[0].targetObject",
        "nextJobs[1].x",
    }


def test_error_details_are_bounded() -> None:
    body = {"targetObject": "NOOP", "nextJobs": [{} for _ in range(500)]}
    details = rejection(body)
    assert 100 <= len(details) < 110
    assert "nextJobs[0].targetObject" in details


def test_non_object_node_and_non_list_next_jobs() -> None:
    assert rejection({"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP"}, 7]}) == {
        "nextJobs[1]": ["must be a JSON object"]
    }
    nested = {"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP", "nextJobs": [[]]}]}
    assert rejection(nested) == {"nextJobs[0].nextJobs[0]": ["must be a JSON object"]}


def test_depth_limit_default_is_the_node_limit() -> None:
    """By default only the node count (and the body size) bounds a chain: 10,000 links."""
    assert Limits().max_depth == Limits().max_nodes == 10_000
    spec = parse(chain(10_000))
    assert sum(1 for _ in spec.walk()) == 10_000
    deepest = list(spec.walk())[-1]
    assert deepest.path == at_depth(10_000) and deepest.target_object == "10000.NOOP"
    details = rejection(chain(10_001))
    assert details == {at_depth(10_001): ["nested deeper than 10000 levels"]}


def test_a_configured_depth_limit_still_holds() -> None:
    assert len(list(parse(chain(64), Limits(max_depth=64)).walk())) == 64
    details = rejection(chain(65), Limits(max_depth=64))
    assert details == {at_depth(65): ["nested deeper than 64 levels"]}


def test_depth_limit_counts_only_real_children() -> None:
    body = chain(64)
    leaf = body
    while "nextJobs" in leaf:
        leaf = leaf["nextJobs"][0]
    leaf["nextJobs"] = []
    assert len(list(parse(body, Limits(max_depth=64)).walk())) == 64


def test_small_depth_limit() -> None:
    assert len(list(parse(chain(4), SMALL).walk())) == 4
    assert list(rejection(chain(5), SMALL)) == [at_depth(5)]


def test_deep_limit_does_not_recurse() -> None:
    """A large configured max_depth must not turn into a RecursionError (a 500)."""
    spec = parse(chain(3000), Limits(max_depth=3000))
    assert spec.next_jobs[0].target_object == "2.NOOP"
    assert list(rejection(chain(3001), Limits(max_depth=3000))) == [at_depth(3001)]


def test_node_limit() -> None:
    children = [{"targetObject": f"{i}.NOOP"} for i in range(4)]
    wide: dict[str, Any] = {"targetObject": "NOOP", "nextJobs": children}
    assert len(list(parse(wide, SMALL).walk())) == 5
    wide["nextJobs"].append({"targetObject": "5.NOOP"})
    assert rejection(wide, SMALL) == {"nextJobs[4]": ["more than 5 jobs in one tree"]}


def test_node_limit_counts_the_whole_tree() -> None:
    body = {
        "targetObject": "NOOP",
        "nextJobs": [
            {"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP"}] * 2},
            {"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP"}] * 2},
        ],
    }
    details = rejection(body, SMALL)
    assert list(details) == ["nextJobs[1].nextJobs[0]"]


def test_ten_thousand_nodes_accepted_one_more_rejected() -> None:
    children = [{"targetObject": f"{i}.NOOP", "parameters": {"i": i}} for i in range(9_999)]
    body = {"targetObject": "NOOP", "nextJobs": children}
    spec = parse(body)
    assert len(spec.next_jobs) == 9_999
    assert spec.next_jobs[-1].parameters == {"i": 9_998}
    children.append({"targetObject": "NOOP"})
    assert list(rejection(body)) == ["nextJobs[9999]"]


def test_parameters_depth_and_non_finite_numbers() -> None:
    deep: Any = 1
    for _ in range(31):
        deep = [deep]
    assert parse({"targetObject": "NOOP", "parameters": {"x": deep}}).parameters["x"] == deep
    too_deep: dict[str, Any] = {"targetObject": "NOOP", "nextJobs": [{"targetObject": "NOOP"}]}
    too_deep["nextJobs"][0]["parameters"] = {"x": [deep]}
    assert rejection(too_deep) == {"nextJobs[0].parameters": ["nested deeper than 32 levels"]}
    for bad in (float("nan"), float("inf"), -float("inf")):
        details = rejection({"targetObject": "NOOP", "parameters": {"a": [{"b": bad}]}})
        assert details == {"parameters": ["NaN and Infinity are not JSON"]}


def test_parameters_keep_any_json_value() -> None:
    value: dict[str, Any] = {
        "s": "\u00e9",
        "n": None,
        "b": False,
        "i": 10**30,
        "f": -0.5,
        "l": [[], {}],
    }
    assert parse({"targetObject": "NOOP", "parameters": value}).parameters == value


def test_limits_are_checked_before_fields() -> None:
    body = chain(65)
    body["maxAttempts"] = "many"
    assert list(rejection(body, Limits(max_depth=64))) == [at_depth(65)]
