"""Charging sessions: both endpoints equal sessions computed in Python from the raw
readings, for several windows; sorting, paging, CSV, and the alert that names a session."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import text

import settings as settings_module
from models.roll_up import rebuild, roll_up_range
from models.session_store import SESSION_HOURS, forget_sessions_before, store_marked_sessions, within_budget
from tests.conftest import INGEST, OPERATOR
from tests.readings import iso, meter, vehicle
from workers.alerts import evaluate_alerts

T0 = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
GAP = timedelta(minutes=15)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# (meter, vehicle, since in minutes): M-2 moves from V-2 to V-3 mid-session;
# M-9 is a spare point of V-1 that draws nothing; V-4 has no meter.
LINKS = [("M-1", "V-1", -600), ("M-9", "V-1", -600), ("M-2", "V-2", -600), ("M-2", "V-3", 40.5)]
EFFICIENCY = {"V-1": 0.7, "V-2": 0.9, "V-3": 0.92, "V-4": 0.88}
# Minutes with DC of each vehicle (others send readings without DC).
CHARGING = {
    # 60..69 without DC (same session: 11 min apart), 90 -> 120 a 30 min gap (new
    # session), 150 -> 165 exactly the gap (same session).
    "V-1": [*range(0, 60), *range(70, 90), *range(120, 151), 165],
    "V-2": list(range(0, 80)),   # split by the relink at 40.5, its second half without AC
    "V-3": list(range(30, 61)),  # split by the same relink, its first part without AC
    "V-4": list(range(100, 140)),
}


def build_readings() -> tuple[list[dict], list[dict]]:
    vehicles, meters = [], []
    for vehicle_id, minutes in CHARGING.items():
        n = int(vehicle_id[2:])
        for minute in range(-30, 200):
            dc = 0.05 + (minute % 7) / 100 if minute in minutes else 0.0
            vehicles.append(vehicle(vehicle_id, soc=min(100, 20 + minute / 4), dc=dc,
                                    temp=25 + n + (minute % 11) / 2, at=at(minute + 0.25)))
    for minute in range(-30, 200):
        # M-2 feeds whichever vehicle it is linked to at the time
        fed = {"M-1": "V-1", "M-2": "V-2" if minute < 40.5 else "V-3"}
        for meter_id, vehicle_id in fed.items():
            dc = 0.05 + (minute % 7) / 100 if minute in CHARGING[vehicle_id] else 0.0
            meters.append(meter(meter_id, ac=dc / EFFICIENCY[vehicle_id], at=at(minute + 0.25)))
        meters.append(meter("M-9", ac=0.0, at=at(minute + 0.1)))
    return vehicles, meters


@pytest.fixture
def session_data(client, drain_all):
    for meter_id, vehicle_id, since in LINKS:
        assert client.put(f"/v1/meters/{meter_id}/vehicle", headers=OPERATOR,
                          json={"vehicleId": vehicle_id, "since": iso(at(since))}).status_code == 200
    vehicles, meters = build_readings()
    readings = vehicles + meters
    for i in range(0, len(readings), 2000):
        assert client.post("/v1/ingest", json=readings[i:i + 2000], headers=INGEST).status_code == 202
    drain_all()
    return vehicles, meters


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def linked_vehicle(meter_id: str, ts: datetime, links=LINKS) -> str | None:
    links = sorted((at(since), v) for m, v, since in links if m == meter_id)
    current = None
    for since, vehicle_id in links:
        if since <= ts:
            current = vehicle_id
    return current


def reference_sessions(vehicles, meters, a: datetime, b: datetime, links=LINKS) -> list[dict]:
    """The sessions of the module docstring of models/sessions.py, in plain Python."""
    by_vehicle = defaultdict(list)
    for r in vehicles:
        ts = parse(r["timestamp"])
        if a <= ts < b and r["kwhDeliveredDc"] > 0:
            by_vehicle[r["vehicleId"]].append((ts, r))
    found = []
    for vehicle_id, rows in by_vehicle.items():
        fed_by = {m for m, v, _ in links if v == vehicle_id}
        relinks = [at(since) for m, _, since in links if m in fed_by]
        runs: list[list] = []
        previous = None
        for ts, r in sorted(rows, key=lambda x: x[0]):
            if (previous is None or ts - previous > GAP
                    or any(previous < since <= ts for since in relinks)):
                runs.append([])
            runs[-1].append((ts, r))
            previous = ts
        for run in runs:
            start, end = run[0][0], run[-1][0]
            fed = [m for m in meters if start <= parse(m["timestamp"]) <= end
                   and a <= parse(m["timestamp"]) < b
                   and linked_vehicle(m["meterId"], parse(m["timestamp"]), links) == vehicle_id]
            ac = sum(m["kwhConsumedAc"] for m in fed)
            dc = sum(r["kwhDeliveredDc"] for _, r in run)
            temps = [r["batteryTemp"] for _, r in run]
            found.append({
                "vehicleId": vehicle_id, "start": start, "end": end, "acConsumedKwh": ac,
                "dcDeliveredKwh": dc, "lossKwh": ac - dc, "efficiencyRatio": dc / ac if ac else None,
                "socStart": run[0][1]["soc"], "socEnd": run[-1][1]["soc"],
                "avgBatteryTemp": sum(temps) / len(temps), "maxBatteryTemp": max(temps),
                "meterIds": sorted({m["meterId"] for m in fed if m["kwhConsumedAc"] > 0}),
            })
    return found


def assert_same_session(got: dict, want: dict) -> None:
    assert parse(got["start"]) == want["start"] and parse(got["end"]) == want["end"]
    assert got["meterIds"] == want["meterIds"]
    for key in ("acConsumedKwh", "dcDeliveredKwh", "lossKwh", "socStart", "socEnd", "avgBatteryTemp",
                "maxBatteryTemp"):
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
    if want["efficiencyRatio"] is None:
        assert got["efficiencyRatio"] is None and got["lossShare"] is None
    else:
        assert got["efficiencyRatio"] == pytest.approx(want["efficiencyRatio"], rel=1e-9)


def get(client, path, **query):
    response = client.get(path, headers=OPERATOR, query_string=query)
    assert response.status_code == 200, response.json
    return response.json


WINDOWS = [(-60, 300), (30.5, 130), (45, 46), (0, 0.3), (170, 180)]


@pytest.mark.parametrize("start, end", WINDOWS)
def test_sessions_equal_those_computed_from_raw_readings(session_data, client, start, end):
    assert_endpoints_agree(client, session_data, start, end)


def assert_endpoints_agree(client, session_data, start, end, links=LINKS) -> None:
    want = reference_sessions(*session_data, at(start), at(end), links)
    fleet = get(client, "/v1/analytics/sessions", limit=1000, sort="start", order="asc",
                **{"from": iso(at(start)), "to": iso(at(end))})
    assert fleet["page"]["total"] == len(want) == len(fleet["sessions"])
    by_key = {(s["vehicleId"], parse(s["start"])): s for s in fleet["sessions"]}
    for w in want:
        assert_same_session(by_key[(w["vehicleId"], w["start"])], w)
    for vehicle_id in CHARGING:
        body = get(client, f"/v1/analytics/performance/{vehicle_id}/sessions",
                   **{"from": iso(at(start)), "to": iso(at(end))})
        mine = sorted((w for w in want if w["vehicleId"] == vehicle_id), key=lambda w: w["start"])
        assert len(body["sessions"]) == len(mine)
        for got, w in zip(body["sessions"], mine, strict=True):
            assert_same_session(got, w)


def test_gaps_relinks_and_missing_ac_shape_the_sessions(session_data, client):
    window = {"from": iso(at(-60)), "to": iso(at(300))}
    v1 = get(client, "/v1/analytics/performance/V-1/sessions", **window)["sessions"]
    assert [(parse(s["start"]), parse(s["end"])) for s in v1] == [
        (at(0.25), at(89.25)), (at(120.25), at(165.25))]
    assert v1[0]["meterIds"] == ["M-1"]  # M-9 is linked but fed nothing
    assert v1[0]["efficiencyRatio"] == pytest.approx(0.7)
    v2 = get(client, "/v1/analytics/performance/V-2/sessions", **window)["sessions"]
    assert [parse(s["end"]) for s in v2] == [at(40.25), at(79.25)]
    assert v2[1]["efficiencyRatio"] is None and v2[1]["meterIds"] == []
    v4 = get(client, "/v1/analytics/performance/V-4/sessions", **window)["sessions"]
    assert v4[0]["acConsumedKwh"] == 0 and v4[0]["lossKwh"] == pytest.approx(-v4[0]["dcDeliveredKwh"])


def test_fleet_list_is_worst_first_and_paged(session_data, client):
    window = {"from": iso(at(-60)), "to": iso(at(300))}
    by_loss = get(client, "/v1/analytics/sessions", **window)
    assert by_loss["page"]["sort"] == "loss" and by_loss["page"]["order"] == "desc"
    losses = [s["lossKwh"] for s in by_loss["sessions"]]
    assert losses == sorted(losses, reverse=True) and by_loss["sessions"][0]["vehicleId"] == "V-1"
    by_efficiency = get(client, "/v1/analytics/sessions", sort="efficiency", **window)["sessions"]
    ratios = [s["efficiencyRatio"] for s in by_efficiency]
    known = [r for r in ratios if r is not None]
    assert known == sorted(known) and ratios[len(known):] == [None] * (len(ratios) - len(known))
    pages = [get(client, "/v1/analytics/sessions", sort="start", limit=2, offset=o, **window)
             for o in range(0, by_loss["page"]["total"], 2)]
    starts = [s["start"] for p in pages for s in p["sessions"]]
    assert len(starts) == by_loss["page"]["total"] and starts == sorted(starts, reverse=True)


@pytest.mark.parametrize("query", [{"sort": "soc"}, {"order": "up"}, {"limit": 0}, {"offset": -1},
                                   {"from": "yesterday"}, {"from": "2026-01-02T00:00:00Z",
                                                           "to": "2026-01-01T00:00:00Z"}])
def test_bad_sessions_query_is_400(client, query):
    response = client.get("/v1/analytics/sessions", headers=OPERATOR, query_string=query)
    assert response.status_code == 400 and "error" in response.json


def test_sessions_need_an_operator_token_and_a_known_vehicle(client):
    assert client.get("/v1/analytics/sessions").status_code == 401
    assert client.get("/v1/analytics/sessions", headers=INGEST).status_code == 403
    assert client.get("/v1/analytics/performance/V-404/sessions", headers=OPERATOR).status_code == 404


def read_csv(client, path, **query):
    response = client.get(path, headers={**OPERATOR, "Accept": "text/csv"}, query_string=query)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_csv_on_sessions_fleet_and_series(session_data, client):
    window = {"from": iso(at(-60)), "to": iso(at(300))}
    rows = read_csv(client, "/v1/analytics/sessions", **window)
    body = get(client, "/v1/analytics/sessions", **window)
    assert [r["vehicleId"] for r in rows] == [s["vehicleId"] for s in body["sessions"]]
    assert float(rows[0]["lossKwh"]) == pytest.approx(body["sessions"][0]["lossKwh"], rel=1e-12)
    v2 = read_csv(client, "/v1/analytics/performance/V-2/sessions", **window)
    assert v2[1]["efficiencyRatio"] == "" and v2[0]["meterIds"] == "M-2"
    fleet = read_csv(client, "/v1/analytics/fleet", sort="vehicleId", **window)
    assert [r["vehicleId"] for r in fleet] == ["V-1", "V-2", "V-3", "V-4"]
    assert int(fleet[0]["readings.vehicle"]) == 230
    series = read_csv(client, "/v1/analytics/performance/V-1/series", bucket="1h", **window)
    assert len(series) == 6 and set(series[0]) >= {"start", "acConsumedKwh", "readings.meter"}
    # JSON stays the default, also for clients that accept anything
    response = client.get("/v1/analytics/sessions", headers={**OPERATOR, "Accept": "*/*"})
    assert response.mimetype == "application/json"


def test_low_efficiency_alert_names_the_worst_session(session_data, client, engine, settings):
    evaluate_alerts(engine, settings, at(300))
    alerts = {(a["vehicleId"], a["kind"]): a
              for a in get(client, "/v1/alerts")["alerts"]}
    low = alerts[("V-1", "low_efficiency")]
    session = low["figures"]["session"]
    assert parse(session["start"]) == at(0.25) and parse(session["end"]) == at(89.25)
    assert session["efficiencyRatio"] == pytest.approx(0.7)
    assert "worst session" in low["reason"] and at(0.25).isoformat() in low["reason"]


@pytest.mark.parametrize("raw", ["0", "-5", "soon"])
def test_a_bad_session_gap_is_refused_by_name(raw):
    with pytest.raises(settings_module.SettingsError, match="SESSION_GAP_MIN"):
        settings_module.load({"SESSION_GAP_MIN": raw})
    assert settings_module.load({"SESSION_GAP_MIN": "7.5"}).session_gap_min == 7.5


def test_the_gap_that_ends_a_session_is_configurable(session_data, app, client, settings):
    app.config["SETTINGS"] = dataclasses.replace(settings, session_gap_min=45)
    v1 = get(client, "/v1/analytics/performance/V-1/sessions",
             **{"from": iso(at(-60)), "to": iso(at(300))})["sessions"]
    assert [(parse(s["start"]), parse(s["end"])) for s in v1] == [(at(0.25), at(165.25))]


@pytest.mark.parametrize("path", ["/v1/analytics/sessions", "/v1/analytics/fleet"])
def test_a_window_ending_in_year_one_is_400_not_500(client, path):
    response = client.get(path, headers=OPERATOR, query_string={"to": "0001-01-01T05:00:00Z"})
    assert response.status_code == 400 and "from" in response.json["error"]


# Windows that take stored sessions whole, cut them at either bound or both, or
# hold none of them.
STORED_WINDOWS = [*WINDOWS, (10, 100), (-60, 60), (50, 250), (100, 101), (-1440, 0)]


def stored(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT vehicle_id, start FROM charging_sessions ORDER BY 1, 2"))]


def marks(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT vehicle_id FROM session_marks")).scalars())


def roll_up_the_next_hour(engine) -> None:
    with engine.connect() as conn:
        hour = conn.execute(text("SELECT rolled_up_until FROM rollup_watermark")).scalar_one()
    assert roll_up_range(engine, hour + timedelta(hours=2)) is True
    store_marked_sessions(engine)


@pytest.fixture
def stored_sessions(session_data, engine):
    """The readings loaded in bulk (a rebuild stores their sessions): every window
    after the stored sessions' beginning is answered from the table."""
    rebuild(engine, at(-60), at(300))
    assert ("V-1", at(0.25)) in stored(engine) and not marks(engine)
    return session_data


