"""The physical model of the simulated fleet: vehicles, their batteries and chargers,
and the meters that feed them. Pure NumPy, vectorised over vehicles, stepped one
minute at a time, and seedable: the same arguments give the same readings.

Each vehicle goes round idle (parked, unplugged) -> driving -> idle ..., and plugs
in when a stop finds its state of charge (SoC) below its own threshold. While it
charges, the DC delivered to the battery in a minute is the charger's power times
a CC-CV taper (full power up to 80 % SoC, then tapering towards 100 %) over 60;
the meter linked to it records AC = DC / efficiency, where the efficiency is the
vehicle's own (drawn from [0.85, 0.95], or from [0.70, 0.80] for a degraded one)
with a little per-minute noise kept inside that range. The battery warms towards
a temperature that grows with the charging power while charging, and relaxes
towards the ambient temperature otherwise. Idle and driving minutes deliver no
DC and draw no AC, so a vehicle's efficiency over any window (sum of DC over sum
of AC) stays within its range. Driving drains SoC.

Meter i feeds vehicle i. With more meters than vehicles, the extra meters are
linked round robin to the vehicles but draw nothing (spare charge points); with
more vehicles than meters, the extra vehicles have no meter (they charge elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HEALTHY_EFFICIENCY = (0.85, 0.95)
DEGRADED_EFFICIENCY = (0.70, 0.80)
EFFICIENCY_NOISE = 0.004  # standard deviation of the per-minute efficiency
# The per-minute efficiency stays this far inside its range, so that rounding in
# sums never takes a healthy vehicle below the alert threshold (0.85), nor a
# degraded one up to 0.80.
EFFICIENCY_MARGIN = 0.0005

IDLE, DRIVING, CHARGING = 0, 1, 2

AC_CHARGERS_KW = np.array([7.4, 11.0])
DC_FAST_KW = 50.0
DC_FAST_SHARE = 0.2
CV_KNEE_SOC = 80.0  # constant current below, constant voltage (tapering) above
MIN_TAPER = 0.05
NOMINAL_VOLTAGE = 230.0


def device_ids(prefix: str, count: int) -> list[str]:
    """`M-00001` ... : numbered from 1, zero-padded to the width of `count`."""
    width = len(str(count))
    return [f"{prefix}-{i:0{width}d}" for i in range(1, count + 1)]


def linked_vehicle(meter_index: int, vehicles: int) -> int:
    """The index of the vehicle meter `meter_index` (0-based) feeds."""
    return meter_index % vehicles


@dataclass(frozen=True)
class Profile:
    """What does not change: one entry per vehicle."""

    efficiency: np.ndarray
    efficiency_low: np.ndarray  # the range the per-minute efficiency is kept in
    efficiency_high: np.ndarray
    degraded: np.ndarray  # bool
    capacity_kwh: np.ndarray
    charger_kw: np.ndarray
    drive_kwh_per_min: np.ndarray
    plug_below_soc: np.ndarray  # plugs in at a stop when SoC is below this
    ambient_c: np.ndarray

    def __len__(self) -> int:
        return len(self.efficiency)

    def select(self, rows: slice) -> Profile:
        return Profile(**{name: getattr(self, name)[rows] for name in self.__dataclass_fields__})


def make_profile(vehicles: int, degraded: int = 0, seed: int = 1) -> Profile:
    """Draw every vehicle's constants; `degraded` of them (chosen at random) charge
    with an efficiency in DEGRADED_EFFICIENCY, the rest in HEALTHY_EFFICIENCY."""
    if not 0 <= degraded <= vehicles:
        raise ValueError(f"degraded must be between 0 and the number of vehicles ({vehicles})")
    rng = np.random.default_rng([seed, 0])
    is_degraded = np.zeros(vehicles, dtype=bool)
    is_degraded[rng.choice(vehicles, size=degraded, replace=False)] = True
    low = np.where(is_degraded, DEGRADED_EFFICIENCY[0], HEALTHY_EFFICIENCY[0])
    high = np.where(is_degraded, DEGRADED_EFFICIENCY[1], HEALTHY_EFFICIENCY[1])
    fast = rng.random(vehicles) < DC_FAST_SHARE
    return Profile(
        efficiency=rng.uniform(low, high),
        efficiency_low=low + EFFICIENCY_MARGIN,
        efficiency_high=high - EFFICIENCY_MARGIN,
        degraded=is_degraded,
        capacity_kwh=rng.choice(np.array([40.0, 58.0, 77.0, 100.0]), vehicles),
        charger_kw=np.where(fast, DC_FAST_KW, rng.choice(AC_CHARGERS_KW, vehicles)),
        drive_kwh_per_min=rng.uniform(0.12, 0.25, vehicles),
        plug_below_soc=rng.uniform(40.0, 70.0, vehicles),
        ambient_c=rng.uniform(15.0, 25.0, vehicles),
    )


@dataclass(frozen=True)
class State:
    """What changes minute by minute: one entry per vehicle."""

    mode: np.ndarray  # IDLE, DRIVING or CHARGING
    minutes_left: np.ndarray  # of the current idle or driving period
    soc: np.ndarray
    target_soc: np.ndarray  # where the current charging session stops
    temp_c: np.ndarray


@dataclass(frozen=True)
class Minute:
    """The readings of one minute: vehicle arrays, and `ac`/`voltage` per vehicle for
    the meter that feeds it."""

    soc: np.ndarray
    dc_kwh: np.ndarray
    temp_c: np.ndarray
    ac_kwh: np.ndarray
    voltage: np.ndarray


def initial_state(profile: Profile, rng: np.random.Generator) -> State:
    """A fleet caught mid-day: some vehicles charging, some driving, some parked."""
    n = len(profile)
    soc = rng.uniform(20.0, 90.0, n)
    draw = rng.random(n)
    mode = np.where(draw < 0.3, CHARGING, np.where(draw < 0.6, DRIVING, IDLE)).astype(np.int8)
    charging = mode == CHARGING
    temp = profile.ambient_c + np.where(charging, rng.uniform(4.0, 10.0, n), rng.uniform(0.0, 3.0, n))
    return State(
        mode=mode,
        minutes_left=np.where(mode == DRIVING, rng.integers(1, 120, n), rng.integers(1, 240, n)),
        soc=soc,
        target_soc=np.maximum(soc + 5.0, rng.uniform(80.0, 99.5, n)).clip(max=99.5),
        temp_c=temp,
    )


def taper(soc: np.ndarray) -> np.ndarray:
    """The CC-CV charging curve: the share of the charger's power the battery takes."""
    return np.clip((100.0 - soc) / (100.0 - CV_KNEE_SOC), MIN_TAPER, 1.0)


