"""The freshness rules without a database: status and causes, missing data since, deadlines
(plain and cron), data versions, and the tick planner on small models."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from app.domain import freshness as f
from app.domain.reconcile import Standing, plan_tick


@dataclass
class Book:
    """A model's versions in memory: ``History`` for the rules."""

    versions: dict[int, f.Version] = field(default_factory=dict)
    owner: dict[int, str] = field(default_factory=dict)

    def add(
        self,
        asset: str,
        data: str,
        at: float,
        inputs: Mapping[str, int] = (),  # type: ignore[assignment]
        code: str | None = None,
        started: float | None = None,
    ) -> f.Version:
        held = {up: (vid, self.versions[vid].data_version) for up, vid in dict(inputs).items()}
        version = f.Version(
            len(self.versions) + 1, data, code, held, at if started is None else started, at
        )
        self.versions[version.id] = version
        self.owner[version.id] = asset
        return version

    def version(self, version_id: int) -> f.Version:
        return self.versions[version_id]

    def first_arrival_after(self, asset: str, version_id: int) -> float | None:
        held = self.versions[version_id].data_version
        later = [
            v.arrived_at
            for i, v in self.versions.items()
            if self.owner[i] == asset and i > version_id and v.data_version != held
        ]
        return min(later, default=None)


def assess(book: Book, *assets: f.Asset) -> f.Assessment:
    return f.Assessment({a.name: a for a in assets}, book)


def test_status_missing_stale_with_root_causes_and_fresh() -> None:
    book = Book()
    a1 = book.add("a", "a1", 10)
    b1 = book.add("b", "b1", 11, {"a": a1.id}, code="1")
    c1 = book.add("c", "c1", 12, {"b": b1.id})
    a = f.Asset("a", current=a1)
    b = f.Asset("b", code_version="2", upstreams=("a",), current=b1)
    c = f.Asset("c", upstreams=("b",), current=c1)
    d = f.Asset("d", upstreams=("c",))
    s = assess(book, a, b, c, d)
    assert s.status("a") == f.Status(f.FRESH)
    assert s.status("b") == f.Status(f.STALE, (f.Cause(f.CODE, "b"),))
    assert s.status("c") == f.Status(f.STALE, (f.Cause(f.DEPENDENCIES, "b"),))
    assert s.status("d").status == f.MISSING
    a2 = book.add("a", "a2", 20)
    s = assess(
        book,
        f.Asset("a", current=a2),
        f.Asset("b", code_version="1", upstreams=("a",), current=b1),
        c,
    )
    assert s.status("b").causes == (f.Cause(f.DATA, "a"),)
    assert s.status("c").causes == (f.Cause(f.DEPENDENCIES, "a"),)


def test_the_same_data_version_again_is_no_new_data() -> None:
    book = Book()
    a1 = book.add("a", "same", 10)
    b1 = book.add("b", "b1", 11, {"a": a1.id})
    a2 = book.add("a", "same", 20)
    s = assess(book, f.Asset("a", current=a2), f.Asset("b", upstreams=("a",), current=b1))
    assert s.status("b").status == f.FRESH


def test_missing_since_root_jobs_under_reconcile_and_given_upstreams() -> None:
    book = Book()
    a1 = book.add("a", "a1", 10, started=8)
    src1 = book.add("src", "s1", 5)
    b1 = book.add("b", "b1", 12, {"a": a1.id, "src": src1.id})
    src = f.Asset("src", kind=f.SOURCE, current=src1)
    a = f.Asset("a", automation=f.RECONCILE, current=a1)
    b = f.Asset("b", upstreams=("a", "src"), current=b1)
    # a (a root job under reconcile) reads the world as of its start: missing since 8.
    assert assess(book, a, src, b).missing_since("b") == 8
    # Under "off", a is given: nothing is missing until a newer version of it arrives.
    off = f.Asset("a", current=a1)
    assert assess(book, off, src, b).missing_since("b") is None
    src2 = book.add("src", "s2", 30)
    newer = f.Asset("src", kind=f.SOURCE, current=src2)
    assert assess(book, off, newer, b).missing_since("b") == 30


@pytest.mark.parametrize(
    ("now", "late", "late_by"), [(150.0, False, 0.0), (160.0, False, 0.0), (161.0, True, 1.0)]
)
def test_lateness_against_a_maximum_lag(now: float, late: bool, late_by: float) -> None:
    book = Book()
    a1 = book.add("a", "a1", 105, started=100)
    asset = f.Asset("a", automation=f.RECONCILE, policy=f.Policy(60), current=a1)
    found = assess(book, asset).lateness("a", now)
    assert found is not None
    assert (found.late, found.late_by) == (late, pytest.approx(late_by))


