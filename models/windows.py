"""How an analytics window splits between history and daily, 6-hour, hourly and
15-minute rollups.

A window [start, end) is cut at seven instants,

    start <= quarters_start <= hours_start <= days_start <= days_end <= rolled_end
          <= quarters_end <= end

and each piece is read from one source, so that every reading is counted once:

- [start, quarters_start) and [quarters_end, end): history (the partial
  quarter hours at the edges, and the hours not rolled up yet);
- [quarters_start, hours_start) and [rolled_end, quarters_end): 15-minute
  rollups, of the edges' partial hours when they are rolled up and kept;
- [hours_start, days_start) and [days_end, rolled_end): hourly rollups, except
  the whole 6-hour blocks in each (`before_blocks`, `after_blocks`), read from
  6-hour rollups;
- [days_start, days_end): daily rollups (whole UTC days, all rolled up).

Quarter hours and blocks are for fleet-wide reads (`split_window`'s `fleet`):
otherwise those pieces are empty, and history and hourly rollups read them.

Rollups hold only what is before the watermark (models/rollups.py), and hourly,
6-hour and 15-minute ones only since `hours_kept_since`
(ROLLUP_HOURLY_RETENTION_DAYS). A window that would need hours no longer kept
is widened to whole UTC days (`start` floored, `end` ceiled to midnight) and
answered from days: the split's `start` and `end` are then the window actually
answered, which responses state. Series finer than a day take no days; finer
than an hour, no rollups.

A meter-link span inside the window (`SPAN_SPLIT`) is cut the same way, within
the window's pieces (no quarter hours or blocks: see models/figures.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum

QUARTER = timedelta(minutes=15)
HOUR = timedelta(hours=1)
BLOCK = timedelta(hours=6)
DAY = timedelta(days=1)
# Stands for "every hour is kept": earlier than any reading.
ALL_KEPT = datetime(1, 1, 1, tzinfo=UTC)


class Finest(Enum):
    """The coarsest rollup a query may use: days (totals, 1 d buckets), hours, or none."""

    DAY = "day"
    HOUR = "hour"
    NONE = "none"


@dataclass(frozen=True)
class RollupMarks:
    """What the rollups hold: the hours before `rolled_up_until` (and the days
    before its midnight); hourly ones only from `hours_kept_since` on."""

    rolled_up_until: datetime
    hours_kept_since: datetime | None = None


@dataclass(frozen=True)
class WindowSplit:
    start: datetime
    hours_start: datetime
    days_start: datetime
    days_end: datetime
    rolled_end: datetime
    end: datetime
    hours_kept_since: datetime
    # Fleet-wide cuts (module docstring); None: the pieces are empty.
    quarters_start: datetime | None = None
    quarters_end: datetime | None = None
    before_blocks: tuple[datetime, datetime] | None = None
    after_blocks: tuple[datetime, datetime] | None = None

    def params(self) -> dict[str, datetime]:
        """The cuts as the bind parameters the analytics SQL names."""
        before = self.before_blocks or (self.days_start, self.days_start)
        after = self.after_blocks or (self.rolled_end, self.rolled_end)
        return {"start": self.start, "quarters_start": self.quarters_start or self.hours_start,
                "hours_start": self.hours_start, "before_blocks_start": before[0],
                "before_blocks_end": before[1], "days_start": self.days_start,
                "days_end": self.days_end, "after_blocks_start": after[0],
                "after_blocks_end": after[1], "rolled_end": self.rolled_end,
                "quarters_end": self.quarters_end or self.rolled_end, "end": self.end,
                "hours_kept_since": self.hours_kept_since}

    def hours_read(self) -> list[tuple[datetime, datetime]]:
        """The ranges read from hourly rollups."""
        return [(a, b) for a, b in ((self.hours_start, self.days_start),
                                    (self.days_end, self.rolled_end)) if a < b]


def floor_to(t: datetime, unit: timedelta) -> datetime:
    """The start of the UTC `unit` (a day, or a part of one) holding t (in UTC)."""
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return day if unit == DAY else day + (t - day) // unit * unit


def ceil_to(t: datetime, unit: timedelta) -> datetime:
    floor = floor_to(t, unit)
    return floor if floor == t else floor + unit


def split_window(start: datetime, end: datetime, marks: RollupMarks,
                 finest: Finest = Finest.DAY, fleet: bool = False) -> WindowSplit:
    """Where each part of [start, end) is read from (bounds in any zone).

    With `fleet`, the edges' rolled-up, kept partial hours come from 15-minute
    rollups, and the whole 6-hour blocks of the hours from 6-hour ones: for
    fleet-wide reads, which sum every device's rows of each piece. One device
    reads its edges from history and its hours from hourly rollups, an index
    range each."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    kept = marks.hours_kept_since or ALL_KEPT
    split = _split(start, end, marks.rolled_up_until, kept, finest)
    if finest is Finest.DAY and any(a < kept for a, _ in split.hours_read()):
        wider_start = floor_to(start, DAY) if start < kept else start
        wider_end = ceil_to(end, DAY) if end < kept else end
        split = _split(wider_start, wider_end, marks.rolled_up_until, kept, finest)
    return _fleet_cuts(split, marks.rolled_up_until) if fleet and finest is Finest.DAY else split


