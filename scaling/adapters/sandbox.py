"""The sandbox: a simulated queue and formation, for trying DynoScaler with no account.

It is the simulator's world model (``QueueWorld``) run in wall-clock time: each cycle
advances it from its last step to now with traffic that rises and falls over ten
minutes plus a burst every seven, so a newcomer sees a pair scale within a minute.
Pure: the caller loads and saves ``state`` (the ``SandboxState`` row).
"""

from __future__ import annotations

import math
from typing import Any

from scaling.adapters.heroku import ProcessState
from scaling.adapters.sqs import QueueCounts
from scaling.simulator import QueueWorld, World

# How the simulated app really behaves: what the demo pair is told matches it.
SIMULATED = World(dyno_rate=5.0, dyno_concurrency=2, boot_seconds=20.0, lag_seconds=0.0, target_wait_seconds=60.0)
MAX_CATCH_UP_SECONDS = 3600  # after a long stop the world resumes, it does not replay days
PERIOD = 600.0
PEAK_PER_SECOND = 24.0
BURST_EVERY, BURST_SIZE, BURST_OFFSET = 420, 400, 3
# What the demo pair is told, in the same units an operator would enter.
DEMO_SETTINGS: dict[str, Any] = {
    "policy": "target_wait", "target_wait_seconds": 60, "dyno_rate": SIMULATED.dyno_rate,
    "dyno_concurrency": SIMULATED.dyno_concurrency, "boot_seconds": 20, "scale_down_window_seconds": 60,
    "lag_seconds": 0, "interval_seconds": 10, "min_dynos": 0, "max_dynos": 12,
}


def arrivals_at(t: int) -> float:
    """Messages arriving t seconds after the sandbox started: a burst a few seconds in (so
    a newcomer sees a scale-up within the first minute) and every seven minutes after,
    over a ten-minute wave from 0 to the peak."""
    wave = PEAK_PER_SECOND * (1 - math.cos(2 * math.pi * (t % PERIOD) / PERIOD)) / 2
    return wave + (BURST_SIZE if t % BURST_EVERY == BURST_OFFSET else 0.0)


class SandboxSimulation:
    """A simulated queue and formation, read and scaled as SQS and Heroku would be."""

    def __init__(self, state: dict[str, Any], *, now: float) -> None:
        self.now = int(now)
        if state.get("world"):
            self.world = QueueWorld.from_dict(SIMULATED, state["world"])
            last = int(state.get("last", self.now - 1))
            self.origin = int(state.get("origin", last))
        else:
            self.world = QueueWorld(SIMULATED, dynos=0, now=self.now)
            last = self.origin = self.now - BURST_OFFSET - 1  # the first burst is already waiting
        for t in range(max(last + 1, self.now - MAX_CATCH_UP_SECONDS), self.now + 1):
            self.world.tick(t, arrivals_at(t - self.origin))

    def counts(self) -> QueueCounts:
        visible, in_flight, _ = self.world.seen()
        return QueueCounts(visible=int(round(visible)), in_flight=int(round(in_flight)), delayed=0)

    def process_state(self) -> ProcessState:
        running = self.world.running(self.now)
        return ProcessState(quantity=self.world.formation, size="sandbox", running=running,
                            starting=self.world.formation - running)

    def scale(self, quantity: int) -> int:
        self.world.set_formation(quantity, self.now)
        return self.world.formation

    def state(self) -> dict[str, Any]:
        return {"world": self.world.as_dict(), "last": self.now, "origin": self.origin}