@pytest.mark.parametrize("start, end", STORED_WINDOWS)
def test_stored_sessions_answer_as_raw_readings_do(stored_sessions, client, start, end):
    assert_endpoints_agree(client, stored_sessions, start, end)


def test_the_stored_sessions_are_those_of_the_live_query(stored_sessions, engine):
    want = reference_sessions(*stored_sessions, T0 - timedelta(days=1), datetime.now(UTC))
    assert stored(engine) == sorted((w["vehicleId"], w["start"]) for w in want)


def test_late_readings_mark_stored_sessions_until_the_next_roll_up(stored_sessions, client,
                                                                   engine, drain_all):
    vehicles, meters = stored_sessions
    # V-4 charges 5 minutes earlier (its session starts there); M-1 draws more in
    # the middle of V-1's first session.
    late_v = [vehicle("V-4", soc=40, dc=0.4, temp=31, at=at(95.5))]
    late_m = [meter("M-1", ac=2.5, at=at(50.5))]
    assert client.post("/v1/ingest", json=late_v + late_m, headers=INGEST).status_code == 202
    drain_all()
    assert set(marks(engine)) == {"V-1", "V-4"}
    data = (vehicles + late_v, meters + late_m)
    for start, end in STORED_WINDOWS:
        assert_endpoints_agree(client, data, start, end)
    roll_up_the_next_hour(engine)
    assert not marks(engine) and ("V-4", at(95.5)) in stored(engine)
    for start, end in STORED_WINDOWS:
        assert_endpoints_agree(client, data, start, end)


