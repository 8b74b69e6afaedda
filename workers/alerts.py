"""Alert evaluation: which vehicles lose too much energy or run too hot, now."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Engine

from models.alerts import reconcile
from models.fleet import VehicleFigures, all_vehicles
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


def evaluate_alerts(engine: Engine, settings: Settings, now: datetime) -> dict[str, int]:
    """Open, refresh and clear alerts from the fleet's figures over the window up to now."""
    vehicles = all_vehicles(engine, now - timedelta(hours=settings.alert_window_h), now)
    wanted = {(v.vehicle_id, kind): found
              for v in vehicles for kind, found in alerts_for(v, settings).items()}
    with engine.begin() as conn:
        opened, cleared = reconcile(conn, wanted, now)
    if opened or cleared:
        log.info("alerts: %d opened, %d cleared, %d open", opened, cleared, len(wanted))
    return {"opened": opened, "cleared": cleared, "open": len(wanted)}
