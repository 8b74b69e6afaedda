"""`python -m simulator live`: post the fleet's readings to a running instance over HTTP
(or, with --mqtt, publish them to its MQTT broker: simulator/mqtt.py).

Every device reports once per simulated minute, at its own second within the
minute so that the load is spread out. Some devices sit behind gateways, each
of which posts the readings of its devices of a minute as one array (up to
--gateway-size readings); the rest post single readings. Simulated time runs
--speed times faster than real time, starting far enough in the past that it
reaches now when --duration ends, and never runs ahead of the real clock, so no
timestamp lies in the future. Requests go out at up to --rate readings per
second in total (a slower sender holds simulated time back, never skips a
reading). 429 and 503 are retried with the same body after their Retry-After.
With --provision, devices and gateways are registered first and each sender
posts with its own token (simulator/provision.py).
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import numpy as np
from tqdm import tqdm

from simulator import fleet
from simulator.mqtt import Publisher, Refused
from simulator.provision import Provisioner, ProvisionError, sender_tokens

UNBOUNDED_LOOKBACK_S = 3600.0  # without --duration, speed > 1 catches up with now after this long
MAX_LOOKBACK_S = 86400.0
MAX_RETRY_AFTER_S = 60.0
TRANSPORT_ATTEMPTS = 5
REQUEST_TIMEOUT_S = 30.0
DRAIN_GRACE_S = 30.0  # after the stop, how long requests in flight may take


@dataclass(frozen=True)
class Options:
    url: str = "http://localhost:8000"
    token: str = "dev-ingest-token"
    operator_token: str = "dev-operator-token"
    link: bool = True
    vehicles: int = 100
    meters: int = 100
    rate: float = 200.0
    duration: float | None = None
    speed: float = 1.0
    gateway_size: int = 50
    gateway_share: float = 0.5
    degraded: int = 2
    seed: int = 1
    concurrency: int = 16
    progress: bool | None = None
    provision: bool = False
    mqtt: str | None = None  # publish readings to this broker instead of POSTing them

    @classmethod
    def from_args(cls, args) -> Options:
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__})


@dataclass
class Summary:
    accepted: int = 0  # readings in 202 responses
    requests: int = 0  # HTTP requests to /v1/ingest, retries included
    retries: Counter = field(default_factory=Counter)  # by status (or "connection")
    errors: Counter = field(default_factory=Counter)  # requests given up, by status
    error_readings: int = 0
    error_samples: dict = field(default_factory=dict)  # status -> first response body
    abandoned: int = 0  # readings waiting to be retried when the run stopped
    links: int = 0
    link_errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    sim_start: datetime | None = None
    sim_end: datetime | None = None
    speed: float = 1.0
    fatal: str | None = None
    unit: str = "requests"  # or "messages" (MQTT)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def exit_code(self) -> int:
        if self.fatal:
            return 2
        return 1 if self.errors or self.link_errors else 0

    def report(self) -> str:
        def by_status(counter: Counter) -> str:
            return ", ".join(f"{k}: {v:,}" for k, v in sorted(counter.items(), key=str)) or "none"

        lines = [
            f"live: {self.accepted:,} readings accepted in {self.requests:,} {self.unit} over "
            f"{self.seconds:.1f} s ({self.rate:,.1f} readings/s, "
            f"{self.requests / self.seconds if self.seconds else 0:,.1f} {self.unit}/s)",
        ]
        if self.sim_start and self.sim_end:
            lines.append(f"  simulated {iso(self.sim_start)} .. {iso(self.sim_end)} "
                         f"(speed {self.speed:g}); meters linked: {self.links:,}"
                         + (f" (link errors: {by_status(self.link_errors)})" if self.link_errors else ""))
        lines.append(f"  retried: {sum(self.retries.values()):,} ({by_status(self.retries)}); "
                     f"errors: {by_status(self.errors)}"
                     + (f" ({self.error_readings:,} readings lost)" if self.error_readings else ""))
        for status, body in sorted(self.error_samples.items(), key=str):
            lines.append(f"  first {status} answer: {body}")
        if self.abandoned:
            lines.append(f"  not sent: {self.abandoned:,} readings were waiting to be retried at the stop")
        if self.fatal:
            lines.append(f"  stopped: {self.fatal}")
        return "\n".join(lines)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_epoch(seconds: float) -> str:
    return iso(datetime.fromtimestamp(seconds, UTC))


@dataclass(frozen=True)
class Sender:
    """A gateway (several devices, one array a minute) or one device (single readings).
    `devices` are ("meter" | "vehicle", index) pairs; `offsets` their seconds into the minute."""

    phase_s: float  # when in each minute it posts
    devices: tuple[tuple[str, int], ...]
    offsets: tuple[float, ...]
    gateway: bool


def plan_senders(vehicles: int, meters: int, gateway_share: float, gateway_size: int,
                 seed: int) -> list[Sender]:
    """Assign devices to gateways or to single posting; ordered by when they post."""
    rng = np.random.default_rng([seed, 3])
    devices = [("meter", i) for i in range(meters)] + [("vehicle", i) for i in range(vehicles)]
    order = rng.permutation(len(devices))
    behind = round(gateway_share * len(devices))
    senders = []
    for g in range(0, behind, gateway_size):
        members = [devices[i] for i in order[g:min(g + gateway_size, behind)]]
        phase = round(float(rng.uniform(10.0, 60.0)), 3)
        offsets = tuple(round(float(x), 3) for x in rng.uniform(0.0, phase, len(members)))
        senders.append(Sender(phase, tuple(members), offsets, True))
    for i in order[behind:]:
        phase = round(float(rng.uniform(0.0, 60.0)), 3)
        senders.append(Sender(phase, (devices[i],), (phase,), False))
    senders.sort(key=lambda s: s.phase_s)
    return senders


class MinuteReadings:
    """The readings of every device for one simulated minute, as JSON-ready values."""

    def __init__(self, minute: fleet.Minute, meters: int, vehicles: int, rng: np.random.Generator,
                 meter_ids: list[str], vehicle_ids: list[str]) -> None:
        self.soc = minute.soc.tolist()
        self.dc = minute.dc_kwh.tolist()
        self.temp = minute.temp_c.tolist()
        paired = min(meters, vehicles)
        ac = np.zeros(meters)
        voltage = np.round(fleet.NOMINAL_VOLTAGE + rng.normal(0.0, 1.5, meters), 1)
        ac[:paired] = minute.ac_kwh[:paired]
        voltage[:paired] = minute.voltage[:paired]
        self.ac = ac.tolist()
        self.voltage = voltage.tolist()
        self.meter_ids = meter_ids
        self.vehicle_ids = vehicle_ids

    def reading(self, kind: str, i: int, timestamp: str) -> dict:
        if kind == "meter":
            return {"meterId": self.meter_ids[i], "kwhConsumedAc": self.ac[i], "voltage": self.voltage[i],
                    "timestamp": timestamp}
        return {"vehicleId": self.vehicle_ids[i], "soc": self.soc[i], "kwhDeliveredDc": self.dc[i],
                "batteryTemp": self.temp[i], "timestamp": timestamp}


class Clock:
    """Simulated time: `speed` times real time from `sim_start`, never past the real clock."""

    def __init__(self, sim_start: float, speed: float) -> None:
        self.sim_start = sim_start
        self.speed = speed
        self.t0 = time.monotonic()

    def seconds_until(self, sim_t: float) -> float:
        """Real seconds until simulated time reaches sim_t."""
        ahead = (sim_t - self.sim_start) / self.speed - (time.monotonic() - self.t0)
        return max(ahead, sim_t - time.time(), 0.0)


class Limiter:
    """At most `rate` readings per second, on average."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.next_free = time.monotonic()

    async def acquire(self, readings: int) -> None:
        now = time.monotonic()
        start = max(self.next_free, now)
        self.next_free = start + readings / self.rate
        if start > now:
            await asyncio.sleep(start - now)


