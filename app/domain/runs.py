"""A run of a model as one ordinary chain: which assets it refreshes, and the ChainedJobInfo
tree that refreshes them in dependency order.

Pure rules over asset names, so the store decides only what the database knows (who is
refreshing now, what a batch has already refreshed). The compiled tree is:

- a NOOP root (the run's start), then one job per refreshed asset: the asset's own node;
- an asset that depends on others hangs below a JOIN (all_success) whose key names the
  asset (``m<model>a<asset>``) and whose ``batch`` is the run's batch ("run-<id>" for a
  refresh), so each asset's join is its own row, shared across runs of one batch only;
- every upstream in the run has one JOIN node of that join below its job; the first one
  carries the asset's job; each node's ``skipMessage`` names its upstream, so a failed
  upstream skips the asset with "skipped: upstream asset 'b' failed in batch run-17";
- an upstream outside the run that is refreshing right now adds one arrival (``expect``
  counts it) that the store hangs below that refresh's job in the other run's chain
  (:class:`ExternalArrival`); if no upstream is in the run, a node below the root carries
  the asset and counts as one more arrival.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.domain import graphs as rules

ROOT_TYPE = "NOOP"
# The generated batch of a refresh; reserved: a given batch may not look like one.
GENERATED_BATCH = re.compile(r"run-\d+")


class RunRefused(ValueError):
    """The run cannot be made as asked (HTTP 400); ``details`` names each problem."""

    def __init__(self, message: str, details: dict[str, list[str]]):
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class Asset:
    asset_id: int
    name: str
    job: Mapping[str, Any]


@dataclass(frozen=True)
class ExternalArrival:
    """A JOIN node to hang below ``job_id`` (an upstream's refresh in another run)."""

    asset: str
    upstream: str
    job_id: int
    node: dict[str, Any]


@dataclass
class RunPlan:
    """The payload to submit and how to read it back."""

    payload: dict[str, Any]
    # spec path in the payload -> the asset whose job it is
    paths: dict[str, str]
    # every asset the run lists, in topological order
    assets: list[str]
    # asset -> [(upstream, batch)] it waits for
    waits_for: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    external: list[ExternalArrival] = field(default_factory=list)


def generated_batch(run_id: int) -> str:
    return f"run-{run_id}"


def join_key(model_id: int, asset_id: int) -> str:
    return f"m{model_id}a{asset_id}"


def refresh_set(
    names: Iterable[str], edges: list[rules.Edge], named: list[str], downstream: bool
) -> list[str]:
    """The assets a refresh of ``named`` covers, in topological order."""
    chosen = set(named)
    if downstream:
        below = rules.required_by(edges)
        stack = list(named)
        while stack:
            for nxt in below.get(stack.pop(), ()):
                if nxt not in chosen:
                    chosen.add(nxt)
                    stack.append(nxt)
    return [n for n in rules.topological_order(names, edges) if n in chosen]


def plan_refresh(
    model_id: int,
    assets: Mapping[str, Asset],
    edges: list[rules.Edge],
    chosen: list[str],
    batch: str,
    in_flight: Mapping[str, tuple[str, int]],
) -> RunPlan:
    """The tree of a refresh of ``chosen`` (topologically ordered). ``in_flight``: upstream
    name -> (its batch, its refresh job id) for assets refreshing now in other runs."""
    root = _root(batch)
    uphill = rules.depends_on(edges)
    index = {name: i for i, name in enumerate(chosen)}
    nodes: dict[str, dict[str, Any]] = {}
    plan = RunPlan(root, {}, list(chosen))
    for name in chosen:
        ups = sorted((u for u in uphill.get(name, ()) if u in index), key=index.__getitem__)
        outside = sorted(u for u in uphill.get(name, ()) if u not in index and u in in_flight)
        node = _asset_node(assets[name])
        nodes[name] = node
        plan.waits_for[name] = [(u, batch) for u in ups] + [(u, in_flight[u][0]) for u in outside]
        if not ups and not outside:
            root["nextJobs"].append(node)
            continue
        key = join_key(model_id, assets[name].asset_id)
        expect = len(ups) + len(outside) + (0 if ups else 1)
        joins = [(u, _join_node(key, batch, expect, u, batch)) for u in ups]
        if not ups:
            joins = [("", _join_node(key, batch, expect, None, batch))]
            root["nextJobs"].append(joins[0][1])
        for upstream, join in joins if ups else []:
            nodes[upstream]["nextJobs"].append(join)
        joins[0][1]["nextJobs"].append(node)
        for upstream in outside:
            up_batch, job_id = in_flight[upstream]
            external = _join_node(key, batch, expect, upstream, up_batch)
            plan.external.append(ExternalArrival(name, upstream, job_id, external))
    plan.paths = _paths(root, nodes)
    return plan


def plan_batch(
    model_id: int,
    assets: Mapping[str, Asset],
    edges: list[rules.Edge],
    named: list[str],
    batch: str,
    existing: Mapping[str, int],
    forced: Iterable[str] = (),
) -> RunPlan:
    """The tree of a batch run: ``named`` refreshed now, and every downstream asset of
    them behind a batch join expecting all its upstreams in the model.

    ``existing``: asset -> its job in this batch, created by an earlier run; such an asset
    is not created again (it starts once per batch). ``forced`` named assets refresh again
    but do not arrive at their downstream joins a second time.
    """
    root = _root(batch)
    order = rules.topological_order(assets, edges)
    uphill, below = rules.depends_on(edges), rules.required_by(edges)
    nodes: dict[str, dict[str, Any]] = {}
    listed = set(named)
    for name in named:
        nodes[name] = _asset_node(assets[name])
        root["nextJobs"].append(nodes[name])
    again = set(forced)
    for name in order:  # topological: an asset is placed before its downstream is reached
        if name not in nodes or name in again:
            continue
        for down in sorted(below.get(name, ())):
            listed.add(down)
            key = join_key(model_id, assets[down].asset_id)
            expect = len(uphill.get(down, ()))
            join = _join_node(key, batch, expect, name, batch)
            nodes[name]["nextJobs"].append(join)
            if down not in nodes and down not in existing:
                nodes[down] = _asset_node(assets[down])
                join["nextJobs"].append(nodes[down])
    chosen = [n for n in order if n in listed]
    waits = {n: [(u, batch) for u in sorted(uphill.get(n, ()))] for n in chosen if n not in named}
    plan = RunPlan(root, {}, chosen, {**{n: [] for n in named}, **waits})
    plan.paths = _paths(root, nodes)
    return plan


def _root(batch: str) -> dict[str, Any]:
    return {"targetObject": f"{batch}.{ROOT_TYPE}", "nextJobs": []}


def _asset_node(asset: Asset) -> dict[str, Any]:
    node = {k: v for k, v in asset.job.items() if k != "nextJobs"}
    node["nextJobs"] = []
    return node


def _join_node(
    key: str, batch: str, expect: int, upstream: str | None, upstream_batch: str
) -> dict[str, Any]:
    parameters: dict[str, Any] = {"batch": batch, "expect": expect}
    if upstream is not None:
        parameters["skipMessage"] = (
            f"skipped: upstream asset '{upstream}' {{outcome}} in batch {upstream_batch}"
        )
    return {"targetObject": f"{key}.JOIN", "parameters": parameters, "nextJobs": []}


def _paths(root: dict[str, Any], nodes: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """Each asset node's path as the payload parser names it (``nextJobs[0].nextJobs[1]``)."""
    asset_of = {id(node): name for name, node in nodes.items()}
    found: dict[str, str] = {}
    stack: list[tuple[dict[str, Any], str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in asset_of:
            found[path] = asset_of[id(node)]
        prefix = f"{path}.nextJobs" if path else "nextJobs"
        stack.extend((child, f"{prefix}[{i}]") for i, child in enumerate(node["nextJobs"]))
    return found


def waiting_message(pending: list[tuple[str, str]]) -> str | None:
    """ "waiting for 'load_expenses' in batch 2024-03" for the (upstream, batch) pairs an
    asset still waits for; None when it waits for nothing."""
    if not pending:
        return None
    return "waiting for " + ", ".join(f"'{up}' in batch {batch}" for up, batch in pending)
