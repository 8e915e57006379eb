"""Synthetic raw load-cell streams with a known truth, for tests and the accuracy bench.

:func:`simulate_plate` produces what one cell would report while shoppers take
items off its plate and put them back: Gaussian noise, a hand transient around
every change (the hand presses on the plate, the load swings, then rings down),
spikes, slow drift, and optional faults (a cell that goes silent, times out,
saturates, sticks at one value or reads garbage). The output is a list of
:class:`~.recorded.RawReading` in the cell's raw units, ready to be written with
:func:`~.recorded.write_recording` and replayed by the shelf node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .hx711 import HX711_MAX, HX711_MIN
from .recorded import RawReading

FAULTS = ("dead", "timeouts", "saturated", "stuck", "garbage")


@dataclass(frozen=True)
class LoadStep:
    """The load moving by ``delta_g`` (negative: items taken) during a reach starting at ``t`` s."""

    t: float
    delta_g: float
    duration_s: float = 1.0


@dataclass(frozen=True)
class PlateSimulation:
    """What happens on one plate, and how its cell reports it.

    Times are seconds from ``start_ts``. ``counts_per_g`` and ``zero_offset``
    turn grams into raw counts (1 and 0: a scale that reports grams).
    ``fault`` (one of :data:`FAULTS`) starts at ``fault_at_s`` and ends at
    ``fault_end_s`` (None: never).
    """

    sensor: str
    duration_s: float
    start_load_g: float = 1000.0
    steps: tuple[LoadStep, ...] = ()
    noise_g: float = 3.0
    sample_hz: float = 10.0
    counts_per_g: float = 1.0
    zero_offset: float = 0.0
    drift_g_per_s: float = 0.0
    spike_rate_hz: float = 0.0
    spike_g: float = 400.0
    fault: str | None = None
    fault_at_s: float = 0.0
    fault_end_s: float | None = None
    integer_counts: bool = False
    seed: int = 0
    start_ts: float = 1_700_000_000.0
    transient: bool = True


def true_load(sim: PlateSimulation, t: float, rng: np.random.Generator | None = None) -> float:
    """The plate's load in grams at ``t`` s, without noise or spikes (with the hand transients)."""
    load = sim.start_load_g + sim.drift_g_per_s * t
    for step in sim.steps:
        if t < step.t:
            continue
        u = (t - step.t) / step.duration_s
        if u >= 1.0:
            load += step.delta_g
            if sim.transient:  # the plate rings down after the hand lets go
                after = t - step.t - step.duration_s
                load += 0.15 * abs(step.delta_g) * math.exp(-after / 0.12) * math.cos(2 * math.pi * 4.0 * after)
            continue
        smooth = u * u * (3 - 2 * u)
        load += step.delta_g * smooth
        if sim.transient:  # the hand presses on the plate while it reaches
            load += (0.5 * abs(step.delta_g) + 25.0) * math.sin(math.pi * u) * math.sin(3 * math.pi * u + 0.4)
    return load


def _in_fault(sim: PlateSimulation, t: float) -> bool:
    return sim.fault is not None and t >= sim.fault_at_s and (sim.fault_end_s is None or t < sim.fault_end_s)


def simulate_plate(sim: PlateSimulation) -> list[RawReading]:
    """The raw readings ``sim``'s cell reports, one every ``1/sample_hz`` s."""
    if sim.fault is not None and sim.fault not in FAULTS:
        raise ValueError(f"unknown fault {sim.fault!r}; expected one of {', '.join(FAULTS)}")
    rng = np.random.default_rng(sim.seed)
    n = int(sim.duration_s * sim.sample_hz)
    out: list[RawReading] = []
    spike_left = 0
    spike_value = 0.0
    last_good: float | None = None
    for i in range(n):
        t = i / sim.sample_hz
        ts = sim.start_ts + t
        grams = true_load(sim, t) + float(rng.normal(0.0, sim.noise_g))
        if spike_left == 0 and sim.spike_rate_hz > 0 and rng.random() < sim.spike_rate_hz / sim.sample_hz:
            spike_left = int(rng.integers(1, 3))
            spike_value = float(rng.choice([-1.0, 1.0]) * sim.spike_g * rng.uniform(0.5, 1.5))
        if spike_left:
            grams += spike_value
            spike_left -= 1
        raw = sim.zero_offset + grams * sim.counts_per_g
        if sim.integer_counts:
            raw = float(min(HX711_MAX, max(HX711_MIN, round(raw))))
        if _in_fault(sim, t):
            if sim.fault == "dead":
                continue
            if sim.fault == "timeouts":
                out.append(RawReading(ts, sim.sensor, None))
                continue
            if sim.fault == "saturated":
                raw = float(HX711_MAX)
            elif sim.fault == "stuck":
                raw = last_good if last_good is not None else raw
            elif sim.fault == "garbage":
                raw = float(rng.integers(HX711_MIN, HX711_MAX))
        else:
            last_good = raw
        out.append(RawReading(ts, sim.sensor, raw))
    return out


def merge_streams(*streams: list[RawReading]) -> list[RawReading]:
    """Several sensors' readings in one stream, in time order (stable for equal times)."""
    merged = [r for s in streams for r in s]
    merged.sort(key=lambda r: r.ts)
    return merged
