"""Cron expressions: when a schedule (or an asset) fires, in its time zone.

A cron expression is a standard 5-field crontab string (minute hour day-of-month month
day-of-week) read in an IANA time zone. APScheduler's CronTrigger matches the fields, with
two corrections so the expression means what it means to cron:

- day-of-week numbers are crontab's (0 or 7 = Sunday; APScheduler 3 counts from Monday),
  and when day-of-month and day-of-week are both restricted, a day matching either fires;
- the trigger runs in UTC over the zone's *wall-clock* times, and we convert the result to
  an instant ourselves: APScheduler 3.11 skips fire times when its search crosses a DST
  change in the zone itself (agronholm/apscheduler#529, still present in 3.11.3).

A wall time that a DST change skips fires once at the shifted instant (02:30 on a
spring-forward night fires at 03:30); a wall time repeated by a fall-back fires once.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

MAX_CRON_LENGTH = 255
MAX_ZONE_LENGTH = 64
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


class InvalidSchedule(Exception):
    """A bad cron expression or time zone; ``details`` maps the field to its problems."""

    def __init__(self, details: dict[str, list[str]]):
        super().__init__("invalid schedule")
        self.details = details


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression in a time zone: answers "when is the next fire time?"."""

    zone: ZoneInfo
    # One trigger, or two whose union is the schedule (day-of-month OR day-of-week).
    triggers: tuple[CronTrigger, ...]

    def next_after(self, t: float) -> float | None:
        """The first fire time strictly after epoch second ``t``, or None if none is left."""
        wall = datetime.fromtimestamp(t, self.zone).replace(tzinfo=None)
        while True:
            candidate = self._next_wall_time(wall)
            if candidate is None:
                return None
            # An ambiguous wall time (fall-back) has two instants; take the first one after t.
            for fold in (0, 1):
                instant = candidate.replace(tzinfo=self.zone, fold=fold).timestamp()
                if instant > t:
                    return instant
            wall = candidate

    def upcoming(self, first: float | None, at: float, count: int) -> list[float]:
        """``first`` (the stored next fire time, possibly overdue) and the fire times after
        it, as the scheduler will serve them: an overdue one fires once, then from ``at`` on.
        """
        if first is None:
            return []
        times = [first]
        t = max(first, at)
        while len(times) < count and (following := self.next_after(t)) is not None:
            times.append(following)
            t = following
        return times

    def _next_wall_time(self, wall: datetime) -> datetime | None:
        start = (wall + timedelta(microseconds=1)).replace(tzinfo=UTC)
        found = [trigger.get_next_fire_time(None, start) for trigger in self.triggers]
        times = [f for f in found if f is not None]
        return min(times).replace(tzinfo=None) if times else None


@functools.lru_cache(maxsize=256)
def cron_schedule(expression: str, timezone: str) -> CronSchedule:
    """Parse and check a schedule's timing; raises InvalidSchedule naming the bad field."""
    errors: dict[str, list[str]] = {}
    zone: ZoneInfo | None = None
    triggers: tuple[CronTrigger, ...] = ()
    try:
        zone = _zone(timezone)
    except ValueError as exc:
        errors["timezone"] = [str(exc)]
    try:
        triggers = _triggers(expression)
    except ValueError as exc:
        errors["cron"] = [str(exc)]
    if errors or zone is None:
        raise InvalidSchedule(errors)
    schedule = CronSchedule(zone, triggers)
    if schedule.next_after(time.time()) is None:
        raise InvalidSchedule({"cron": ["never fires (no such date)"]})
    return schedule


def _zone(name: str) -> ZoneInfo:
    if not 1 <= len(name) <= MAX_ZONE_LENGTH or not name.isprintable():
        raise ValueError(f"must be an IANA time zone name of 1 to {MAX_ZONE_LENGTH} characters")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Prague'"
        ) from None


def _triggers(expression: str) -> tuple[CronTrigger, ...]:
    if len(expression) > MAX_CRON_LENGTH or not expression.isprintable():
        raise ValueError(f"must be printable text of at most {MAX_CRON_LENGTH} characters")
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"must have 5 fields: minute hour day-of-month month day-of-week (got {len(fields)})"
        )
    minute, hour, day, month, weekday = fields
    weekdays = _weekdays(weekday)
    # crontab: with both day fields restricted (neither starts with *), either one matches.
    if not day.startswith("*") and not weekday.startswith("*"):
        days = [(day, "*"), ("*", weekdays)]
    else:
        days = [(day, weekdays)]
    return tuple(
        CronTrigger.from_crontab(f"{minute} {hour} {d} {month} {w}", timezone=UTC) for d, w in days
    )


def _weekdays(field: str) -> str:
    """crontab's day-of-week field (0-7, 0 and 7 = Sunday, names, ranges, lists, steps) as
    the day names APScheduler takes, so that ``1-5`` is Monday to Friday as in cron."""
    chosen: set[int] = set()
    for item in field.split(","):
        base, slash, step_text = item.partition("/")
        step = _number(step_text, "step") if slash else 1
        if step < 1:
            raise ValueError(f"day-of-week step must be at least 1 in {item!r}")
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            low, high = base.split("-", 1)
            first, last = _day(low), _day(high)
            if last == 0 and first > 0:  # "fri-sun": Sunday as the week's end
                last = 7
        else:
            first = _day(base)
            last = 6 if slash else first  # "1/2": from 1 to the week's end
        if first > last:
            raise ValueError(f"day-of-week range {base!r} runs backwards")
        chosen.update(day % 7 for day in range(first, last + 1, step))
    if len(chosen) == 7:
        return "*"
    return ",".join(_DAYS[day] for day in sorted(chosen))


def _day(text: str) -> int:
    name = text.lower()
    if name in _DAYS:
        return _DAYS.index(name)
    day = _number(text, "day of week")
    if day > 7:
        raise ValueError(f"day of week {text!r} is not 0-7 (0 and 7 are Sunday) or sun-sat")
    return day


def _number(text: str, what: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"{what} {text!r} is not a number")
    return int(text)
