"""Daily rollups and what comes with them: the roll-up goes through an hour in
device ranges (a drain waits for one range, and adds its late readings itself
to the ranges already done), hourly rollups are dropped after
ROLLUP_HOURLY_RETENTION_DAYS with windows then answered from whole days, edges
read device by device, and the series bucket limit counts the buckets listed."""

from __future__ import annotations

import dataclasses
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

import settings as settings_module
from models.figures import reads_history
from models.roll_up import SETTLE, rebuild, roll_up, roll_up_range
from models.rollups import rollup_marks
from models.windows import RollupMarks, split_window
from tests.conftest import OPERATOR, set_watermark, wait_for
from tests.readings import iso
from tests.test_long_windows import assert_rollups_exact, link, store
from workers.maintenance import maintain_history

DAY0 = (datetime.now(UTC) - timedelta(days=6)).replace(hour=0, minute=0, second=0, microsecond=0)
DEVICES = [f"V-{n}" for n in range(1, 7)]


def at(hours: float) -> datetime:
    return DAY0 + timedelta(hours=hours)


@pytest.fixture
def three_days(engine, settings):
    """Six vehicles and M-1 (linked to V-1), a reading every 20 minutes for three days."""
    set_watermark(engine, DAY0)
    link(engine, "M-1", "V-1", DAY0)
    rows = []
    for minute in range(0, 3 * 24 * 60, 20):
        ts = iso(DAY0 + timedelta(minutes=minute))
        rows.append(["m", "M-1", ts, 1.5, 230.0])
        rows += [["v", device, ts, 50.0, 1.2, 30.0] for device in DEVICES]
    store(engine, rows)