def test_a_late_relink_marks_the_vehicles_its_meter_fed(stored_sessions, client, engine):
    # M-1 moves from V-1 to V-4 at minute 110, after both sessions were stored:
    # V-4's session is split there and gains AC, V-1's second loses it.
    assert client.put("/v1/meters/M-1/vehicle", headers=OPERATOR,
                      json={"vehicleId": "V-4", "since": iso(at(110))}).status_code == 200
    assert set(marks(engine)) == {"V-1", "V-4"}
    links = [*LINKS, ("M-1", "V-4", 110)]
    for start, end in STORED_WINDOWS:
        assert_endpoints_agree(client, stored_sessions, start, end, links)
    roll_up_the_next_hour(engine)
    assert not marks(engine)
    for start, end in STORED_WINDOWS:
        assert_endpoints_agree(client, stored_sessions, start, end, links)


def test_retention_moves_the_stored_sessions_beginning(stored_sessions, client, engine):
    # As if history before minute 60 were dropped: V-1's session across it is found
    # again from there, windows before it are answered live.
    with engine.begin() as conn:
        forget_sessions_before(conn, at(60))
    assert marks(engine) == {"V-1", "V-2", "V-3"} and min(start for _, start in stored(engine)) >= at(60)
    for start, end in [(60, 300), (61, 130), (100, 200), *STORED_WINDOWS]:
        assert_endpoints_agree(client, stored_sessions, start, end)
    roll_up_the_next_hour(engine)
    assert not marks(engine) and ("V-1", at(70.25)) in stored(engine)


