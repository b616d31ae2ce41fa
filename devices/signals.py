"""Believable sensor signals for simulated devices.

A signal is the sum of a baseline, a daily cycle, a mean-reverting random walk
and rare short spikes, clamped to what the sensor can report. Every random
choice comes from the `random.Random` handed in, so a seeded generator repeats
the same values for the same sample times.

The components are driven by time, not by the number of samples taken: a
device that reports ten times a second and one that reports once a minute see
the same weather, only sampled more or less often.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

SECONDS_PER_DAY = 86_400.0


class RandomWalk:
    """An Ornstein-Uhlenbeck process: noise that drifts back towards zero.

    `stddev` is the spread the walk settles into and `tau_s` how long it takes
    to forget where it was. The update is the exact solution for any time step,
    so irregular or sparse sampling neither blows it up nor flattens it.
    """

    def __init__(self, rng: random.Random, stddev: float, tau_s: float) -> None:
        self._rng = rng
        self._stddev = stddev
        self._tau_s = tau_s
        # Starting from the settled distribution avoids a warm-up period in
        # which every device of a fleet would read the same baseline.
        self._x = rng.gauss(0.0, stddev)
        self._last_s: float | None = None

    def sample(self, now_s: float) -> float:
        last_s, self._last_s = self._last_s, now_s
        if last_s is None or self._stddev == 0.0:
            return self._x
        # A clock that steps backwards (NTP) must not make the variance negative.
        dt = max(now_s - last_s, 0.0)
        keep = math.exp(-dt / self._tau_s)
        noise = self._stddev * math.sqrt(1.0 - keep * keep)
        self._x = self._x * keep + self._rng.gauss(0.0, noise)
        return self._x


class DailyCycle:
    """A sinusoid with a 24 h period over wall-clock time.

    `phase` (radians) differs per device, so a fleet does not rise and fall in
    lockstep; it is drawn once, when the cycle is made.
    """

    def __init__(self, amplitude: float, phase: float) -> None:
        self.amplitude = amplitude
        self.phase = phase

    def sample(self, now_s: float) -> float:
        return self.amplitude * math.sin(2.0 * math.pi * now_s / SECONDS_PER_DAY + self.phase)


class Spikes:
    """Rare, short excursions: a door opened, a kettle switched on.

    Spikes start as a Poisson process of `per_hour` events and last about
    `duration_s`, rising and falling as half a sine wave, so a spike looks like
    an event rather than a glitch. Their size varies around `magnitude`.
    """

    def __init__(
        self, rng: random.Random, per_hour: float, magnitude: float, duration_s: float
    ) -> None:
        self._rng = rng
        self._per_s = per_hour / 3600.0
        self._magnitude = magnitude
        self._duration_s = duration_s
        self._last_s: float | None = None
        self._start_s = 0.0
        self._end_s = 0.0
        self._height = 0.0
        self.count = 0

    def active(self, now_s: float) -> bool:
        return self._start_s <= now_s < self._end_s

    def sample(self, now_s: float) -> float:
        last_s, self._last_s = self._last_s, now_s
        if self._per_s == 0.0:
            return 0.0
        if not self.active(now_s) and last_s is not None:
            dt = max(now_s - last_s, 0.0)
            # Probability that at least one event of the process fell in dt.
            if self._rng.random() < -math.expm1(-self._per_s * dt):
                self._start_s = now_s
                self._end_s = now_s + self._duration_s * self._rng.uniform(0.5, 1.5)
                self._height = self._magnitude * self._rng.uniform(0.6, 1.4)
                self.count += 1
        if not self.active(now_s):
            return 0.0
        progress = (now_s - self._start_s) / (self._end_s - self._start_s)
        return self._height * math.sin(math.pi * progress)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """How one kind of sensor behaves.

    `base` is the fleet's typical level and `spread` how far one device's own
    level may sit from it. `low`/`high` are the sensor's hard limits; the other
    parameters are chosen so that values rarely reach them. `send_unit` says
    whether the unit travels with the value: metrics whose unit is the hub's
    default canonical one are sent as bare numbers, the others as
    `{"value": x, "unit": u}` so the hub records (or converts) the unit.
    """

    unit: str | None
    base: float
    spread: float
    daily_amplitude: float
    walk_stddev: float
    walk_tau_s: float
    spikes_per_hour: float
    spike_magnitude: float
    spike_duration_s: float
    low: float
    high: float
    decimals: int
    send_unit: bool


METRICS: dict[str, MetricSpec] = {
    "temperature": MetricSpec(
        unit="Cel", base=22.0, spread=1.5, daily_amplitude=2.5,
        walk_stddev=0.6, walk_tau_s=900.0,
        spikes_per_hour=0.5, spike_magnitude=3.0, spike_duration_s=60.0,
        low=-40.0, high=85.0, decimals=2, send_unit=False,
    ),
    "humidity": MetricSpec(
        unit="%RH", base=55.0, spread=5.0, daily_amplitude=8.0,
        walk_stddev=3.0, walk_tau_s=1200.0,
        spikes_per_hour=0.3, spike_magnitude=8.0, spike_duration_s=120.0,
        low=0.0, high=100.0, decimals=1, send_unit=False,
    ),
    "pressure": MetricSpec(
        unit="hPa", base=1013.0, spread=4.0, daily_amplitude=1.0,
        walk_stddev=5.0, walk_tau_s=6 * 3600.0,
        spikes_per_hour=0.0, spike_magnitude=0.0, spike_duration_s=0.0,
        low=870.0, high=1085.0, decimals=1, send_unit=True,
    ),
    "voltage": MetricSpec(
        unit="V", base=230.0, spread=2.0, daily_amplitude=2.0,
        walk_stddev=1.5, walk_tau_s=120.0,
        spikes_per_hour=1.0, spike_magnitude=-12.0, spike_duration_s=2.0,
        low=0.0, high=260.0, decimals=1, send_unit=True,
    ),
    "power": MetricSpec(
        unit="W", base=400.0, spread=150.0, daily_amplitude=200.0,
        walk_stddev=60.0, walk_tau_s=300.0,
        spikes_per_hour=2.0, spike_magnitude=1500.0, spike_duration_s=120.0,
        low=0.0, high=5000.0, decimals=1, send_unit=True,
    ),
    "co2": MetricSpec(
        unit="ppm", base=650.0, spread=50.0, daily_amplitude=150.0,
        walk_stddev=50.0, walk_tau_s=900.0,
        spikes_per_hour=0.5, spike_magnitude=400.0, spike_duration_s=300.0,
        low=400.0, high=5000.0, decimals=0, send_unit=True,
    ),
}  # fmt: skip

GENERIC = MetricSpec(
    unit=None, base=50.0, spread=10.0, daily_amplitude=10.0,
    walk_stddev=5.0, walk_tau_s=300.0,
    spikes_per_hour=0.5, spike_magnitude=20.0, spike_duration_s=30.0,
    low=-math.inf, high=math.inf, decimals=2, send_unit=False,
)  # fmt: skip

Value = float | dict[str, float | str]
"""A sample as a device payload carries it: a bare number or value with unit."""


class Signal:
    """One metric of one device: baseline + daily cycle + walk + spikes."""

    def __init__(self, metric: str, spec: MetricSpec, rng: random.Random) -> None:
        self.metric = metric
        self.spec = spec
        self.unit = spec.unit
        self.level = spec.base + rng.uniform(-spec.spread, spec.spread)
        self.cycle = DailyCycle(spec.daily_amplitude, rng.uniform(0.0, 2.0 * math.pi))
        self.walk = RandomWalk(rng, spec.walk_stddev, spec.walk_tau_s)
        self.spikes = Spikes(rng, spec.spikes_per_hour, spec.spike_magnitude, spec.spike_duration_s)

    def sample(self, now_s: float) -> tuple[float, str | None]:
        """The value at wall-clock time `now_s` (epoch seconds), and its unit.

        Sample times should not go backwards; if they do, the walk and spikes
        hold still instead of running in reverse.
        """
        raw = self.level + self.cycle.sample(now_s) + self.walk.sample(now_s)
        raw += self.spikes.sample(now_s)
        spec = self.spec
        clamped = min(max(raw, spec.low), spec.high)
        return round(clamped, spec.decimals), self.unit

    def reading(self, now_s: float) -> Value:
        """The sample in the form it goes into a payload's `values`."""
        value, unit = self.sample(now_s)
        if self.spec.send_unit and unit is not None:
            return {"value": value, "unit": unit}
        return value


def make_signal(metric: str, rng: random.Random) -> Signal:
    """A signal for `metric`; unknown names get a generic walk without a unit."""
    return Signal(metric, METRICS.get(metric, GENERIC), rng)


def make_signals(metrics: Iterable[str], rng: random.Random) -> dict[str, Signal]:
    """One signal per metric, all drawing on the same generator in order."""
    return {metric: make_signal(metric, rng) for metric in metrics}


def seeded(seed: int | None, name: str) -> random.Random:
    """A generator of its own for `name`, repeatable when `seed` is given."""
    # A string seed is hashed the same way in every process, unlike hash().
    return random.Random(f"{seed}/{name}") if seed is not None else random.Random()