def marks(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM rollup_watermark")).one()


def test_an_hour_is_rolled_up_a_device_range_at_a_time(three_days, engine):
    assert roll_up_range(engine, at(1) + SETTLE, range_devices=3) is False
    first = marks(engine)
    # Ids in order: M-1, V-1, V-2 are done; V-3 on are not.
    assert first.rolled_up_until == at(0) and first.rolling_device == "V-3"
    with engine.connect() as conn:
        rolled = conn.execute(text("SELECT vehicle_id FROM vehicle_hourly ORDER BY 1")).scalars().all()
    assert rolled == ["V-1", "V-2"]
    # Late readings of the hour: before the range's end the drain adds them, after it the roll-up.
    store(engine, [["v", "V-1", iso(at(0.5) + timedelta(seconds=1)), 50.0, 2.0, 31.0],
                   ["v", "V-5", iso(at(0.5) + timedelta(seconds=1)), 50.0, 2.0, 31.0]])
    assert_rollups_exact(engine)
    while roll_up_range(engine, at(1) + SETTLE, range_devices=3) is False:
        pass
    assert (marks(engine).rolled_up_until, marks(engine).rolling_device) == (at(1), None)
    assert_rollups_exact(engine)


def test_a_day_is_rolled_up_with_its_last_hour(three_days, engine):
    assert roll_up(engine, at(23) + SETTLE, range_devices=2) == 23
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM vehicle_daily")).scalar_one() == 0
    assert roll_up(engine, at(24) + SETTLE, range_devices=2) == 1
    with engine.connect() as conn:
        days = conn.execute(text("SELECT vehicle_id, day, readings FROM vehicle_daily")).all()
    assert sorted(days) == [(device, DAY0, 72) for device in DEVICES]
    store(engine, [["v", "V-3", iso(at(5.1)), 50.0, 2.0, 31.0]])  # late: adds to hour and day
    assert_rollups_exact(engine)


def performance(client, start, end):
    response = client.get("/v1/analytics/performance/V-1", headers=OPERATOR,
                          query_string={"from": iso(start), "to": iso(end)})
    assert response.status_code == 200, response.json
    return response.json


def test_windows_needing_dropped_hours_are_answered_from_whole_days(three_days, client, engine,
                                                                    settings):
    roll_up(engine, at(60) + SETTLE, max_hours=60)
    today = DAY0.date() + timedelta(days=3)  # hourly rollups kept 1 day: from DAY0 + 2 days
    keep_one_day = dataclasses.replace(settings, rollup_hourly_retention_days=1)
    maintain_history(engine, keep_one_day, today)
    assert rollup_marks(engine.connect()).hours_kept_since == at(48)
    maintain_history(engine, keep_one_day, today)  # deletes what the first run stopped reading
    with engine.connect() as conn:
        assert conn.execute(text("SELECT min(hour) FROM vehicle_hourly")).scalar_one() == at(48)

    old = performance(client, at(5.5), at(50.25))  # needs hours of the first day
    assert old["window"] == {"from": iso(at(5.5)), "to": iso(at(50.25))}
    assert old["answeredWindow"] == {"from": iso(at(0)), "to": iso(at(50.25))}
    assert old["readings"] == {"meter": 50 * 3 + 1, "vehicle": 50 * 3 + 1}
    older = performance(client, at(5.5), at(30.25))  # both ends in days without hours
    assert older["answeredWindow"] == {"from": iso(at(0)), "to": iso(at(48))}
    recent = performance(client, at(50.5), at(55))  # hours still kept: answered as asked
    assert recent["answeredWindow"] == recent["window"]
    assert recent["readings"]["vehicle"] == 13
    edges_only = performance(client, at(5.1), at(5.6))  # no whole hour: history alone
    assert edges_only["answeredWindow"] == edges_only["window"]


def test_hourly_retention_is_a_checked_setting():
    assert settings_module.load({"ROLLUP_HOURLY_RETENTION_DAYS": "30"}).rollup_hourly_retention_days == 30
    assert settings_module.load({}).rollup_hourly_retention_days is None
    for bad in ("0", "-1", "a week"):
        with pytest.raises(settings_module.SettingsError, match="ROLLUP_HOURLY_RETENTION_DAYS"):
            settings_module.load({"ROLLUP_HOURLY_RETENTION_DAYS": bad})


def fleet_plan(engine, start, end, relinked: bool = False) -> tuple[str, object]:
    """The plan of the fleet's figures over [start, end), and the window's split."""
    from models.fleet import PER_VEHICLE

    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
        conn.execute(text("SET LOCAL enable_seqscan = off"))  # what is left is the plan's choice
        split = split_window(start, end, rollup_marks(conn), fleet=True)
        statement = PER_VEHICLE[relinked, reads_history(split)]
        return "\n".join(conn.execute(text("EXPLAIN " + statement), split.params()).scalars()), split


def test_fleet_edges_are_read_device_by_device(three_days, engine):
    """A window cutting through quarter hours reads what is left of its edges
    through the (device, ts) key, never by scanning a time range of every
    device's rows."""
    roll_up(engine, at(60) + SETTLE, max_hours=60)
    plan, split = fleet_plan(engine, at(24.5) + timedelta(minutes=7), at(48.5) + timedelta(minutes=7))
    assert (split.quarters_start, split.quarters_end) == (at(24.75), at(48.5))
    assert "pk_vehicle_readings" in plan or "vehicle_readings_p" in plan, plan
    assert "ix_vehicle_readings_ts" not in plan and "ts_idx" not in plan, plan
    assert "Index Cond: ((vehicle_id = v.vehicle_id)" in plan, plan


def test_fleet_edges_on_quarter_hours_read_rollups_only(three_days, engine, client):
    """A fleet window cut at :30 reads its edges' partial hours from 15-minute
    rollups, its hours' whole 6-hour blocks from 6-hour ones, and no history at
    all; its figures are history's."""
    roll_up(engine, at(60) + SETTLE, max_hours=60)
    plan, split = fleet_plan(engine, at(24.5), at(48.5))
    assert (split.quarters_start, split.quarters_end) == (at(24.5), at(48.5))
    # 01:00-06:00 hours, 06:00-24:00 three blocks; the next day's 00:00-00:30 quarters.
    assert (split.before_blocks, split.after_blocks) == ((at(30), at(48)), None)
    assert "_readings" not in plan, plan
    for table in ("15min", "6h", "hourly"):
        assert f"vehicle_{table}" in plan and f"meter_{table}" in plan, plan
    response = client.get("/v1/analytics/fleet", headers=OPERATOR,
                          query_string={"from": iso(at(24.5)), "to": iso(at(48.5))})
    assert response.status_code == 200, response.json
    v1 = next(v for v in response.json["vehicles"] if v["vehicleId"] == "V-1")
    # A reading every 20 minutes: 72 in 24 hours, from 00:40 on.
    assert v1["readings"] == {"meter": 72, "vehicle": 72}
    assert v1["acConsumedKwh"] == pytest.approx(72 * 1.5) and v1["dcDeliveredKwh"] == pytest.approx(72 * 1.2)


def test_a_relink_leaves_the_fleets_other_spans_on_its_rollups(three_days, engine, client):
    """A link starting inside a fleet window cuts its meter's spans, which are
    read span by span; the other spans still take the fleet's 15-minute and
    6-hour rollups (a relink anywhere used to send the whole fleet to hourly
    rollups and history)."""
    link(engine, "M-2", "V-2", DAY0)
    store(engine, [["m", "M-2", iso(DAY0 + timedelta(minutes=minute)), 2.0, 230.0]
                   for minute in range(0, 3 * 24 * 60, 20)])
    link(engine, "M-1", "V-3", at(36) + timedelta(minutes=10))
    roll_up(engine, at(60) + SETTLE, max_hours=60)
    plan, _ = fleet_plan(engine, at(24.5), at(48.5), relinked=True)
    assert "meter_15min" in plan and "meter_6h" in plan, plan
    assert re.search(r"AND \(meter_id = span_split_\d+\.meter_id\)\)", plan), plan  # the cut spans
    response = client.get("/v1/analytics/fleet", headers=OPERATOR,
                          query_string={"from": iso(at(24.5)), "to": iso(at(48.5))})
    assert response.status_code == 200, response.json
    meters = {v["vehicleId"]: (v["readings"]["meter"], v["acConsumedKwh"])
              for v in response.json["vehicles"]}
    # Readings every 20 minutes from 00:40: M-1's 35 up to 12:10 go to V-1, its 37 after to V-3.
    assert meters["V-1"] == (35, pytest.approx(35 * 1.5))
    assert meters["V-3"] == (37, pytest.approx(37 * 1.5))
    assert meters["V-2"] == (72, pytest.approx(72 * 2.0))


@pytest.mark.parametrize("start_minute, hours, status", [(30, 5000, 400), (30, 4999, 200),
                                                         (0, 5000, 200)])
def test_series_limit_counts_the_buckets_listed(client, engine, settings, start_minute, hours, status):
    link(engine, "M-1", "V-1", DAY0)
    start = DAY0 - timedelta(days=300) + timedelta(minutes=start_minute)
    response = client.get("/v1/analytics/performance/V-1/series", headers=OPERATOR, query_string={
        "from": iso(start), "to": iso(start + timedelta(hours=hours)), "bucket": "1h"})
    assert response.status_code == status, response.json
    if status == 200:
        assert len(response.json["series"]) <= 5000


def test_a_roll_up_waiting_for_the_lock_holds_no_drain_up(three_days, engine):
    """A drain in flight holds the watermark FOR SHARE; a roll-up waits for it
    FOR UPDATE, and a drain that starts meanwhile gets the lock at once rather
    than queueing behind the roll-up (what bounds a drain's wait to a range)."""
    in_flight = engine.connect()
    in_flight_tx = in_flight.begin()
    in_flight.execute(text("SELECT rolled_up_until FROM rollup_watermark FOR SHARE"))
    done = []
    rolling = threading.Thread(target=lambda: done.append(roll_up_range(engine, at(1) + SETTLE)))
    rolling.start()
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watch:
            wait_for(lambda: watch.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'")).scalar_one(),
                timeout_s=20, what="the roll-up waiting for the drain in flight")
        with engine.begin() as second:
            second.execute(text("SET LOCAL lock_timeout = '5s'"))
            second.execute(text("SELECT rolled_up_until FROM rollup_watermark FOR SHARE"))
        assert rolling.is_alive() and not done
    finally:
        in_flight_tx.commit()
        in_flight.close()
        rolling.join(30)
    assert done == [True]  # then it rolled the hour up
    assert_rollups_exact(engine)


def test_a_rebuild_writes_the_rollups_in_time_order(three_days, engine):
    # As live roll-ups write them: a fleet-wide read of an hour finds its rows together.
    rebuild(engine, at(0), at(72))
    with engine.connect() as conn:
        for table, device, time in (("vehicle_hourly", "vehicle_id", "hour"),
                                    ("vehicle_daily", "vehicle_id", "day")):
            stored = conn.execute(text(f"SELECT {time}, {device} FROM {table} ORDER BY ctid")).all()
            assert len(stored) > len(DEVICES) and stored == sorted(stored), table


@pytest.mark.parametrize(("start", "end", "kept", "quarters", "blocks"), [
    # Both edges' hours rolled up: cut at the quarter hours inside the window.
    (24.6, 47.6, None, (24.75, 47.5), ((30, 42), None)),
    # The end's hour is not rolled up yet (W = 48): history from the last rolled-up hour.
    (24.6, 48.6, None, (24.75, 48), ((30, 48), None)),
    # The start's hour is no longer kept: history up to the first whole hour.
    (23.5, 30.25, 24, (24, 30.25), (None, (24, 30))),
    # No whole hour: history throughout.
    (30.1, 30.9, None, (30.9, 30.9), (None, None)),
])
def test_fleet_windows_are_cut_at_quarter_hours_and_blocks(start, end, kept, quarters, blocks):
    """Quarter hours where the edges' hours are rolled up and kept; whole 6-hour
    blocks of the hours before and after the whole days; none of them for one vehicle."""
    marks = RollupMarks(at(48), at(kept) if kept is not None else None)
    split = split_window(at(start), at(end), marks, fleet=True)
    params = split.params()
    assert (params["quarters_start"], params["quarters_end"]) == tuple(at(q) for q in quarters)
    assert tuple(b and (at(b[0]), at(b[1])) for b in blocks) == (split.before_blocks, split.after_blocks)
    one_vehicle = split_window(at(start), at(end), marks)
    assert (one_vehicle.quarters_start, one_vehicle.before_blocks, one_vehicle.after_blocks) == (None,) * 3
