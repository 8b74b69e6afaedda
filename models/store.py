"""Bulk writes of a batch of readings: history rows and live state, one transaction.

Each device kind is written by one statement: the history insert skips readings
already stored (same device and instant: the first one stored stands), and only
the rows it really inserted go on to the live upsert, which replaces a device's
row only with a newer reading, and, if they are late (of an hour or day already
rolled up), to the hourly and daily rollups (models/rollups.py, which also says
why the transaction first reads the rollup watermark FOR SHARE).
Rows are sorted by (device, instant) so that two
workers writing overlapping batches take their row locks in the same order and
cannot deadlock each other.

The columns go as arrays in binary (psycopg's %b), and the instants as
datetimes: quoting text arrays cost the worker half its CPU per reading, and
parsing text instants cost PostgreSQL a fifth of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection

from models.rollups import WATERMARK_FOR_DRAIN, late_rollups_cte

STORE_METERS = (
    """
    WITH batch AS (
        SELECT * FROM unnest(
            CAST(%(device)b AS text[]), CAST(%(ts)b AS timestamptz[]),
            CAST(%(ac)b AS float8[]), CAST(%(voltage)b AS float8[])
        ) AS b(meter_id, ts, kwh_consumed_ac, voltage)
        ORDER BY meter_id, ts
    ), stored AS (
        INSERT INTO meter_readings (meter_id, ts, kwh_consumed_ac, voltage)
        SELECT * FROM batch
        ON CONFLICT DO NOTHING
        RETURNING *
    ), live AS (
        INSERT INTO live_meters AS cur (meter_id, ts, kwh_consumed_ac, voltage)
        SELECT DISTINCT ON (meter_id) * FROM stored ORDER BY meter_id, ts DESC
        ON CONFLICT (meter_id) DO UPDATE
            SET ts = excluded.ts, kwh_consumed_ac = excluded.kwh_consumed_ac,
                voltage = excluded.voltage
            WHERE cur.ts < excluded.ts
        RETURNING 1
    ),""" + late_rollups_cte("meter") + """
    SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM live)
    """
)

STORE_VEHICLES = (
    """
    WITH batch AS (
        SELECT * FROM unnest(
            CAST(%(device)b AS text[]), CAST(%(ts)b AS timestamptz[]), CAST(%(soc)b AS float8[]),
            CAST(%(dc)b AS float8[]), CAST(%(temp)b AS float8[])
        ) AS b(vehicle_id, ts, soc, kwh_delivered_dc, battery_temp)
        ORDER BY vehicle_id, ts
    ), stored AS (
        INSERT INTO vehicle_readings (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp)
        SELECT * FROM batch
        ON CONFLICT DO NOTHING
        RETURNING *
    ), live AS (
        INSERT INTO live_vehicles AS cur
            (vehicle_id, ts, soc, kwh_delivered_dc, battery_temp)
        SELECT DISTINCT ON (vehicle_id) * FROM stored ORDER BY vehicle_id, ts DESC
        ON CONFLICT (vehicle_id) DO UPDATE
            SET ts = excluded.ts, soc = excluded.soc,
                kwh_delivered_dc = excluded.kwh_delivered_dc,
                battery_temp = excluded.battery_temp
            WHERE cur.ts < excluded.ts
        RETURNING 1
    ),""" + late_rollups_cte("vehicle") + """
    SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM live)
    """
)

METER_COLUMNS = ("device", "ts", "ac", "voltage")
VEHICLE_COLUMNS = ("device", "ts", "soc", "dc", "temp")


@dataclass
class Columns:
    """Readings of one kind, column by column, as the bulk statements take them."""

    names: tuple[str, ...]
    values: list[list] = field(init=False)

    def __post_init__(self) -> None:
        self.values = [[] for _ in self.names]

    def append(self, row: list) -> None:
        for column, value in zip(self.values, row, strict=True):
            column.append(value)

    def __len__(self) -> int:
        return len(self.values[0])

    def params(self) -> dict[str, list]:
        return dict(zip(self.names, self.values, strict=True))


@dataclass
class StoreResult:
    readings: int = 0
    stored: int = 0
    live_updated: int = 0
    refused: int = 0  # dead-lettered

    def merge(self, other: StoreResult) -> None:
        self.readings += other.readings
        self.stored += other.stored
        self.live_updated += other.live_updated
        self.refused += other.refused

    @property
    def duplicates(self) -> int:
        return self.readings - self.stored - self.refused


def store_batch(conn: Connection, meters: Columns, vehicles: Columns) -> StoreResult:
    """Write both kinds within the caller's transaction; meters first, always.

    Raises ValueError or TypeError for a row whose instant is not an ISO 8601
    string with a zone (queue rows the web did not write)."""
    result = StoreResult(readings=len(meters) + len(vehicles))
    conn.exec_driver_sql(WATERMARK_FOR_DRAIN)
    for statement, columns in ((STORE_METERS, meters), (STORE_VEHICLES, vehicles)):
        if len(columns):
            params = columns.params()
            params["ts"] = [instant(ts) for ts in params["ts"]]
            stored, live = conn.exec_driver_sql(statement, params).one()
            result.stored += stored
            result.live_updated += live
    return result


def instant(value: str) -> datetime:
    """A queue row's timestamp (the web writes RFC 3339 in UTC) as an aware datetime."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("a timestamp without a time zone")
    return parsed