def retry_after(raw: str) -> float:
    """Seconds to wait, from a Retry-After header (seconds or an HTTP date); 1 s if unreadable."""
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime
            seconds = (parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            seconds = 1.0
    return min(max(seconds, 0.1), MAX_RETRY_AFTER_S)


class Fatal(Exception):
    """The server refused our credentials: nothing more will get through."""


class Runner:
    def __init__(self, options: Options) -> None:
        self.o = options
        self.summary = Summary(speed=options.speed)
        self.stop = asyncio.Event()
        self.meter_ids = fleet.device_ids("M", options.meters)
        self.vehicle_ids = fleet.device_ids("V", options.vehicles)
        self.devices = options.meters + options.vehicles
        now = time.time()
        lookback = (options.speed - 1.0) * (options.duration or UNBOUNDED_LOOKBACK_S)
        self.sim_start = math.floor((now - min(lookback, MAX_LOOKBACK_S)) / 60.0) * 60.0
        self.bar: tqdm | None = None
        self.base_url = options.url.rstrip("/")
        self.senders = plan_senders(options.vehicles, options.meters, options.gateway_share,
                                    options.gateway_size, options.seed)
        # Each sender's token, from --provision; else every sender posts with --token.
        self.tokens = [options.token] * len(self.senders)
        self.publisher: Publisher | None = None

    # -- HTTP --------------------------------------------------------------------------

    async def request(self, client: aiohttp.ClientSession, method: str, path: str, body: bytes,
                      token: str, readings: int, counts: bool) -> int | None:
        """Send until answered (429/503: after Retry-After); the final status, None if given up."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        url = self.base_url + path
        failures = 0
        while True:
            try:
                async with client.request(method, url, data=body, headers=headers) as response:
                    status = response.status
                    text = await response.text(errors="replace")
                    wait_s = retry_after(response.headers.get("Retry-After", ""))
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures += 1
                if failures >= TRANSPORT_ATTEMPTS or self.stop.is_set():
                    if counts:
                        self.summary.errors["connection"] += 1
                        self.summary.error_samples.setdefault("connection", f"{type(exc).__name__}: {exc}")
                        self.summary.error_readings += readings
                    return None
                self.summary.retries["connection"] += 1
                await self.wait(min(0.5 * 2 ** failures, 10.0))
                continue
            if counts:
                self.summary.requests += 1
            if status in (429, 503):
                self.summary.retries[status] += 1
                if await self.wait(wait_s):
                    if counts:
                        self.summary.abandoned += readings
                    return None
                continue
            if status in (401, 403):
                raise Fatal(f"{method} {path} answered {status}: {text.strip()[:200]} "
                            "(check the token)")
            if counts:
                if status == 202:
                    try:
                        accepted = int(json.loads(text)["accepted"])
                    except (ValueError, KeyError, TypeError):
                        accepted = readings
                    self.summary.accepted += accepted
                    if self.bar is not None:
                        self.bar.update(accepted)
                else:
                    self.summary.errors[status] += 1
                    self.summary.error_readings += readings
                    self.summary.error_samples.setdefault(status, text.strip()[:300])
            return status

    async def wait(self, seconds: float) -> bool:
        """Sleep, or less if the run stops; True if it stopped."""
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    # -- where stored history ends ------------------------------------------------------

    async def start_after_stored_history(self, client: aiohttp.ClientSession) -> None:
        """Start simulated time after the fleet's newest stored reading (a `backfill`
        that ended at now, say): from further back, each device would get a second,
        independent trajectory over minutes it already has, and their energy would be
        counted twice. The clock never passes the real one, so from there it runs in
        real time."""
        try:
            newest = await self.newest_stored(client)
        except aiohttp.ClientConnectionError:  # no web to ask (publishing over MQTT, say)
            print(f"live: warning: {self.base_url} does not answer: cannot tell where stored "
                  "history ends, so readings may overlap it", file=sys.stderr)
            return
        if newest is None or newest < self.sim_start:
            return
        self.sim_start = math.floor(newest / 60.0) * 60.0 + 60.0
        print(f"live: the fleet has readings up to {iso_epoch(newest)}; continuing from "
              f"{iso_epoch(self.sim_start)}, so that no minute is simulated twice", file=sys.stderr)

    async def newest_stored(self, client: aiohttp.ClientSession) -> float | None:
        """The newest reading's time (epoch s) among a sample of the fleet's devices,
        from the live endpoints; None if none has one (or they cannot be read)."""
        def spread(ids: list[str]) -> list[str]:
            return sorted(set(ids[::max(1, len(ids) // 8)] + ids[-1:]))

        headers = {"Authorization": f"Bearer {self.o.operator_token}"}
        newest = None
        for kind, ids in (("vehicles", self.vehicle_ids), ("meters", self.meter_ids)):
            for device in spread(ids):
                async with client.get(f"{self.base_url}/v1/live/{kind}/{device}", headers=headers) as answer:
                    if answer.status in (401, 403):
                        print(f"live: warning: GET /v1/live/{kind}/{device} answered {answer.status} "
                              "(--operator-token): cannot tell where stored history ends, so readings "
                              "may overlap it", file=sys.stderr)
                        return None
                    if answer.status != 200:
                        continue
                    at = datetime.fromisoformat((await answer.json())["timestamp"].replace("Z", "+00:00"))
                    newest = max(newest or at.timestamp(), at.timestamp())
        return newest

    # -- links -----------------------------------------------------------------------

    async def link_meters(self, client: aiohttp.ClientSession) -> None:
        since = iso_epoch(self.sim_start)
        gate = asyncio.Semaphore(self.o.concurrency)
        bar = tqdm(total=self.o.meters, unit="link", desc="links", file=sys.stderr,
                   disable=(None if self.o.progress is None else not self.o.progress)
                   if self.o.meters >= 1000 else True)

        async def put(i: int) -> None:
            vehicle = self.vehicle_ids[fleet.linked_vehicle(i, self.o.vehicles)]
            body = json.dumps({"vehicleId": vehicle, "since": since}).encode()
            async with gate:
                if self.stop.is_set():
                    return
                try:
                    status = await self.request(client, "PUT", f"/v1/meters/{self.meter_ids[i]}/vehicle",
                                                body, self.o.operator_token, 0, counts=False)
                except Fatal:
                    self.stop.set()
                    raise
            if status == 200:
                self.summary.links += 1
            else:
                self.summary.link_errors[status or "connection"] += 1
            bar.update(1)

        try:
            await asyncio.gather(*(put(i) for i in range(self.o.meters)))
        finally:
            bar.close()

    async def provision(self, client: aiohttp.ClientSession) -> None:
        provisioner = Provisioner(client, self.base_url, self.o.operator_token, self.o.concurrency)
        self.tokens = await sender_tokens(provisioner, self.senders, self.meter_ids, self.vehicle_ids)
        gateways = sum(1 for s in self.senders if s.gateway)
        print(f"provisioned {self.devices:,} devices and {gateways:,} gateways", file=sys.stderr)

    # -- readings --------------------------------------------------------------------

    async def post_readings(self, client: aiohttp.ClientSession) -> None:
        o = self.o
        profile = fleet.make_profile(o.vehicles, o.degraded, o.seed)
        rng = np.random.default_rng([o.seed, 4])
        state = fleet.initial_state(profile, rng)
        clock = Clock(self.sim_start, o.speed)
        limiter = Limiter(o.rate)
        gate = asyncio.Semaphore(o.concurrency)
        in_flight: set[asyncio.Task] = set()
        failure: list[BaseException] = []

        async def post(body: bytes, readings: int, token: str) -> None:
            try:
                await self.request(client, "POST", "/v1/ingest", body, token, readings, counts=True)
            except Fatal as exc:
                failure.append(exc)
                self.stop.set()
            finally:
                gate.release()

        minute = 0
        while not self.stop.is_set():
            minute_start = self.sim_start + 60.0 * minute
            state, values = fleet.step(profile, state, rng)
            readings = MinuteReadings(values, o.meters, o.vehicles, rng, self.meter_ids, self.vehicle_ids)
            for sender, token in zip(self.senders, self.tokens, strict=True):
                delay = clock.seconds_until(minute_start + sender.phase_s)
                if self.stop.is_set() or (delay > 0 and await self.wait(delay)):
                    break
                body = [readings.reading(kind, i, iso_epoch(minute_start + offset))
                        for (kind, i), offset in zip(sender.devices, sender.offsets, strict=True)]
                await limiter.acquire(len(body))
                if self.publisher is not None:
                    await self.publish(body)
                    self.summary.sim_end = datetime.fromtimestamp(minute_start + sender.phase_s, UTC)
                    continue
                await gate.acquire()
                if self.stop.is_set():
                    gate.release()
                    break
                payload = json.dumps(body if sender.gateway else body[0], separators=(",", ":"))
                task = asyncio.create_task(post(payload.encode(), len(body), token))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                self.summary.sim_end = datetime.fromtimestamp(minute_start + sender.phase_s, UTC)
            minute += 1
        if in_flight:
            await asyncio.wait(in_flight, timeout=DRAIN_GRACE_S)
        if failure:
            raise failure[0]

    # -- MQTT ----------------------------------------------------------------------------

    async def publish(self, readings: list[dict]) -> None:
        """Publish each reading on its device's topic; wait while too many are unacknowledged."""
        for reading in readings:
            while not self.publisher.room() and not self.stop.is_set():
                await asyncio.sleep(0.002)
            self.publisher.publish(reading)
        self.count_published()

    def count_published(self) -> None:
        """Copy the publisher's counts into the summary (and the progress bar)."""
        p, summary = self.publisher, self.summary
        if self.bar is not None and p.acked > summary.accepted:
            self.bar.update(p.acked - summary.accepted)
        summary.accepted, summary.requests = p.acked, p.published
        summary.errors = Counter(p.refused)
        summary.error_readings = sum(p.refused.values())

    async def finish_publishing(self) -> None:
        """Wait (up to DRAIN_GRACE_S) for the broker to acknowledge what was published."""
        deadline = time.monotonic() + DRAIN_GRACE_S
        while self.publisher.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self.count_published()
        self.summary.abandoned = self.publisher.pending
        self.publisher.close()

    # -- the run -----------------------------------------------------------------------

    def describe(self) -> str:
        o = self.o
        natural = self.devices * o.speed / 60.0
        gateways = math.ceil(round(o.gateway_share * self.devices) / o.gateway_size)
        text = (f"live: {o.meters:,} meters + {o.vehicles:,} vehicles ({o.gateway_share:.0%} behind "
                f"{gateways:,} gateway{'' if gateways == 1 else 's'} of up to {o.gateway_size}), "
                f"simulated time from "
                f"{iso_epoch(self.sim_start)} at speed {o.speed:g}, up to {o.rate:g} readings/s to "
                f"{self.publisher.broker if self.publisher else o.url}")
        if natural < o.rate * 0.95:
            text += (f"\n  note: this fleet makes only {natural:,.1f} readings/s at speed {o.speed:g} "
                     f"(one per device per simulated minute): raise --speed or add devices to reach --rate")
        return text

    async def run(self) -> Summary:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        interrupts = 0

        def interrupt() -> None:
            nonlocal interrupts
            interrupts += 1
            self.stop.set()
            if interrupts > 1:
                main.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, interrupt)
        started = time.monotonic()
        try:
            if self.o.mqtt:
                try:
                    self.publisher = await asyncio.to_thread(Publisher(self.o.mqtt).connect)
                except (Refused, OSError) as exc:
                    raise Fatal(f"MQTT: {exc}") from None
                self.summary.unit = "messages"
            print(self.describe(), file=sys.stderr)
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.o.concurrency),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            ) as client:
                if self.o.provision:
                    await self.provision(client)
                await self.start_after_stored_history(client)
                if self.o.link and self.o.meters:
                    await self.link_meters(client)
                natural = self.devices * self.o.speed / 60.0
                expected = None
                if self.o.duration:
                    expected = round(min(self.o.rate, natural) * self.o.duration)
                    loop.call_later(self.o.duration, self.stop.set)
                self.summary.sim_start = datetime.fromtimestamp(self.sim_start, UTC)
                started = time.monotonic()
                self.bar = tqdm(total=expected, unit="reading", unit_scale=True, desc="live",
                                file=sys.stderr, smoothing=0.1,
                                disable=None if self.o.progress is None else not self.o.progress)
                await self.post_readings(client)
                if self.publisher is not None:
                    await self.finish_publishing()
        except (Fatal, ProvisionError) as exc:
            self.summary.fatal = str(exc)
        except asyncio.CancelledError:
            self.summary.fatal = "interrupted twice: requests in flight were cut off"
        finally:
            self.summary.seconds = time.monotonic() - started
            if self.bar is not None:
                self.bar.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        return self.summary


def run(options: Options) -> Summary:
    if options.degraded > options.vehicles:
        raise ValueError("more degraded vehicles than vehicles")

    async def main() -> Summary:
        return await Runner(options).run()

    return asyncio.run(main())
