"""Dependency graph rules, table-driven: no database."""

from __future__ import annotations

import itertools
import random

import pytest

from app.domain.graphs import (
    CycleFound,
    Edge,
    ancestors,
    closing_edges,
    descendants,
    describe_cycle,
    find_cycle,
    levels,
    topological_order,
)


def on(spec: str) -> list[Edge]:
    """ "B>A C>B" -> B depends on A, C depends on B, as (upstream, downstream) edges."""
    return [(pair.split(">")[1], pair.split(">")[0]) for pair in spec.split()]


@pytest.mark.parametrize(
    ("existing", "downstream", "upstream", "cycle"),
    [
        ("A>B B>C", "C", "A", ["C", "A", "B", "C"]),  # the example
        ("", "A", "A", ["A", "A"]),  # a self-dependency
        ("A>B", "B", "A", ["B", "A", "B"]),
        ("A>B B>C", "A", "C", None),  # redundant, not a cycle
        ("A>B", "C", "A", None),
        ("B>A", "C", "A", None),
        # Two paths back: the shortest is named.
        ("A>B B>C C>D A>D", "D", "A", ["D", "A", "D"]),
        # Two equally short paths: ties broken by name.
        ("A>C A>B B>D C>D", "D", "A", ["D", "A", "B", "D"]),
    ],
)
def test_find_cycle(existing: str, downstream: str, upstream: str, cycle: list[str] | None) -> None:
    edges = on(existing) if existing else []
    assert find_cycle(edges, upstream, downstream) == cycle


@pytest.mark.parametrize(
    ("cycle", "words"),
    [
        (["A", "A"], "A would depend on itself"),
        (["B", "A", "B"], "B would depend on A, which depends on B"),
        (["C", "A", "B", "C"], "C would depend on A, which depends on B, which depends on C"),
    ],
)
def test_describe_cycle(cycle: list[str], words: str) -> None:
    assert describe_cycle(cycle) == words


@pytest.mark.parametrize(
    ("names", "edges", "order", "grouped"),
    [
        ("", "", [], []),
        ("b a c", "", ["a", "b", "c"], [["a", "b", "c"]]),
        (
            "profit_report load_sales load_expenses",
            "profit_report>load_sales profit_report>load_expenses",
            ["load_expenses", "load_sales", "profit_report"],
            [["load_expenses", "load_sales"], ["profit_report"]],
        ),
        # Ties by name at every step, not only among the first roots.
        ("a b c z", "b>z", ["a", "c", "z", "b"], [["a", "c", "z"], ["b"]]),
        # Levels by the longest path: d is two steps from a even though c is a root.
        ("a b c d", "b>a d>b d>c", ["a", "b", "c", "d"], [["a", "c"], ["b"], ["d"]]),
        ("x y", "y>x", ["x", "y"], [["x"], ["y"]]),
    ],
)
def test_order_and_levels(
    names: str, edges: str, order: list[str], grouped: list[list[str]]
) -> None:
    pairs = on(edges) if edges else []
    assert topological_order(names.split(), pairs) == order
    assert levels(names.split(), pairs) == grouped


def test_order_is_deterministic_whatever_the_input_order() -> None:
    names = [f"n{i:02}" for i in range(30)]
    rng = random.Random(7)
    edges = [
        (names[i], names[j]) for i in range(30) for j in range(i + 1, 30) if rng.random() < 0.1
    ]
    expected = topological_order(names, edges)
    for _ in range(5):
        rng.shuffle(names)
        rng.shuffle(edges)
        assert topological_order(names, edges) == expected
    position = {name: i for i, name in enumerate(expected)}
    assert all(position[up] < position[down] for up, down in edges)


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [("A>B B>C C>A", ["A", "B", "C", "A"]), ("A>A", ["A", "A"])],
)
def test_order_of_a_cyclic_graph_names_the_cycle(edges: str, cycle: list[str]) -> None:
    with pytest.raises(CycleFound) as raised:
        topological_order({n for edge in on(edges) for n in edge}, on(edges))
    found = raised.value.cycle
    assert found[0] == found[-1]
    # The same cycle, from wherever graphlib started it.
    assert sorted(found[:-1]) == sorted(cycle[:-1])
    deps = set(on(edges))
    assert all((up, down) in deps for down, up in itertools.pairwise(found))


@pytest.mark.parametrize(
    ("edges", "closing"),
    [
        ("", []),
        ("B>A C>B", []),
        ("A>B B>C C>A", [(2, ["C", "A", "B", "C"])]),
        # The closing edge is skipped, so a later edge is judged without it.
        ("A>B B>A A>C C>A B>B", [(1, ["B", "A", "B"]), (3, ["C", "A", "C"]), (4, ["B", "B"])]),
    ],
)
def test_closing_edges_reports_every_cycle(
    edges: str, closing: list[tuple[int, list[str]]]
) -> None:
    assert closing_edges(on(edges) if edges else []) == closing


@pytest.mark.parametrize(
    ("name", "up", "down"),
    [
        ("a", set(), {"b", "c", "d"}),
        ("b", {"a"}, {"c", "d"}),
        ("d", {"a", "b", "c", "e"}, set()),
        ("e", set(), {"d"}),
        ("lonely", set(), set()),
    ],
)
def test_ancestors_and_descendants(name: str, up: set[str], down: set[str]) -> None:
    edges = on("b>a c>b d>c d>e")
    assert ancestors(edges, name) == up
    assert descendants(edges, name) == down
