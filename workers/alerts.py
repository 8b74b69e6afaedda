"""Alert evaluation: which vehicles lose too much energy or run too hot, now."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine

from models.alerts import reconcile
from models.fleet import VehicleFigures, all_vehicles
from models.sessions import Session, vehicle_sessions
from settings import Settings

log = logging.getLogger(__name__)

LOW_EFFICIENCY = "low_efficiency"
BATTERY_TEMPERATURE = "battery_temperature"


def alerts_for(v: VehicleFigures, s: Settings) -> dict[str, tuple[str, dict]]:
    """The alerts this vehicle's figures call for: kind -> (reason, figures)."""
    figures = {"acConsumedKwh": v.ac_kwh, "dcDeliveredKwh": v.dc_kwh,
               "efficiencyRatio": v.efficiency, "maxBatteryTemp": v.max_temp,
               "windowHours": s.alert_window_h}
    found = {}
    if v.efficiency is not None and v.ac_kwh >= s.alert_min_ac_kwh and v.efficiency < s.alert_threshold:
        found[LOW_EFFICIENCY] = (
            f"charging efficiency {v.efficiency:.3f} is below {s.alert_threshold} over the last "
            f"{s.alert_window_h:g} h (AC {v.ac_kwh:.2f} kWh, DC {v.dc_kwh:.2f} kWh)", figures)
    if v.max_temp is not None and v.max_temp > s.alert_max_battery_temp_c:
        found[BATTERY_TEMPERATURE] = (
            f"battery temperature reached {v.max_temp:g} °C, above {s.alert_max_battery_temp_c:g} °C, "
            f"in the last {s.alert_window_h:g} h", figures)
    return found


def worst_session(engine: Engine, vehicle_id: str, a: datetime, b: datetime,
                  s: Settings) -> Session | None:
    """The vehicle's session in [a, b) below the threshold that lost the most energy."""
    below = [x for x in vehicle_sessions(engine, vehicle_id, a, b, timedelta(minutes=s.session_gap_min))
             if x.efficiency is not None and x.efficiency < s.alert_threshold]
    return max(below, key=lambda x: x.loss_kwh, default=None)


def name_session(found: tuple[str, dict], session: Session | None) -> tuple[str, dict]:
    """A low_efficiency alert's reason and figures, naming its worst session."""
    if session is None:
        return found
    reason, figures = found
    start, end = session.start.isoformat(), session.end.isoformat()
    reason += (f"; worst session {start} to {end}: efficiency {session.efficiency:.3f}, "
               f"{session.loss_kwh:.2f} kWh lost")
    return reason, {**figures, "session": {
        "start": start, "end": end, "efficiencyRatio": session.efficiency,
        "acConsumedKwh": session.ac_kwh, "dcDeliveredKwh": session.dc_kwh, "lossKwh": session.loss_kwh}}


def evaluate_alerts(engine: Engine, settings: Settings, now: datetime) -> dict[str, int]:
    """Open, refresh and clear alerts from the fleet's figures over the window up to now;
    a low_efficiency alert names the vehicle's worst session."""
    a = now - timedelta(hours=settings.alert_window_h)
    vehicles = all_vehicles(engine, a, now)
    wanted = {(v.vehicle_id, kind): found
              for v in vehicles for kind, found in alerts_for(v, settings).items()}
    for (vehicle_id, kind), found in wanted.items():
        if kind == LOW_EFFICIENCY:
            wanted[(vehicle_id, kind)] = name_session(
                found, worst_session(engine, vehicle_id, a, now, settings))
    with engine.begin() as conn:
        opened, cleared = reconcile(conn, wanted, now)
    if opened or cleared:
        log.info("alerts: %d opened, %d cleared, %d open", opened, cleared, len(wanted))
    return {"opened": opened, "cleared": cleared, "open": len(wanted)}