def step(profile: Profile, state: State, rng: np.random.Generator) -> tuple[State, Minute]:
    """Advance every vehicle by one minute; returns the new state and the minute's readings."""
    n = len(profile)
    charging = state.mode == CHARGING
    driving = state.mode == DRIVING

    # Charging: DC along the CC-CV curve, never past a full battery.
    share = taper(state.soc)
    room_kwh = (100.0 - state.soc) / 100.0 * profile.capacity_kwh
    dc = profile.charger_kw * share / 60.0 * rng.normal(1.0, 0.01, n).clip(0.95, 1.05)
    dc = np.where(charging, np.minimum(dc, room_kwh), 0.0).clip(min=0.0)
    efficiency = np.clip(profile.efficiency + rng.normal(0.0, EFFICIENCY_NOISE, n),
                         profile.efficiency_low, profile.efficiency_high)
    ac = np.where(dc > 0, dc / efficiency, 0.0)

    drain = np.where(driving, profile.drive_kwh_per_min * rng.uniform(0.6, 1.4, n), 0.0)
    soc = np.clip(state.soc + (dc - drain) / profile.capacity_kwh * 100.0, 0.0, 100.0)

    # Battery temperature: first-order towards a target that depends on what the vehicle does.
    power_share = profile.charger_kw * share / DC_FAST_KW
    target = np.where(charging, profile.ambient_c + 10.0 + 12.0 * power_share,
                      np.where(driving, profile.ambient_c + 6.0, profile.ambient_c))
    tau = np.where(charging, 25.0, np.where(driving, 40.0, 60.0))
    temp = state.temp_c + (target - state.temp_c) * (1.0 - np.exp(-1.0 / tau))
    temp = temp + rng.normal(0.0, 0.05, n)

    # Grid voltage: 230 V with noise, sagging a little under a charging load.
    voltage = NOMINAL_VOLTAGE + rng.normal(0.0, 1.5, n) - np.where(charging, 3.0 * share, 0.0)

    # Transitions.
    left = state.minutes_left - 1
    mode = state.mode.copy()
    target_soc = state.target_soc
    done_charging = charging & (soc >= state.target_soc)
    period_over = ~charging & ((left <= 0) | (driving & (soc <= 10.0)))
    plug_in = period_over & (soc < profile.plug_below_soc)
    start_driving = period_over & ~plug_in & ~driving
    park = (period_over & ~plug_in & driving) | done_charging
    mode[plug_in] = CHARGING
    mode[start_driving] = DRIVING
    mode[park] = IDLE
    left = np.where(start_driving, rng.integers(20, 150, n),
                    np.where(park, rng.integers(30, 300, n), left))
    target_soc = np.where(plug_in, rng.uniform(80.0, 99.5, n), target_soc)

    new_state = State(mode=mode, minutes_left=left, soc=soc, target_soc=target_soc, temp_c=temp)
    minute = Minute(
        soc=np.round(soc, 2).clip(0.0, 100.0),
        dc_kwh=dc,
        temp_c=np.round(temp, 2).clip(-50.0, 150.0),
        ac_kwh=ac,
        voltage=np.round(voltage, 1).clip(min=1.0),
    )
    return new_state, minute


@dataclass(frozen=True)
class Series:
    """`minutes` consecutive minutes of a set of vehicles: arrays shaped (minutes, vehicles)."""

    soc: np.ndarray
    dc_kwh: np.ndarray
    temp_c: np.ndarray
    ac_kwh: np.ndarray
    voltage: np.ndarray


def simulate(profile: Profile, minutes: int, rng: np.random.Generator,
             state: State | None = None) -> tuple[State, Series]:
    """Run the vehicles of `profile` for `minutes` minutes (from a fresh mid-day state
    unless `state` is given); returns the final state and every minute's readings."""
    state = initial_state(profile, rng) if state is None else state
    shape = (minutes, len(profile))
    out = {name: np.empty(shape) for name in Series.__dataclass_fields__}
    for t in range(minutes):
        state, minute = step(profile, state, rng)
        for name in out:
            out[name][t] = getattr(minute, name)
    return state, Series(**out)
