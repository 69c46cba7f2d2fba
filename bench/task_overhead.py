"""What a Celery task costs the worker before it does anything: empty tasks on Redis.

    python bench/task_overhead.py                # 5,000 empty tasks per setting
    python bench/task_overhead.py --tasks 20000

For each setting it starts a Redis server of its own, queues the empty tasks, starts a
worker as the Procfile does (threads, prefetch 1, acknowledged as they start), waits until
the queue is empty, and prints the worker's CPU seconds per task from /proc, less what an
idle worker of the same setting spent starting up. The settings: kombu's default (its
acknowledgement emulation on, Celery's two INFO lines per task) and DynoScaler's (no
emulation, no per-task lines), and each change alone. Figures, no assertions.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from celery import Celery

ROOT = Path(__file__).resolve().parent.parent

# The worker imports this module (-A bench.task_overhead) and finds its app here.
app = Celery("task_overhead", broker=os.environ.get("BENCH_BROKER", "memory://"))
app.conf.update(task_ignore_result=True, worker_prefetch_multiplier=1, task_acks_late=False,
                worker_hijack_root_logger=False,
                broker_transport_options={"ack_emulation": os.environ.get("BENCH_ACK_EMULATION", "1") == "1"})


@app.task
def empty(i: int) -> None:
    return None


SETTINGS = [  # (label, ack emulation, Celery's per-task lines)
    ("kombu's default: ack emulation, per-task lines", True, True),
    ("per-task lines off", True, False),
    ("ack emulation off", False, True),
    ("DynoScaler: both off", False, False),
]


def run_worker(broker: str, *, emulation: bool, task_lines: bool, tasks: int, workdir: Path) -> float:
    """CPU seconds the worker spent: startup, the tasks, and a second of idling after."""
    import redis

    env = {**os.environ, "BENCH_BROKER": broker, "BENCH_ACK_EMULATION": "1" if emulation else "0"}
    client = redis.Redis.from_url(broker)
    app.conf.broker_url = broker
    with app.connection_for_write() as conn, conn.Producer() as producer:
        for i in range(tasks):
            empty.apply_async((i,), producer=producer)
    cmd = [sys.executable, "-m", "celery", "-A", "bench.task_overhead", "worker", "--pool=threads",
           "--concurrency=4", f"--loglevel={'INFO' if task_lines else 'WARNING'}"]
    with open(workdir / "worker.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)
        while client.llen("celery"):
            time.sleep(0.2)
        time.sleep(1)
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=5000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench.scale import private_redis

    print(f"{args.tasks:,} empty tasks per setting, a threads worker of 4 (load average {os.getloadavg()[0]:.2f})")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for label, emulation, task_lines in SETTINGS:
            with private_redis(workdir) as (broker, _pid):
                idle = run_worker(broker, emulation=emulation, task_lines=task_lines, tasks=0, workdir=workdir)
                busy = run_worker(broker, emulation=emulation, task_lines=task_lines, tasks=args.tasks, workdir=workdir)
            per_task = (busy - idle) / args.tasks * 1000
            print(f"  {label:<48} {per_task:5.2f} ms of worker CPU per task", flush=True)
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
