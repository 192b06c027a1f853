"""Applying the state machine to rows: guarded updates that also write the event log.

Every status change in jobchain is built here from :data:`app.domain.statuses.TRANSITIONS`: the
guard (``status IN <sources>``), the new status and the event row's reason all come from
the table. The hot path prebuilds its statements with :func:`logged_update`; everything else calls
:func:`apply` inside its transaction, so a change and its event row commit or vanish together.

On PostgreSQL a single-source change and its event rows are one statement (``WITH moved AS
(UPDATE jobs ... RETURNING ...) INSERT INTO job_events ... SELECT ... FROM moved``): one round
trip instead of two. SQLite cannot run an UPDATE inside a CTE, so there the event rows follow
in a second statement (:func:`record`). Either way every event's ``from_status`` is exact: the
update's guard names the only status a moved row can have left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    CTE,
    BindParameter,
    Column,
    ColumnElement,
    Connection,
    Float,
    Insert,
    Row,
    Select,
    String,
    Text,
    Update,
    bindparam,
    case,
    cast,
    insert,
    literal,
    select,
    update,
)

from app.domain.statuses import Status, Transition, sources, target
from app.store.guards import FoundBy, froms, guard
from app.store.tables import job_events, jobs

# Keep IN (...) lists well below SQLite's and PostgreSQL's bound-parameter limits.
CHUNK = 5000


def guarded_update(
    transition: Transition,
    condition: ColumnElement[bool],
    values: dict[str, Any],
    returning: Sequence[Any] = (),
    only_from: Status | None = None,
) -> Update:
    """``UPDATE jobs SET status = <target>, ... WHERE <condition> AND <guard> RETURNING id,
    attempt, ...``: a statement the hot path builds once and runs many times."""
    return _guarded(transition, condition, values, only_from).returning(
        jobs.c.id, jobs.c.attempt, *_extra(returning)
    )


def _guarded(
    transition: Transition,
    condition: ColumnElement[bool],
    values: dict[str, Any],
    only_from: Status | None = None,
    found_by: FoundBy = FoundBy.STATUS,
) -> Update:
    locked = found_by is FoundBy.LOCK  # the statement locked them under the guard
    where = condition if locked else condition & guard(transition, only_from, found_by)
    return update(jobs).where(where).values(status=target(transition).value, **values)


def _extra(returning: Sequence[Any]) -> list[Any]:
    """``returning`` without id and attempt, which every guarded update returns first."""
    seen = {"id", "attempt"}
    extra = []
    for column in returning:
        if column.name not in seen:
            seen.add(column.name)
            extra.append(column)
    return extra


_EVENT_COLUMNS = ["job_id", "from_status", "to_status", "attempt", "at", "reason"]
# An attempt's run, written on the event that ends it: (function started, ended).
Ran = tuple[float | None, float | None]
# One run for every row, or each row's by job id.
Runs = Ran | dict[int, Ran] | None
# The bind parameters :func:`apply` passes an attempt's run in.
_RAN = ("ran_from", "ran_to")


@dataclass(frozen=True)
class LoggedUpdate:
    """A guarded single-source status change and its event rows, built once.

    ``update`` (RETURNING id, attempt, ...) and then :func:`record` on SQLite;
    ``combined`` on PostgreSQL, one statement that returns the same rows. Each event's
    ``at`` is the moved row's new ``updated_at`` (the update must set it), its
    ``from_status`` the one source status the guard allows. With ``alternate``, rows whose
    ``alternate[1]`` column is not NULL are logged under ``alternate[0]`` instead (a
    transition with the same source and target). With ``ran``, the names of two bind
    parameters: the attempt's run (function started, ended), written on its event rows.
    """

    transition: Transition
    from_status: Status
    reason: str
    update: Update
    plain: Update  # ``update`` without RETURNING, for executemany
    combined: Select[Any]
    events_only: Insert  # ``combined`` without its result rows, for executemany
    moved: CTE  # the update as a CTE, for a statement that does more (see logged_together)
    alternate: tuple[Transition, Column[Any]] | None = None
    ran: tuple[str, str] | None = None

    def run(self, conn: Connection, params: Mapping[str, Any], at: float) -> list[Row[Any]]:
        """Apply the change; the rows that moved (id, attempt, plus ``returning``)."""
        if conn.dialect.name == "postgresql":
            return list(conn.execute(self.combined, dict(params)).all())
        moved = list(conn.execute(self.update, dict(params)).all())
        self._record(conn, moved, at, self._ran(params) if self.ran else None)
        return moved

    def run_many(
        self,
        conn: Connection,
        param_sets: list[dict[str, Any]],
        expected: Sequence[Row[Any]],
        at: float,
    ) -> None:
        """One parameter set per row, returning nothing (executemany). ``expected`` are the
        rows the caller holds locked and has checked will move, in the order of
        ``param_sets``: SQLite logs those; PostgreSQL logs, in the same statement, exactly
        the rows that moved."""
        if conn.dialect.name == "postgresql":
            conn.execute(self.events_only, param_sets)
            return
        conn.execute(self.plain, param_sets)
        ran: Runs = None
        if self.ran is not None:
            ran = {r.id: self._ran(p) for r, p in zip(expected, param_sets, strict=True)}
        self._record(conn, expected, at, ran)

    def _ran(self, params: Mapping[str, Any]) -> Ran:
        names = self.ran or _RAN
        return params.get(names[0]), params.get(names[1])

    def _record(
        self, conn: Connection, moved: Sequence[Row[Any]], at: float, ran: Runs = None
    ) -> None:
        froms = self.from_status
        if self.alternate is None:
            record(conn, self.transition, moved, at, from_status=froms, reason=self.reason, ran=ran)
            return
        other, column = self.alternate
        key = column.name
        usual = [r for r in moved if r._mapping[key] is None]
        rest = [r for r in moved if r._mapping[key] is not None]
        record(conn, self.transition, usual, at, from_status=froms, reason=self.reason, ran=ran)
        record(conn, other, rest, at, from_status=froms, ran=ran)


def logged_update(
    transition: Transition,
    condition: ColumnElement[bool],
    values: dict[str, Any],
    returning: Sequence[Any] = (),
    only_from: Status | None = None,
    reason: str | None = None,
    alternate: tuple[Transition, Column[Any]] | None = None,
    name: str = "moved",
    ran: tuple[str, str] | None = None,
    found_by: FoundBy = FoundBy.STATUS,
) -> LoggedUpdate:
    """Build a single-source change and its event rows (see :class:`LoggedUpdate`).

    A transition with several sources must lock its rows first to know each one's source
    (:func:`apply` does): it is refused here unless ``only_from`` names the source.
    ``found_by``: how ``condition`` finds the rows, so how the guard is written (guards.py).
    """
    starts = froms(transition, only_from)
    if len(starts) != 1:
        raise ValueError(f"{transition} has several sources; lock the rows first (apply)")
    if "updated_at" not in values:
        raise ValueError("a logged update sets updated_at: its events' time")
    source = starts[0]
    extra = _extra(returning)
    if alternate is not None:
        other, column = alternate
        if (sources(other), target(other)) != (frozenset({source}), target(transition)):
            raise ValueError(f"{other} must move the rows {transition} moves")
        if column.name not in {c.name for c in extra}:
            extra.append(column)
    plain = _guarded(transition, condition, values, only_from, found_by)
    stmt = plain.returning(jobs.c.id, jobs.c.attempt, *extra)
    moved = plain.returning(jobs.c.id, jobs.c.attempt, jobs.c.updated_at, *extra).cte(name)
    why: ColumnElement[Any] = literal(str(reason or transition), Text)
    if alternate is not None:
        why = case(
            (moved.c[alternate[1].name].is_not(None), literal(str(alternate[0]), Text)),
            else_=why,
        )
    columns = [
        moved.c.id,
        literal(source.value, String),
        literal(target(transition).value, String),
        moved.c.attempt,
        moved.c.updated_at,
        why,
    ]
    if ran is not None:
        columns += [cast(bindparam(name, type_=Float()), Float) for name in ran]
    events = insert(job_events).from_select(
        _EVENT_COLUMNS + (["started_at", "finished_at"] if ran else []), select(*columns)
    )
    combined = select(moved.c.id, moved.c.attempt, *(moved.c[c.name] for c in extra)).add_cte(
        events.cte(f"{name}_logged")
    )
    return LoggedUpdate(
        transition=transition,
        from_status=source,
        reason=str(reason or transition),
        update=stmt,
        plain=plain,
        combined=combined,
        events_only=events,
        moved=moved,
        alternate=alternate,
        ran=ran,
    )


def logged_together(result: Select[Any], *changes: LoggedUpdate) -> Select[Any]:
    """One PostgreSQL statement for several logged changes (each built with its own
    ``name``; a later one may select from an earlier one's ``moved``): every change and
    its event rows, and ``result`` as the answer."""
    for change in changes:
        result = result.add_cte(change.events_only.cte(f"{change.moved.name}_logged"))
    return result


def apply(
    conn: Connection,
    transition: Transition,
    condition: ColumnElement[bool],
    *,
    at: float,
    values: dict[str, Any] | None = None,
    only_from: Status | None = None,
    reason: str | None = None,
    returning: Sequence[Any] = (),
    ran: Ran | None = None,
) -> list[Row[Any]]:
    """Move every row matching ``condition`` that is in a legal source status.

    One guarded step on a locked row set: with a single source status, one ``UPDATE``
    (its guard names the status every event starts from); with several, the rows are
    locked first (``SELECT ... FOR UPDATE``) so their status cannot change between the
    read that names each event's source and the update. Returns the rows that moved
    (id, attempt, plus ``returning`` columns). ``ran``: the run of the attempt this ends
    (function started, ended), written on the event rows.
    """
    starts = froms(transition, only_from)
    values = {"updated_at": at, **(values or {})}
    if len(starts) == 1:
        names = None if ran is None else _RAN
        logged = logged_update(
            transition, condition, values, returning, starts[0], reason, ran=names
        )
        return logged.run(conn, {} if ran is None else dict(zip(_RAN, ran, strict=True)), at)
    stmt = guarded_update(transition, condition, values, returning, only_from)
    locked = dict(
        conn.execute(
            select(jobs.c.id, jobs.c.status)
            .where(condition, guard(transition, only_from))
            .order_by(jobs.c.id)
            .with_for_update()
        ).all()
    )
    if not locked:
        return []
    moved: list[Row[Any]] = []
    ids = sorted(locked)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        moved.extend(conn.execute(stmt.where(jobs.c.id.in_(chunk))).all())
    for source in starts:
        rows = [r for r in moved if locked[r.id] == source.value]
        record(conn, transition, rows, at, from_status=source, reason=reason, ran=ran)
    return moved


def apply_to_ids(
    conn: Connection, transition: Transition, ids: Sequence[int], **kwargs: Any
) -> list[Row[Any]]:
    """:func:`apply` to an explicit id list, in chunks."""
    moved: list[Row[Any]] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        moved.extend(apply(conn, transition, jobs.c.id.in_(chunk), **kwargs))
    return moved


def record(
    conn: Connection,
    transition: Transition,
    moved: Iterable[Row[Any]],
    at: float,
    *,
    from_status: Status | None = None,
    reason: str | None = None,
    ran: Runs = None,
) -> None:
    """The event rows of rows (id, attempt) that ``transition`` just moved; ``ran``: the
    run of the attempt each move ended (one for all, or by job id)."""
    froms = sources(transition)
    source = from_status if from_status is not None else _only(froms, transition)
    record_event_rows(
        conn,
        ((r.id, r.attempt) for r in moved),
        source,
        target(transition),
        at,
        reason or transition,
        ran,
    )


def record_event_rows(
    conn: Connection,
    job_attempts: Iterable[tuple[int, int]],
    from_status: Status | None,
    to_status: Status,
    at: float,
    reason: str,
    ran: Runs = None,
) -> None:
    """Event rows for a change that is not a transition of the table: a submission (no
    source status) or a note on an unchanged status (a cancel request)."""
    rows: list[dict[str, Any]] = [
        {
            "job_id": job_id,
            "from_status": from_status.value if from_status else None,
            "to_status": to_status.value,
            "attempt": attempt,
            "at": at,
            "reason": str(reason),
        }
        for job_id, attempt in job_attempts
    ]
    if ran is not None:  # an attempt's end: its run (the same keys in every row)
        for row in rows:
            run = ran.get(row["job_id"]) if isinstance(ran, dict) else ran
            row["started_at"], row["finished_at"] = run or (None, None)
    if rows:
        conn.execute(_INSERT_EVENT, rows)


def _only(froms: frozenset[Status], transition: Transition) -> Status:
    if len(froms) != 1:
        raise ValueError(f"{transition} has several sources; name the one the rows left")
    return next(iter(froms))


_INSERT_EVENT = insert(job_events)
# The parameter name the hot path's statements use for "now".
AT: BindParameter[Any] = bindparam("at")
