"""Arrival traces for the bench: hard and realistic, reproducible from a seed.

Each is a list of arrivals per second. The shapes are the ones queue workers meet:
steady load, short spikes, a daily cycle, batch dumps of tens of thousands of messages,
idle nights broken by bursts from zero, and slow ramps.

``LEARNING`` says how long each trace gives a policy to learn its recurring bursts: a
pattern is trusted once it has recurred twice, so the first three bursts of a periodic
trace are the learning; late shares after it are reported apart.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

HOUR = 3600


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation, plenty for rates this large
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _from_rate(rate: Callable[[int], float], seconds: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [_poisson(rng, rate(t)) for t in range(seconds)]


def steady(seed: int = 1) -> list[int]:
    """Six hours of Poisson arrivals at 40/s: needs four dynos and should get them, quietly."""
    return _from_rate(lambda t: 40.0, 6 * HOUR, seed)


def spikes(seed: int = 2) -> list[int]:
    """10/s with a three-minute spike to 150/s every 45 minutes, for eight hours."""
    return _from_rate(lambda t: 150.0 if t % 2700 < 180 else 10.0, 8 * HOUR, seed)


def daily(seed: int = 3) -> list[int]:
    """A day: 3/s at 04:00 rising to 80/s at 16:00 and back."""
    return _from_rate(lambda t: 3 + 77 * (1 - math.cos(2 * math.pi * ((t / HOUR - 4) % 24) / 24)) / 2, 24 * HOUR, seed)


def batch_dumps(seed: int = 4) -> list[int]:
    """2/s background; every 30 minutes, at the same minute, a cron enqueues 20,000 messages
    at once: more than max dynos clear in what is left of the target after a boot and a
    look, so only dynos up before the dump keep it on time."""
    trace = _from_rate(lambda t: 2.0, 12 * HOUR, seed)
    rng = random.Random(seed + 100)
    for start in range(600, 12 * HOUR, 1800):
        trace[start + rng.randint(0, 20)] += 20_000
    return trace


def idle_bursts(seed: int = 5) -> list[int]:
    """A quiet night: nothing for tens of minutes, then 300–3,000 messages within a minute."""
    trace = [0] * (12 * HOUR)
    rng = random.Random(seed)
    t = rng.randint(600, 3000)
    while t < len(trace) - 120:
        size, spread = rng.randint(300, 3000), rng.randint(5, 60)
        for _ in range(size):
            trace[t + rng.randrange(spread)] += 1
        t += rng.randint(1200, 4800)
    return trace


def ramp(seed: int = 6) -> list[int]:
    """From 0 to 100/s over two hours, an hour flat, two hours back down."""
    def rate(t: int) -> float:
        h = t / HOUR
        return 100 * min(h / 2, 1.0, max(0.0, (5 - h) / 2))
    return _from_rate(rate, 6 * HOUR, seed)


LEARNING: dict[str, int] = {"spikes": 3 * 2700 + 300, "batch_dumps": 600 + 3 * 1800 + 300}

TRACES: dict[str, Callable[[], list[int]]] = {
    "steady": steady, "spikes": spikes, "daily": daily,
    "batch_dumps": batch_dumps, "idle_bursts": idle_bursts, "ramp": ramp,
}