def test_a_cron_policy_is_due_at_the_first_tick_needing_missing_data() -> None:
    policy = f.Policy(600, "0 * * * *", "UTC")  # hourly, 10 minutes of lag
    # Data missing since 09:55 is needed by the 11:00 tick (10:50 > 09:55) but not by
    # 10:00's (09:50 < 09:55).
    nine_55 = 1_700_000_000 // 3600 * 3600 + 9 * 3600 - 300
    deadline = f.policy_deadline(policy, nine_55, nine_55)
    assert deadline == nine_55 + 300 + 3600


def test_data_versions_reported_derived_or_new() -> None:
    inputs = {"a": (1, "x"), "b": (2, "y")}
    assert f.data_version({"dataVersion": "v7"}, "1", inputs, 5) == "v7"
    same = f.data_version(None, "1", inputs, 5)
    assert same == f.data_version({"other": 1}, "1", dict(reversed(inputs.items())), 6)
    assert same != f.data_version(None, "2", inputs, 5)
    assert f.data_version(None, None, inputs, 5) != f.data_version(None, None, inputs, 6)


def test_durations_read_like_the_reasons() -> None:
    assert [f.duration(s) for s in (0, 12, 120, 90, 7500)] == [
        "0 s",
        "12 s",
        "2 min",
        "1 min 30 s",
        "2 h 5 min",
    ]


def _abc(book: Book, a_started: float, b_from: f.Version, c_from: f.Version) -> f.Assessment:
    a = book.versions[max(i for i, o in book.owner.items() if o == "a")]
    return assess(
        book,
        f.Asset("a", automation=f.RECONCILE, current=a),
        f.Asset(
            "b",
            automation=f.RECONCILE,
            policy=f.Policy(300),
            upstreams=("a",),
            current=book.add("b", "b", b_from.arrived_at, {"a": b_from.id}),
        ),
        f.Asset(
            "c",
            automation=f.RECONCILE,
            policy=f.Policy(120),
            upstreams=("a",),
            current=book.add("c", "c", c_from.arrived_at, {"a": c_from.id}),
        ),
    )


def test_c_due_brings_a_along_and_b_due_reuses_a() -> None:
    book = Book()
    old = book.add("a", "a-old", 0, started=0)
    s = _abc(book, 0, old, old)
    plan = plan_tick(s, {}, {"a", "b", "c"}, now=119, tick_seconds=1)
    assert list(plan.requests) == ["a", "c"]
    assert plan.requests["a"] == "a: new data needed by c (maximum lag 2 min)"
    assert "needs new data from a" in plan.requests["c"]
    # Later a was refreshed for c at 200; b's deadline (0 + 300) comes: b alone.
    fresh = book.add("a", "a-new", 201, started=200)
    s = _abc(book, 200, old, fresh)
    plan = plan_tick(s, {}, {"a", "b", "c"}, now=299, tick_seconds=1)
    assert list(plan.requests) == ["b"]
    assert plan.requests["b"].startswith("b would be late in 1 s against maximum lag 5 min")


def test_held_and_refreshing_assets_are_not_requested_and_say_why() -> None:
    book = Book()
    s = assess(book, f.Asset("a", automation=f.RECONCILE), f.Asset("b", automation=f.RECONCILE))
    standing = {"a": Standing(held=True), "b": Standing(in_flight=True)}
    plan = plan_tick(s, standing, {"a", "b"}, now=1, tick_seconds=1)
    assert plan.requests == {}
    held = {c["condition"]: c["passed"] for c in plan.evaluations["a"].conditions}
    assert held["not held"] is False and held["not refreshing now"] is True
    assert plan.evaluations["a"].signature() != plan.evaluations["b"].signature()


def test_eager_assets_ride_along_in_topological_order_once() -> None:
    book = Book()
    src1 = book.add("src", "s1", 1)
    s = assess(
        book,
        f.Asset("src", kind=f.SOURCE, current=src1),
        f.Asset("x", automation=f.RECONCILE, upstreams=("src",)),
        f.Asset("y", automation=f.RECONCILE, upstreams=("x",)),
        f.Asset("z", automation=f.OFF, upstreams=("y",)),
    )
    plan = plan_tick(s, {}, {"src", "x", "y", "z"}, now=2, tick_seconds=1)
    assert plan.requests == {"x": "x is missing", "y": "y is missing"}
