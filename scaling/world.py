"""The simulated world: a FIFO queue and a formation of dynos, one second at a time.

What is true here (the dynos' rate, boot times, service-time noise, a downstream limit)
is what the policy must find out; what it may see is produced by ``seen``, ``metrics``
and ``booted_since_last_look``. Pure Python, no clock.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from typing import Any

CLOUDWATCH_WINDOW = 600  # seconds of per-minute points each look receives, as a live read would


@dataclass(frozen=True)
class World:
    dyno_rate: float = 10.0  # messages per second one dyno really completes
    dyno_concurrency: int = 4
    boot_seconds: float = 45.0
    lag_seconds: float = 30.0  # how stale SQS's approximate counts are (at most)
    target_wait_seconds: float = 120.0  # for the "late" metric
    initial_dynos: int | None = None  # default: the bounds' min
    max_drain_seconds: int = 4 * 3600  # after the trace, run on until empty or this long
    lag_min_seconds: float | None = None  # counts are between this and lag_seconds old; None: exactly lag_seconds
    boot_jitter: float = 0.0  # each dyno boots in boot_seconds × (1 ± this)
    service_noise: float = 0.0  # each message's service time varies by ± this share
    drift: float = 0.0  # the mean service time drifts by ± this share, one draw per five minutes
    throughput_cap: float | None = None  # messages per second no number of dynos can exceed (a database limit)
    cloudwatch: bool = False  # CloudWatch metrics readable
    cloudwatch_delay: tuple[float, float] = (60.0, 120.0)  # seconds after its minute a point becomes readable
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.dyno_rate > 0:
            raise ValueError("dyno_rate must be greater than 0")
        if self.boot_seconds < 0 or self.lag_seconds < 0:
            raise ValueError("boot_seconds and lag_seconds cannot be negative")
        if self.lag_min_seconds is not None and not 0 <= self.lag_min_seconds <= self.lag_seconds:
            raise ValueError("lag_min_seconds must lie between 0 and lag_seconds")
        if not 0 <= self.boot_jitter < 1 or not 0 <= self.service_noise < 1 or not 0 <= self.drift < 1:
            raise ValueError("boot_jitter, service_noise and drift are shares between 0 and 1")


class Waits:
    """A histogram of waits at one-second resolution, weighted by message count."""

    def __init__(self) -> None:
        self.counts: dict[int, float] = {}
        self.total = 0.0

    def add(self, wait: int, count: float) -> None:
        self.counts[wait] = self.counts.get(wait, 0.0) + count
        self.total += count

    def share_over(self, limit: float) -> float:
        if not self.total:
            return 0.0
        return sum(c for w, c in self.counts.items() if w > limit) / self.total

    def percentile(self, p: float) -> float:
        if not self.total:
            return 0.0
        goal, seen = self.total * p, 0.0
        for wait in sorted(self.counts):
            seen += self.counts[wait]
            if seen >= goal - 1e-9:
                return float(wait)
        return float(max(self.counts))


class QueueWorld:
    """A FIFO queue and a formation, advanced one second at a time.

    ``dynos`` holds when each dyno is (or will be) up, in formation order (removals take
    the newest, the last). Used by ``simulate`` and, persisted between cycles, by the
    sandbox provider.
    """

    def __init__(self, world: World, *, dynos: int = 0, now: float = 0.0) -> None:
        self.world = world
        # One stream per kind of chance, so that two policies run in the same world meet
        # the same count lags (look by look), the same boot times (dyno by dyno) and the
        # same service times, whatever they do: a difference in outcome is the policy's.
        self.service_rng = random.Random(f"{world.seed}:service")
        self.lag_rng = random.Random(f"{world.seed}:lag")
        self.boot_rng = random.Random(f"{world.seed}:boot")
        self.cloudwatch_rng = random.Random(f"{world.seed}:cloudwatch")
        self.queue: deque[list[float]] = deque()  # [arrival second, messages left]
        self.visible = 0.0
        self.in_flight = 0.0
        self.carry = 0.0
        self.dynos: list[float] = [now - world.boot_seconds] * dynos
        self.added: list[float] = [now - world.boot_seconds] * dynos
        self._ups: list[float] = sorted(self.dynos)
        self.boots_done: list[float] = []  # starting → up durations not yet reported
        self._reported = now
        lag = int(world.lag_seconds)
        self.history: deque[tuple[float, float, float]] = deque([(0.0, 0.0, 0.0)] * lag, maxlen=lag + 1)
        self.pace = 1.0  # the drifting mean speed of a message
        self.deleted_minute = 0.0
        self.oldest_minute = 0.0
        self.cloudwatch: list[tuple[float, float, float, float]] = []  # (ready at, minute, deleted, oldest age)

    @property
    def formation(self) -> int:
        return len(self.dynos)

    def running(self, t: float) -> int:
        return bisect_right(self._ups, t)

    def tick(self, t: float, arrivals: float, waits: Waits | None = None, late: Waits | None = None,
             counted_from: float = 0.0) -> None:
        """One second: arrivals join the queue, running dynos serve it in order."""
        w = self.world
        if arrivals > 0:
            self.queue.append([t, arrivals])
            self.visible += arrivals
        running = self.running(t)
        speed = self._speed(t, running)
        capacity = running * w.dyno_rate * speed
        if w.throughput_cap is not None:
            capacity = min(capacity, w.throughput_cap)
        capacity += self.carry
        served = 0.0
        queue = self.queue
        while queue and capacity > 1e-9:
            head = queue[0]
            take = min(head[1], capacity)
            if waits is not None:
                waits.add(int(t - head[0]), take)
                if late is not None and head[0] >= counted_from:
                    late.add(int(t - head[0]), take)
            head[1] -= take
            capacity -= take
            served += take
            if head[1] <= 1e-9:
                queue.popleft()
        self.carry = min(capacity, 0.999) if queue else 0.0  # a part-message carries, idle time does not
        self.visible = max(0.0, self.visible - served)
        # Little's law: in flight = deletes per second × service time (a slot per message).
        self.in_flight = min(served / (w.dyno_rate * speed) * w.dyno_concurrency, running * w.dyno_concurrency)
        oldest = self.oldest_wait(t)
        self.history.append((self.visible, self.in_flight, oldest))
        self._publish(t, served, oldest)

    def _speed(self, t: float, running: int) -> float:
        """How fast messages go this second relative to the mean: a slow drift, and the
        per-message noise averaged over the messages the running dynos complete."""
        w = self.world
        if not (w.drift or w.service_noise):
            return 1.0
        if w.drift and int(t) % 300 == 0:
            self.pace = 1.0 + self.service_rng.uniform(-w.drift, w.drift)
        spread = w.service_noise / math.sqrt(max(1.0, running * w.dyno_rate))
        return self.pace * (1.0 + self.service_rng.uniform(-spread, spread))

    def _publish(self, t: float, served: float, oldest: float) -> None:
        if not self.world.cloudwatch:
            return
        self.deleted_minute += served
        self.oldest_minute = max(self.oldest_minute, oldest)
        if int(t) % 60 == 59:
            low, high = self.world.cloudwatch_delay
            minute = float(int(t) - 59)
            self.cloudwatch.append((t + self.cloudwatch_rng.uniform(low, high), minute, self.deleted_minute, self.oldest_minute))
            self.cloudwatch = [p for p in self.cloudwatch if p[1] >= t - CLOUDWATCH_WINDOW - 180]
            self.deleted_minute = self.oldest_minute = 0.0

    def metrics(self, t: float, epoch: float = 0.0) -> tuple[tuple[tuple[float, float], ...], tuple[tuple[float, float], ...]]:
        """The CloudWatch points readable at t (the last ten minutes'), as (minute, value)."""
        ready = [p for p in self.cloudwatch if p[0] <= t and p[1] >= t - CLOUDWATCH_WINDOW]
        return (tuple((epoch + m, round(d)) for _, m, d, _ in ready), tuple((epoch + m, a) for _, m, _, a in ready))

    def oldest_wait(self, t: float) -> float:
        return float(t - self.queue[0][0]) if self.queue else 0.0

    def seen(self) -> tuple[float, float, float]:
        """(visible, in flight, oldest age) as SQS would show them: ``lag_seconds`` ago,
        or a random age between ``lag_min_seconds`` and that."""
        low = self.world.lag_min_seconds
        if low is None or len(self.history) <= 1:
            return self.history[0]
        back = int(round(self.lag_rng.uniform(low, self.world.lag_seconds)))
        return self.history[max(0, len(self.history) - 1 - back)]

    def booted_since_last_look(self, t: float) -> tuple[float, ...]:
        """starting → up durations of the dynos that came up since the last call."""
        done = tuple(round(up - added, 1) for up, added in zip(self.dynos, self.added) if self._reported < up <= t)
        self._reported = t
        return done

    def booting_among_removed(self, quantity: int, t: float) -> int:
        """How many of the dynos a cut to ``quantity`` at ``t`` would stop are still booting."""
        return sum(1 for up in self.dynos[quantity:] if up > t)

    def set_formation(self, quantity: int, t: float) -> None:
        w = self.world
        if quantity > len(self.dynos):
            for _ in range(quantity - len(self.dynos)):
                boot = w.boot_seconds * (1 + self.boot_rng.uniform(-w.boot_jitter, w.boot_jitter)) if w.boot_jitter else w.boot_seconds
                self.dynos.append(t + boot)
                self.added.append(t)
        else:
            del self.dynos[quantity:]  # Heroku stops the highest-numbered (newest) dynos
            del self.added[quantity:]
        self._ups = sorted(self.dynos)

    def as_dict(self, *, max_entries: int = 5000) -> dict[str, Any]:
        entries = list(self.queue)
        if len(entries) > max_entries:  # merge the oldest so the saved state stays small
            head = entries[: len(entries) - max_entries + 1]
            entries = [[head[0][0], sum(e[1] for e in head)], *entries[len(head):]]
        return {"queue": entries, "visible": self.visible, "in_flight": self.in_flight, "carry": self.carry,
                "dynos": self.dynos, "added": self.added, "history": list(self.history)}

    @classmethod
    def from_dict(cls, world: World, data: dict[str, Any]) -> QueueWorld:
        qw = cls(world)
        qw.queue = deque([float(a), float(n)] for a, n in data.get("queue", []))
        qw.visible = float(data.get("visible", 0.0))
        qw.in_flight = float(data.get("in_flight", 0.0))
        qw.carry = float(data.get("carry", 0.0))
        qw.dynos = [float(d) for d in data.get("dynos", [])]
        added = [float(a) for a in data.get("added", [])]
        qw.added = added if len(added) == len(qw.dynos) else [d - world.boot_seconds for d in qw.dynos]
        qw._ups = sorted(qw.dynos)
        for item in data.get("history", []):
            qw.history.append((float(item[0]), float(item[1]), float(item[2])))
        return qw
