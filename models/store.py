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

from sqlalchemy import Connection

from models.live import UPSERT_LIVE_METERS, UPSERT_LIVE_VEHICLES
from models.rollups import WATERMARK_FOR_DRAIN, late_rollups_cte
from models.session_store import late_sessions_cte
from readings.rows import instant

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
    ), live AS (""" + UPSERT_LIVE_METERS.format(source="stored") + """
        RETURNING 1
    ),""" + late_rollups_cte("meter") + "," + late_sessions_cte("meter") + """
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
    ), live AS (""" + UPSERT_LIVE_VEHICLES.format(source="stored") + """
        RETURNING 1
    ),""" + late_rollups_cte("vehicle") + "," + late_sessions_cte("vehicle") + """
    SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM live)
    """
)

# The statements' parameters, in the order of a queue row's fields (readings/rows.py).
METER_COLUMNS = ("device", "ts", "ac", "voltage")
VEHICLE_COLUMNS = ("device", "ts", "soc", "dc", "temp")


@dataclass
class Columns:
    """Readings of one kind, column by column, as the bulk statements take them."""

    names: tuple[str, ...]
    values: list[list] = field(init=False)

    def __post_init__(self) -> None:
        self.values = [[] for _ in self.names]

    @classmethod
    def of(cls, names: tuple[str, ...], rows: list[list]) -> Columns:
        """The columns of rows that each hold one value per name, in order."""
        columns = cls(names)
        if rows:
            columns.values = [list(column) for column in zip(*rows, strict=True)]
        return columns

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
