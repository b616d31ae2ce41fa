"""The simulated sensor signals: repeatable, in range, and shaped like the real thing."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from devices.signals import (
    METRICS,
    SECONDS_PER_DAY,
    DailyCycle,
    RandomWalk,
    Spikes,
    make_signal,
    make_signals,
)

pytestmark = pytest.mark.unit

T0 = 1_764_000_000.0  # a fixed wall-clock start, so every run samples the same times


def samples(metric: str, seed: int, *, step_s: float, count: int) -> list[float]:
    signal = make_signal(metric, random.Random(seed))
    return [signal.sample(T0 + step_s * k)[0] for k in range(count)]


def test_same_seed_same_values_and_other_seed_other_values() -> None:
    first = samples("temperature", 7, step_s=1.0, count=500)
    assert samples("temperature", 7, step_s=1.0, count=500) == first
    assert samples("temperature", 8, step_s=1.0, count=500) != first


def test_signals_of_one_device_draw_in_a_fixed_order() -> None:
    def fleet() -> list[tuple[float, str | None]]:
        signals = make_signals(["temperature", "humidity", "pressure"], random.Random("sim-000"))
        return [s.sample(T0 + k) for k in range(100) for s in signals.values()]

    assert fleet() == fleet()


@pytest.mark.parametrize(
    ("metric", "unit", "typical_low", "typical_high"),
    [
        ("temperature", "Cel", 15.0, 30.0),
        ("humidity", "%RH", 30.0, 80.0),
        ("pressure", "hPa", 980.0, 1045.0),
        ("voltage", "V", 210.0, 250.0),
        ("power", "W", 0.0, 3000.0),
        ("co2", "ppm", 400.0, 2000.0),
        ("rpm", None, 0.0, 100.0),
    ],
)
def test_values_stay_in_the_metrics_range(
    metric: str, unit: str | None, typical_low: float, typical_high: float
) -> None:
    values: list[float] = []
    for device in range(20):
        signal = make_signal(metric, random.Random(f"range/{device}"))
        assert signal.unit == unit
        values += [signal.sample(T0 + 60.0 * k)[0] for k in range(2 * 24 * 60)]  # two days
    spec = METRICS.get(metric)
    if spec is not None:
        assert all(spec.low <= value <= spec.high for value in values)
    inside = sum(typical_low <= value <= typical_high for value in values)
    assert inside / len(values) > 0.995
    assert statistics.pstdev(values) > 0  # it moves


def test_humidity_is_clamped_to_0_to_100() -> None:
    spec = METRICS["humidity"]
    assert (spec.low, spec.high) == (0.0, 100.0)


def test_units_travel_with_the_value_where_the_hub_needs_them() -> None:
    rng = random.Random(1)
    pressure = make_signal("pressure", rng).reading(T0)
    assert isinstance(pressure, dict)
    assert pressure["unit"] == "hPa"
    assert 950 < float(pressure["value"]) < 1080
    # Cel and %RH are the hub's default canonical units: a bare number says it.
    assert isinstance(make_signal("temperature", rng).reading(T0), float)
    assert isinstance(make_signal("humidity", rng).reading(T0), float)
    assert make_signal("voltage", rng).reading(T0) == {
        "value": pytest.approx(230, abs=30),
        "unit": "V",
    }
    unknown = make_signal("rpm", rng)
    assert unknown.sample(T0)[1] is None
    assert isinstance(unknown.reading(T0), float)


def test_daily_cycle_repeats_every_24_hours_with_its_phase() -> None:
    cycle = DailyCycle(amplitude=3.0, phase=1.0)
    day = [cycle.sample(T0 + 600.0 * k) for k in range(144)]
    assert max(day) == pytest.approx(3.0, abs=0.01)
    assert min(day) == pytest.approx(-3.0, abs=0.01)
    for k in range(0, 144, 12):
        assert cycle.sample(T0 + 600.0 * k + SECONDS_PER_DAY) == pytest.approx(day[k])
    # The peak sits where the sine's argument is pi/2.
    peak_s = (math.pi / 2 - 1.0) % (2 * math.pi) / (2 * math.pi) * SECONDS_PER_DAY
    assert cycle.sample(peak_s) == pytest.approx(3.0)
    assert cycle.sample(peak_s + SECONDS_PER_DAY / 2) == pytest.approx(-3.0)


def test_devices_do_not_cycle_in_lockstep() -> None:
    phases = {make_signal("temperature", random.Random(d)).cycle.phase for d in range(10)}
    assert len(phases) == 10


def test_a_temperature_day_follows_its_cycle() -> None:
    signal = make_signal("temperature", random.Random(3))
    hourly = [
        statistics.fmean(signal.sample(T0 + 3600.0 * h + 60.0 * m)[0] for m in range(60))
        for h in range(24)
    ]
    cycle = [signal.cycle.sample(T0 + 3600.0 * h + 1800.0) for h in range(24)]
    assert statistics.correlation(hourly, cycle) > 0.8


@pytest.mark.parametrize("step_s", [1.0, 10.0, 37.0])
def test_walk_reverts_to_its_mean_with_its_spread_at_any_sampling_rate(step_s: float) -> None:
    walk = RandomWalk(random.Random(5), stddev=2.0, tau_s=60.0)
    count = int(20 * 3600 / step_s)
    values = [walk.sample(T0 + step_s * k) for k in range(count)]
    assert statistics.fmean(values) == pytest.approx(0.0, abs=0.3)
    assert statistics.pstdev(values) == pytest.approx(2.0, rel=0.15)


def test_walk_and_spikes_hold_still_when_the_clock_steps_back() -> None:
    signal = make_signal("temperature", random.Random(9))
    before = signal.sample(T0 + 100)[0]
    after = signal.sample(T0 + 50)[0]
    assert math.isfinite(after)
    assert after == pytest.approx(before, abs=0.5)


def test_spikes_are_rare_and_short() -> None:
    spikes = Spikes(random.Random(11), per_hour=2.0, magnitude=10.0, duration_s=60.0)
    seconds = 48 * 3600
    values = [spikes.sample(T0 + k) for k in range(seconds)]
    assert 60 <= spikes.count <= 140  # about 96 expected
    active = sum(value != 0.0 for value in values) / seconds
    assert 0.01 < active < 0.06  # about 3 % of the time
    assert max(values) == pytest.approx(10.0, rel=0.45)
    assert min(values) >= 0.0


def test_a_fleet_sees_only_a_few_temperature_spikes_a_day() -> None:
    counts = []
    for device in range(10):
        signal = make_signal("temperature", random.Random(f"spikes/{device}"))
        for k in range(24 * 360):  # every 10 s for a day
            signal.sample(T0 + 10.0 * k)
        counts.append(signal.spikes.count)
    assert 1 <= statistics.fmean(counts) <= 30
