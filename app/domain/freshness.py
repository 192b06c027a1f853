"""What an asset's data is: its status (MISSING, STALE with causes, FRESH), how far behind
the root data it is, and when its freshness policy is next at stake.

Pure rules over one model's assets and their recorded versions; the store supplies them
(``app/store/asset_versions.py``). The words are Dagster's, the definitions ours:

- A **version** is one successful refresh (or, for a source, one new observed data
  version). It remembers the data version of every input it read.
- **STALE** causes: ``CODE`` (the asset's code version is not the one its data was made
  with), ``DATA`` (an input has a newer data version than the one read), ``DEPENDENCIES``
  (an upstream is itself stale or missing; names the root cause). A refresh that produced
  the data version it already had changes nothing downstream: propagation stops there.
- **Missing data since** (``missing_since``): the arrival time of the oldest root data the
  asset does not hold, or None when it holds everything. A root job asset reads the outside
  world, so under ``reconcile`` new data arrives there continuously: it is missing data
  from the start of its refresh on. A source, or an asset under ``off``, is *given*: data
  is missing from it only once a newer version of it has arrived.
- A freshness policy with maximum lag L is **late** when data missing for longer than L
  (``missing_since + L < now``); with a cron, when data that had arrived L before the last
  cron tick is still missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from app.domain.cron import cron_schedule

MISSING, STALE, FRESH = "MISSING", "STALE", "FRESH"
CODE, DATA, DEPENDENCIES = "CODE", "DATA", "DEPENDENCIES"
RECONCILE, OFF = "reconcile", "off"
JOB, SOURCE = "job", "source"


@dataclass(frozen=True)
class Policy:
    """A freshness policy: maximum lag in seconds, optionally by each tick of a cron."""

    max_lag: float
    cron: str | None = None
    timezone: str = "UTC"

    @classmethod
    def from_json(cls, doc: Mapping[str, object] | None) -> Policy | None:
        if not doc:
            return None
        minutes = doc["maximumLagMinutes"]
        assert isinstance(minutes, int | float)
        cron = doc.get("cronSchedule")
        return cls(
            float(minutes) * 60,
            cron if isinstance(cron, str) else None,
            str(doc.get("timezone") or "UTC"),
        )

    def describe(self) -> str:
        text = f"maximum lag {duration(self.max_lag)}"
        return f"{text} by each tick of '{self.cron}'" if self.cron else text


@dataclass(frozen=True)
class Version:
    """One recorded version of an asset (a refresh, or a source's new observed version)."""

    id: int
    data_version: str
    code_version: str | None
    # upstream name -> (its version id, its data version) as this refresh read them
    inputs: Mapping[str, tuple[int, str]]
    started_at: float  # when the refresh started (a source: when the version was observed)
    arrived_at: float  # when it was recorded as the asset's data


@dataclass(frozen=True)
class Asset:
    name: str
    kind: str = JOB
    automation: str = OFF
    code_version: str | None = None
    policy: Policy | None = None
    upstreams: tuple[str, ...] = ()
    current: Version | None = None


class History(Protocol):
    """Older versions, as far as the rules need them (the store reads them lazily)."""

    def version(self, version_id: int) -> Version: ...

    def first_arrival_after(self, asset: str, version_id: int) -> float | None:
        """When the first version of ``asset`` newer than ``version_id`` arrived."""


@dataclass(frozen=True)
class Cause:
    cause: str
    asset: str  # the asset that has the cause (for DEPENDENCIES: the root cause)

    def as_json(self) -> dict[str, str]:
        return {"cause": self.cause, "asset": self.asset}


@dataclass(frozen=True)
class Status:
    status: str
    causes: tuple[Cause, ...] = ()


@dataclass(frozen=True)
class Lateness:
    """Where an asset stands against its policy at ``now``."""

    missing_since: float | None
    deadline: float | None  # when it is (or was) late; None: nothing at stake
    late: bool
    late_by: float  # seconds past the deadline (0 when not late)


@dataclass
class Assessment:
    """Statuses of a model's assets, computed once per read or tick."""

    assets: Mapping[str, Asset]
    history: History
    _status: dict[str, Status] = field(default_factory=dict)
    _missing: dict[tuple[str, int], float | None] = field(default_factory=dict)

    def status(self, name: str) -> Status:
        """MISSING / STALE (with causes) / FRESH; memoised, ancestors first."""
        found = self._status.get(name)
        if found is None:
            found = self._status[name] = self._compute_status(self.assets[name])
        return found

    def _compute_status(self, asset: Asset) -> Status:
        current = asset.current
        if current is None:
            return Status(MISSING)
        causes: list[Cause] = []
        if asset.kind == JOB and asset.code_version != current.code_version:
            causes.append(Cause(CODE, asset.name))
        for up in asset.upstreams:
            held = current.inputs.get(up)
            latest = self.assets[up].current
            if latest is not None and (held is None or held[1] != latest.data_version):
                causes.append(Cause(DATA, up))
        for up in asset.upstreams:
            upstream = self.status(up)
            if upstream.status == MISSING:
                causes.append(Cause(DEPENDENCIES, up))
            for cause in upstream.causes:
                root = cause if cause.cause == DEPENDENCIES else Cause(DEPENDENCIES, cause.asset)
                if root not in causes:
                    causes.append(root)
        return Status(STALE, tuple(causes)) if causes else Status(FRESH)

    def given(self, name: str) -> bool:
        """A source, or an asset no reconciliation refreshes: its versions are taken as
        they come."""
        asset = self.assets[name]
        return asset.kind == SOURCE or asset.automation != RECONCILE

    def missing_since(self, name: str, version: Version | None = None) -> float | None:
        """The arrival time of the oldest root data ``version`` (default: the current one)
        does not hold; None when it holds everything. A missing asset: minus infinity."""
        asset = self.assets[name]
        version = version or asset.current
        if version is None:
            return float("-inf")
        key = (name, version.id)
        if key not in self._missing:
            self._missing[key] = self._compute_missing(asset, version)
        return self._missing[key]

    def _compute_missing(self, asset: Asset, version: Version) -> float | None:
        if asset.kind == SOURCE:
            return None
        if not asset.upstreams:
            return version.started_at  # a root job reads the world as of its start
        found: list[float] = []
        for up in asset.upstreams:
            held = version.inputs.get(up)
            if held is None:  # a dependency added since: everything of it is missing
                first = self.assets[up].current
                if first is not None:
                    found.append(first.arrived_at)
                continue
            if self.given(up):
                newer = self.history.first_arrival_after(up, held[0])
            else:
                newer = self.missing_since(up, self.history.version(held[0]))
            if newer is not None:
                found.append(newer)
        return min(found, default=None)

    def lateness(self, name: str, now: float) -> Lateness | None:
        """None for an asset without a freshness policy."""
        policy = self.assets[name].policy
        if policy is None:
            return None
        if self.assets[name].current is None:  # missing: refreshed as such, not "late"
            return Lateness(None, None, False, 0.0)
        since = self.missing_since(name)
        deadline = policy_deadline(policy, since, now)
        if deadline is None or deadline >= now:
            return Lateness(since, deadline, False, 0.0)
        return Lateness(since, deadline, True, now - deadline)


def policy_deadline(policy: Policy, missing_since: float | None, now: float) -> float | None:
    """When data missing since ``missing_since`` makes the asset late; None if never."""
    if missing_since is None:
        return None
    if policy.cron is None:
        return missing_since + policy.max_lag
    schedule = cron_schedule(policy.cron, policy.timezone)
    # The first cron tick T that needs data the asset does not hold: T - lag > missing_since.
    tick = schedule.next_after(missing_since + policy.max_lag)
    return tick


def data_version(
    reported: object, code_version: str | None, inputs: Mapping[str, tuple[int, str]], job_id: int
) -> str:
    """The data version a refresh produced: the one its job reported; else, with a code
    version, a hash of it and the inputs' data versions (same code, same inputs: same
    data); else a new one per refresh."""
    if isinstance(reported, Mapping) and isinstance(reported.get("dataVersion"), str):
        return str(reported["dataVersion"])
    if code_version is None:
        return f"refresh-{job_id}"
    digest = hashlib.sha256(code_version.encode())
    for up in sorted(inputs):
        digest.update(f"\0{up}\0{inputs[up][1]}".encode())
    return digest.hexdigest()[:16]


def duration(seconds: float) -> str:
    """12 s, 2 min, 1 min 30 s, 2 h 5 min: how the reasons and the console say a span."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] * bool(hours) + [f"{minutes} min"] * bool(minutes)
    parts += [f"{secs} s"] * bool(secs or not parts)
    return " ".join(parts[:2])


def names_topological(assets: Mapping[str, Asset]) -> Sequence[str]:
    """Asset names, upstreams first (graphlib's order over the recorded upstreams)."""
    from graphlib import TopologicalSorter

    return list(TopologicalSorter({n: a.upstreams for n, a in assets.items()}).static_order())