def test_a_gap_other_than_the_stored_one_is_answered_live(stored_sessions, app, client, settings):
    app.config["SETTINGS"] = dataclasses.replace(settings, session_gap_min=45)
    v1 = get(client, "/v1/analytics/performance/V-1/sessions",
             **{"from": iso(at(-60)), "to": iso(at(300))})["sessions"]
    assert [(parse(s["start"]), parse(s["end"])) for s in v1] == [(at(0.25), at(165.25))]


@pytest.mark.parametrize("rolling_device", [None, "V-3"])
def test_readings_after_the_rolled_up_hour_are_read_live(session_data, client, engine,
                                                          rolling_device):
    # Sessions stored up to minute 60 (120 for the vehicles before V-3, whose range
    # of hour 60 is rolled up already); the readings after are read live.
    with engine.begin() as conn:
        conn.execute(text("UPDATE rollup_watermark SET rolled_up_until = :w, rolling_device = :d"),
                     {"w": at(60), "d": rolling_device})
    rebuild(engine, at(-60), at(300))
    assert stored(engine)
    for vehicle_id, start in stored(engine):
        assert start < at(120 if rolling_device and vehicle_id < rolling_device else 60)
    for start, end in STORED_WINDOWS:
        assert_endpoints_agree(client, session_data, start, end)
    assert roll_up_range(engine, at(300)) is True
    for start, end in STORED_WINDOWS:
        assert_endpoints_agree(client, session_data, start, end)


