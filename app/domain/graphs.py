"""Rules of a dependency graph (a model's assets and "downstream depends on upstream" edges).

Pure functions over asset names, so the store, the API and the runs that follow all answer
the same way: which cycle a new dependency would close, the deterministic order a run
refreshes assets in, the levels that may refresh side by side, and who is upstream or
downstream of whom. Every walk is a loop, never recursion, so no graph exhausts the stack.
"""

from __future__ import annotations

import graphlib
import heapq
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

# (upstream, downstream): the downstream depends on (waits for) the upstream.
Edge = tuple[str, str]


class CycleFound(ValueError):
    """The graph has a cycle; ``cycle`` names it in "depends on" order, first == last."""

    def __init__(self, cycle: list[str]):
        super().__init__(describe_cycle(cycle))
        self.cycle = cycle


def depends_on(edges: Iterable[Edge]) -> dict[str, set[str]]:
    """downstream -> its direct upstreams."""
    found: dict[str, set[str]] = {}
    for upstream, downstream in edges:
        found.setdefault(downstream, set()).add(upstream)
    return found


def required_by(edges: Iterable[Edge]) -> dict[str, set[str]]:
    """upstream -> its direct downstreams."""
    found: dict[str, set[str]] = {}
    for upstream, downstream in edges:
        found.setdefault(upstream, set()).add(downstream)
    return found


def find_cycle(edges: Iterable[Edge], upstream: str, downstream: str) -> list[str] | None:
    """The cycle adding "``downstream`` depends on ``upstream``" would close, or None.

    It closes one when ``upstream`` already depends, directly or not, on ``downstream``.
    The cycle is given in "depends on" order from the new edge's downstream back to it:
    with A on B and B on C, adding C on A gives ``["C", "A", "B", "C"]``; a self-dependency
    ``["A", "A"]``. Of several such paths the shortest is named, ties broken by name.
    """
    if upstream == downstream:
        return [downstream, downstream]
    uphill = depends_on(edges)
    # Breadth-first from upstream along "depends on" edges, looking for downstream.
    came_from: dict[str, str | None] = {upstream: None}
    queue = deque([upstream])
    while queue:
        node = queue.popleft()
        for nxt in sorted(uphill.get(node, ())):
            if nxt in came_from:
                continue
            came_from[nxt] = node
            if nxt == downstream:
                path = [nxt]
                step: str | None = node
                while step is not None:
                    path.append(step)
                    step = came_from[step]
                return [downstream, *reversed(path)]
            queue.append(nxt)
    return None


def describe_cycle(cycle: Sequence[str]) -> str:
    """The cycle in words: "C would depend on A, which depends on B, which depends on C"."""
    if len(cycle) == 2:
        return f"{cycle[0]} would depend on itself"
    later = "".join(f", which depends on {name}" for name in cycle[2:])
    return f"{cycle[0]} would depend on {cycle[1]}{later}"


def topological_order(names: Iterable[str], edges: Iterable[Edge]) -> list[str]:
    """Every asset, each after all it depends on: Kahn's algorithm taking the smallest
    ready name first, so the same graph always gives the same order. Raises CycleFound."""
    return [name for _, name in _kahn(names, edges)]


def levels(names: Iterable[str], edges: Iterable[Edge]) -> list[list[str]]:
    """Assets grouped by their longest path from a root (level 0: depends on nothing);
    everything in one level may refresh at once. Each level sorted by name."""
    grouped: dict[int, list[str]] = {}
    for level_of, name in _kahn(names, edges):
        grouped.setdefault(level_of, []).append(name)
    return [sorted(grouped[i]) for i in range(len(grouped))]


def _kahn(names: Iterable[str], edges: Iterable[Edge]) -> list[tuple[int, str]]:
    """(level, name) in topological order; graphlib checks the graph, a heap breaks ties."""
    edge_list = list(edges)
    uphill = depends_on(edge_list)
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in names:
        sorter.add(name)
    for upstream, downstream in edge_list:
        sorter.add(downstream, upstream)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        # graphlib names the cycle as [x, ..., x] following "depends on" backwards.
        raise CycleFound(list(reversed(exc.args[1]))) from None
    ready: list[str] = []
    level: dict[str, int] = {}
    out: list[tuple[int, str]] = []
    while sorter.is_active():
        for name in sorter.get_ready():
            heapq.heappush(ready, name)
        name = heapq.heappop(ready)
        level[name] = max((level[up] + 1 for up in uphill.get(name, ())), default=0)
        out.append((level[name], name))
        sorter.done(name)
    return out


def closing_edges(edges: Sequence[Edge]) -> list[tuple[int, list[str]]]:
    """Adding ``edges`` one by one in their order, skipping those that close a cycle: the
    index of each one that does, with the cycle it closes (as :func:`find_cycle` names it).
    A graph file's problems are all reported at once this way."""
    kept: list[Edge] = []
    closing: list[tuple[int, list[str]]] = []
    for index, (upstream, downstream) in enumerate(edges):
        cycle = find_cycle(kept, upstream, downstream)
        if cycle is None:
            kept.append((upstream, downstream))
        else:
            closing.append((index, cycle))
    return closing


def ancestors(edges: Iterable[Edge], name: str) -> set[str]:
    """Everything ``name`` depends on, directly or not."""
    return _reach(depends_on(edges), name)


def descendants(edges: Iterable[Edge], name: str) -> set[str]:
    """Everything that depends on ``name``, directly or not."""
    return _reach(required_by(edges), name)


def with_descendants(edges: Iterable[Edge], names: Iterable[str]) -> set[str]:
    """``names`` and everything that depends on any of them, in one walk of the graph."""
    starts = set(names)
    return starts | _reach(required_by(edges), *starts)


def _reach(step: Mapping[str, set[str]], *starts: str) -> set[str]:
    """What ``step`` reaches from ``starts`` in one or more steps."""
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        for nxt in step.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen - set(starts)