def _fleet_cuts(split: WindowSplit, rolled_up_until: datetime) -> WindowSplit:
    """The split with its edges' rolled-up and kept partial hours cut at quarter
    hours, and the whole 6-hour blocks of its hours marked."""
    def rolled_and_kept(hour: datetime) -> bool:
        return split.hours_kept_since <= hour < rolled_up_until

    def blocks(a: datetime, b: datetime) -> tuple[datetime, datetime] | None:
        first, last = ceil_to(a, BLOCK), floor_to(b, BLOCK)
        return (first, last) if first < last else None

    if split.hours_start == split.end:  # no whole hour: history throughout
        return split
    quarters_start, quarters_end = split.hours_start, split.rolled_end
    if split.start < split.hours_start and rolled_and_kept(floor_to(split.start, HOUR)):
        quarters_start = ceil_to(split.start, QUARTER)
    if split.rolled_end < split.end and split.rolled_end == floor_to(split.end, HOUR) \
            and rolled_and_kept(split.rolled_end):
        quarters_end = floor_to(split.end, QUARTER)
    return replace(split, quarters_start=quarters_start, quarters_end=quarters_end,
                   before_blocks=blocks(split.hours_start, split.days_start),
                   after_blocks=blocks(split.days_end, split.rolled_end))


def _split(start: datetime, end: datetime, rolled_up_until: datetime, kept: datetime,
           finest: Finest) -> WindowSplit:
    hours_start, hours_end = ceil_to(start, HOUR), floor_to(end, HOUR)
    if finest is Finest.NONE or hours_start >= hours_end:
        return WindowSplit(start, end, end, end, end, end, kept)
    rolled_end = min(max(rolled_up_until, hours_start), hours_end)
    if finest is Finest.HOUR:  # hours no longer kept come from history
        hours_start = max(hours_start, min(kept, rolled_end))
        return WindowSplit(start, hours_start, rolled_end, rolled_end, rolled_end, end, kept)
    days_start = min(max(ceil_to(start, DAY), hours_start), rolled_end)
    days_end = max(days_start, min(floor_to(end, DAY), floor_to(rolled_end, DAY)))
    return WindowSplit(start, hours_start, days_start, days_end, rolled_end, end, kept)


# The units of floor_sql and ceil_sql.
INTERVALS = {"quarter": "15 minutes", "hour": "1 hour", "block": "6 hours", "day": "1 day"}


def floor_sql(x: str, unit: str) -> str:
    """SQL for the whole UTC `unit` (of INTERVALS) holding the timestamp x.

    date_bin, from a UTC midnight, is arithmetic on the instant; date_trunc with
    a zone looks the zone up on every call, which cost 0.5 µs a row: a third of
    the fleet query's time, and of the drain's late path."""
    return f"date_bin(interval '{INTERVALS[unit]}', {x}, timestamptz '2000-01-01 00:00:00+00')"


def ceil_sql(x: str, unit: str) -> str:
    """SQL for the first whole UTC `unit` at or after the timestamp x."""
    floor = floor_sql(x, unit)
    return f"({floor} + CASE WHEN {floor} = {x} THEN interval '0' ELSE interval '{INTERVALS[unit]}' END)"


# Each link span [since, next since) of the meters chosen by `{links}`, clipped to
# the window as [s, e), and cut like the window (module docstring), within its
# pieces: history [s, h1) and [h2, e), hourly [h1, d1) and [d2, h2), daily
# [d1, d2). A span edge in hours no longer kept moves to its midnight (history
# up to there) rather than onto hourly rollups that are gone. A span with no
# whole hour to read is history on both sides of one instant, h1 = h2: the
# window's own cut for a span that is the whole window, taken before any move
# to a midnight (a window whose hours are all no longer kept is history
# throughout, cut where its hours would start).
SPAN_SPLIT = f"""
    spans AS (
        SELECT meter_id, vehicle_id, s, e,
               greatest({ceil_sql('s', 'hour')}, :hours_start) AS h1r,
               least({floor_sql('e', 'hour')}, :rolled_end) AS h2r,
               greatest({ceil_sql('s', 'day')}, :days_start) AS d1r,
               least({floor_sql('e', 'day')}, :days_end) AS d2r
        FROM (SELECT meter_id, vehicle_id, greatest(since, :start) AS s,
                     least(lead(since) OVER (PARTITION BY meter_id ORDER BY since), :end) AS e
              FROM meter_links {{links}}) l
        WHERE s < e {{span_filter}}
    ), spans_kept AS (
        SELECT meter_id, vehicle_id, s, e, d1r, d2r, h1r,
               CASE WHEN h1r < :hours_kept_since
                    THEN greatest({ceil_sql('s', 'day')}, :hours_start) ELSE h1r END AS h1,
               CASE WHEN h2r < :hours_kept_since
                    THEN least({floor_sql('e', 'day')}, :rolled_end) ELSE h2r END AS h2
        FROM spans
    ), span_split AS (
        SELECT meter_id, vehicle_id, s, e, h1, h2,
               CASE WHEN h1 < h2 AND d1r < d2r THEN d1r ELSE h2 END AS d1,
               CASE WHEN h1 < h2 AND d1r < d2r THEN d2r ELSE h2 END AS d2
        FROM (SELECT meter_id, vehicle_id, s, e, d1r, d2r,
                     CASE WHEN h1 < h2 THEN h1 ELSE least(greatest(h1r, s), e) END AS h1,
                     CASE WHEN h1 < h2 THEN h2 ELSE least(greatest(h1r, s), e) END AS h2
              FROM spans_kept) k
    )"""