def test_an_hour_rolled_up_marks_the_vehicles_that_charged_in_it(session_data, client, engine):
    # Sessions stored up to minute 120; V-1 and V-4 charge in the hour after it, V-2
    # and V-3 do not. Marked, they are read live until their sessions are stored.
    with engine.begin() as conn:
        conn.execute(text("UPDATE rollup_watermark SET rolled_up_until = :w, rolling_device = NULL"),
                     {"w": at(120)})
    rebuild(engine, at(-60), at(300))
    assert not marks(engine)
    assert roll_up_range(engine, at(300)) is True
    assert marks(engine) == {"V-1", "V-4"}
    for start, end in STORED_WINDOWS:
        assert_endpoints_agree(client, session_data, start, end)
    assert store_marked_sessions(engine) == 2
    assert not marks(engine)
    want = reference_sessions(*session_data, T0 - timedelta(days=1), at(180))
    assert stored(engine) == sorted((w["vehicleId"], w["start"]) for w in want)
    for start, end in STORED_WINDOWS:
        assert_endpoints_agree(client, session_data, start, end)


def test_a_recompute_takes_vehicles_up_to_its_hours_of_history():
    budget = timedelta(hours=SESSION_HOURS)
    rows = [SimpleNamespace(vehicle_id=f"V-{n}", lo=T0, until=T0 + span)
            for n, span in enumerate([budget * 0.4, budget * 0.4, budget * 0.4, budget * 2])]
    assert [v for v, _, _ in within_budget(rows)] == ["V-0", "V-1"]  # a third is over
    assert [v for v, _, _ in within_budget(rows[3:])] == ["V-3"]  # longer alone: still done
    ahead = [SimpleNamespace(vehicle_id="V-9", lo=T0 + budget, until=T0)]  # a mark past its hour
    assert [v for v, _, _ in within_budget(ahead + rows)] == ["V-9", "V-0", "V-1"]
