"""What N pairs cost: real PostgreSQL, Redis, Celery worker and beat, at a short interval.

    python bench/scale.py                              # 1,000 pairs every 15 s, 3 measured minutes
    python bench/scale.py --pairs 200 --minutes 2      # a quick run
    python bench/scale.py --scheduler django_celery_beat.schedulers:DatabaseScheduler   # the old beat

It starts its own PostgreSQL cluster and Redis server on loopback ports (so the CPU it
reports is ours alone on a shared machine; ``--shared`` uses BENCH_DATABASE_URL and
BENCH_REDIS_URL instead), a moto_server for SQS, and, in this process, the Heroku and
Elasticsearch stand-ins. It makes N pairs (one SQS queue and one Heroku app each), starts
the Procfile's ``worker`` and ``beat`` commands, waits for every pair to have cycled, then
measures for ``--minutes`` while landing bursts of messages on a few queues.

It prints, for the measured window: cycles on time (a cycle is on time when it starts at
most interval + 5 s after the pair's previous one) and the distribution of those gaps;
CPU seconds per pair-cycle by process (from /proc utime+stime, children included);
Heroku calls per pair-hour (the stand-in's request log); reaction time from a burst
landing to the formation write (the stand-in's PATCH log); beat's dispatch lag (due time
against send time); decision rows per pair-day. Figures, no assertions. The machine's
load average before and after says how much else was running.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.standins.elasticsearch_api import ElasticsearchStandIn  # noqa: E402
from tests.standins.heroku_api import HerokuStandIn  # noqa: E402

TOKEN = "hk-bench-token-0123456789abcdef"
AWS_KEY, AWS_SECRET, REGION = "AKIABENCHEXAMPLE0001", "bench/secret/key/EXAMPLEKEY0123456789", "us-east-1"
ES_USER, ES_PASS = "elastic", "bench-es-pass-0123"
BURST_MESSAGES = 300  # a burst: 300 s of work for one dyno (1 message/s), so the pair asks for more at once
ON_TIME_SLACK = 5.0  # seconds past the interval a cycle may start and still be on time
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- CPU from /proc ----------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of its reaped children)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return int(fields[1]), (utime + stime + cutime + cstime) / CLK_TCK


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and all its descendants, the exited ones included (a reaped
    child's time is in its parent's cutime/cstime; a live one's in its own)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (s := _stat(int(entry))) is not None:
            stats[int(entry)] = s
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in stats.items():
        children[ppid].append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo.extend(children[pid])
    return total


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


# --- the servers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


@dataclass
class Servers:
    database_url: str
    redis_url: str
    moto_url: str
    pids: dict[str, int] = field(default_factory=dict)  # what we can measure: name -> root pid


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(f"{name} not found under /usr/lib/postgresql: use --shared")
    return str(found[-1])


@contextmanager
def private_postgres(workdir: Path) -> Iterator[tuple[str, int]]:
    """A PostgreSQL cluster of our own, so its CPU is ours alone. It runs as the postgres
    user (the server refuses root), with the distribution's defaults."""
    data = workdir / "pg"
    data.mkdir()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(workdir, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run([*as_postgres, _pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    log = open(workdir / "postgres.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*as_postgres, _pg_bin("postgres"), "-D", str(data), "-p", str(port), "-k", str(workdir),
                             "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        yield f"postgres://postgres@127.0.0.1:{port}/bench", postmaster
    finally:
        pid_file = data / "postmaster.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)  # fast shutdown
        proc.wait(timeout=30)
        log.close()


def redis_server_command(port: int, workdir: Path) -> list[str]:
    """A Redis of our own on loopback that keeps nothing on disk."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(workdir)]


@contextmanager
def private_redis(workdir: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen(redis_server_command(port, workdir), stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def moto(workdir: Path) -> Iterator[tuple[str, int]]:
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    port = free_port()
    with open(workdir / "moto.log", "wb") as log:
        proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class BenchHeroku(HerokuStandIn):
    """The Heroku stand-in with a clock on every request, a pool that never runs dry (the
    calls per pair-hour are reported instead) and, optionally, the API's latency."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.rate_limit_pool = 2_000_000_000  # the decision row keeps it in an integer column
        self.delay_seconds = latency
        self.log: list[tuple[float, str, str]] = []  # (wall time, method, path)

    def answer(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        at = time.time()
        self.log.append((at, method, path))
        return super().answer(method, path, headers, raw)


def subscribe_webhooks(pair_ids: list[int], public_url: str) -> None:
    """Each pair's app subscribes at the web process; the stand-in then posts signed
    formation and dyno events to it as Heroku does."""
    from scaling import services
    from scaling.models import ScalingPair

    pairs = list(ScalingPair.objects.filter(pk__in=pair_ids).select_related("heroku_account"))
    done = services.apps_webhooks(apps=services.apps_of(pairs), action="subscribe", public_url=public_url)
    failed = [d.said for d in done if not d.ok]
    if failed:
        sys.exit("subscribing failed: " + "; ".join(failed[:3]))
    print(f"  {len(done)} apps subscribed to webhooks at {public_url}", file=sys.stderr, flush=True)


# --- the run -------------------------------------------------------------------------------


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError(f"no {name!r} process in the Procfile")


def setup_django(database_url: str) -> None:
    os.environ.update({"DATABASE_URL": database_url, "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-key"),
                       "DJANGO_SETTINGS_MODULE": "dynoscaler_site.settings"})
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def make_pairs(n: int, interval: int, sqs: Any, heroku: BenchHeroku) -> list[tuple[int, str, str]]:
    """N pairs, each with its own queue and app: (pair id, queue, app)."""
    from scaling import services
    from scaling.models import AwsAccount, HerokuAccount, PairQueue, ScalingPair

    heroku_account = HerokuAccount.objects.create(description="bench", api_token=TOKEN)
    aws_account = AwsAccount.objects.create(description="bench", access_key_id=AWS_KEY, secret_access_key=AWS_SECRET)
    made = []
    for i in range(n):
        queue, app = f"bench-q-{i:04d}", f"bench-app-{i:04d}"
        sqs.create_queue(QueueName=queue)
        heroku.add_app(app, token=TOKEN, quantity=1)
        pair = ScalingPair.objects.create(
            name=f"bench {i:04d}", heroku_account=heroku_account, aws_account=aws_account, app_name=app,
            policy="target_wait", min_dynos=1, max_dynos=10, target_wait_seconds=120, dyno_rate=1.0,
            interval_seconds=interval)
        PairQueue.objects.create(pair=pair, queue=queue, region=REGION)
        services.pair_apply_settings(pair=pair)
        made.append((pair.pk, queue, app))
        if (i + 1) % 200 == 0:
            print(f"  {i + 1} pairs made", file=sys.stderr, flush=True)
    return made


def start_process(name: str, command: str, env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115
    # bash expands the Procfile's ${VAR:-default}; exec leaves celery as the process we measure.
    return subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def queue_depth(redis_url: str) -> int:
    import redis

    return int(redis.Redis.from_url(redis_url).llen("celery"))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def dispatch_lags(workdir: Path, beat_log: Path, window: tuple[float, float], intervals: dict[str, int]) -> tuple[list[float], str]:
    """Beat's dispatch lag in seconds for sends inside the window, and how it was measured."""
    lag_file = workdir / "beat-dispatch.log"
    if lag_file.exists() and lag_file.stat().st_size:
        lags = []
        for line in lag_file.read_text().splitlines():
            due, sent, *_ = line.split()
            if window[0] <= float(sent) <= window[1]:
                lags.append(float(sent) - float(due))
        return lags, "due time against send time, as the scheduler logged them"
    # An older scheduler logs only its sends: its due time is the previous send plus the interval.
    pattern = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*Sending due task (dynoscaler pair \d+) ")
    last: dict[str, float] = {}
    lags = []
    for line in beat_log.read_text(errors="replace").splitlines():
        m = pattern.match(line)
        if not m:
            continue
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=timezone.utc).timestamp()
        name = m.group(2)
        if name in last and window[0] <= at <= window[1]:
            lags.append(max(0.0, at - last[name] - intervals.get(name, 0)))
        last[name] = at
    return lags, "from beat's log: the gap between two sends of a pair, less its interval"


def held_share(workdir: Path, window: tuple[float, float]) -> float | None:
    """The share of beat's sends in the window made while it was holding cycles back."""
    lag_file = workdir / "beat-dispatch.log"
    if not lag_file.exists():
        return None
    flags = [line.split()[2] == "1" for line in lag_file.read_text().splitlines()
             if window[0] <= float(line.split()[1]) <= window[1]]
    return sum(flags) / len(flags) if flags else None


def report_cycles(pair_ids: list[int], interval: int, window: tuple[datetime, datetime]) -> dict[str, Any]:
    from scaling.models import PairSample

    # Every cycle leaves a sample (quiet ones fold into runs of decisions).
    rows = PairSample.objects.filter(pair_id__in=pair_ids, at__gte=window[0] - timedelta(seconds=interval * 4),
                                     at__lte=window[1]).order_by("pair_id", "at").values_list("pair_id", "at")
    by_pair: dict[int, list[datetime]] = defaultdict(list)
    for pair_id, at in rows:
        by_pair[pair_id].append(at)
    gaps: list[float] = []
    cycles = 0
    never = 0
    for pair_id in pair_ids:
        times = by_pair.get(pair_id, [])
        inside = [t for t in times if t >= window[0]]
        cycles += len(inside)
        if not inside:
            never += 1
            continue
        before = [t for t in times if t < window[0]]
        series = ([before[-1]] if before else []) + inside
        gaps += [(b - a).total_seconds() for a, b in zip(series, series[1:], strict=False)]
    return {"cycles": cycles, "gaps": gaps, "never": never}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=15, help="each pair's cycle interval, seconds")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the measured window")
    parser.add_argument("--concurrency", type=int, default=None, help="WORKER_CONCURRENCY for the Procfile's worker")
    parser.add_argument("--scheduler", default=None, help="beat's --scheduler instead of the Procfile's")
    parser.add_argument("--worker-command", default=None, help="the worker's command instead of the Procfile's")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (dynos) running that command")
    parser.add_argument("--heroku-latency", type=float, default=0.1,
                        help="seconds the Heroku stand-in takes to answer (the real API: ~0.1–0.3)")
    parser.add_argument("--bursts", type=int, default=3, help="queues that get a burst each measured minute")
    parser.add_argument("--webhooks", action=argparse.BooleanOptionalAction, default=False,
                        help="pairs subscribe to Heroku's webhooks, posted by the stand-in to the Procfile's web process")
    parser.add_argument("--shared", action="store_true",
                        help="use BENCH_DATABASE_URL and BENCH_REDIS_URL instead of private servers")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs) afterwards")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dynoscaler-scale-"))
    os.chmod(workdir, 0o755)
    load_before = os.getloadavg()
    with ExitStack() as stack:
        servers = start_servers(stack, workdir, shared=args.shared)
        print(f"servers up in {workdir} (load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f})",
              file=sys.stderr, flush=True)
        heroku = BenchHeroku(args.heroku_latency).start()
        stack.callback(heroku.stop)
        elastic = ElasticsearchStandIn(user=ES_USER, password=ES_PASS).start()
        stack.callback(elastic.stop)
        os.environ["AWS_ENDPOINT_URL_SQS"] = servers.moto_url
        os.environ["HEROKU_API_URL"] = heroku.url  # this process subscribes the apps to webhooks
        setup_django(servers.database_url)
        import boto3

        sqs = boto3.client("sqs", region_name=REGION, aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_SECRET)
        print(f"making {args.pairs} pairs…", file=sys.stderr, flush=True)
        pairs = make_pairs(args.pairs, args.interval, sqs, heroku)
        web_port = free_port()
        web_url = f"http://127.0.0.1:{web_port}"
        env = {**os.environ, "DATABASE_URL": servers.database_url, "REDIS_URL": servers.redis_url,
               "HEROKU_API_URL": heroku.url, "AWS_ENDPOINT_URL_SQS": servers.moto_url,
               "AWS_ENDPOINT_URL_CLOUDWATCH": servers.moto_url,
               "ELK_ELASTIC_URL": elastic.url, "ELK_ELASTIC_USER": ES_USER, "ELK_ELASTIC_PASS": ES_PASS,
               "DYNOSCALER_MIN_INTERVAL": "1", "DYNOSCALER_BEAT_DISPATCH_LOG": str(workdir / "beat-dispatch.log"),
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
               # The web process serves the webhooks over plain HTTP on loopback.
               "SECURE_SSL_REDIRECT": "0", "SECURE_HSTS_SECONDS": "0", "SECURE_COOKIES": "0",
               "DYNOSCALER_PUBLIC_URL": web_url, "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{web_port}"}
        if args.concurrency:
            env["WORKER_CONCURRENCY"] = str(args.concurrency)
        worker_cmd = args.worker_command or procfile_command("worker")
        beat_cmd = procfile_command("beat")
        if args.scheduler:
            beat_cmd = re.sub(r"--scheduler \S+", f"--scheduler {args.scheduler}", beat_cmd)
        print(f"worker: {worker_cmd}\nbeat:   {beat_cmd}", file=sys.stderr, flush=True)
        procs = {f"worker{i or ''}": start_process(f"worker{i or ''}", worker_cmd, env, workdir) for i in range(args.workers)}
        procs["beat"] = start_process("beat", beat_cmd, env, workdir)
        if args.webhooks:
            procs["web"] = start_process("web", procfile_command("web"), env, workdir)
            wait_for_port(web_port)
            subscribe_webhooks([p for p, _, _ in pairs], web_url)
        for proc in procs.values():
            stack.callback(stop_process, proc)
        servers.pids.update({name: proc.pid for name, proc in procs.items()})

        run_and_report(args, servers, procs, pairs, heroku, elastic, sqs, workdir, load_before)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


def start_servers(stack: ExitStack, workdir: Path, *, shared: bool) -> Servers:
    moto_url, moto_pid = stack.enter_context(moto(workdir))
    if shared:
        url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dynoscaler_scale_bench")
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        return Servers(url, redis_url, moto_url, {"moto_server": moto_pid})
    database_url, postmaster = stack.enter_context(private_postgres(workdir))
    redis_url, redis_pid = stack.enter_context(private_redis(workdir))
    return Servers(database_url, redis_url, moto_url,
                   {"moto_server": moto_pid, "postgresql": postmaster, "redis": redis_pid})


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_and_report(args: argparse.Namespace, servers: Servers, procs: dict[str, subprocess.Popen[bytes]],
                   pairs: list[tuple[int, str, str]], heroku: BenchHeroku, elastic: ElasticsearchStandIn, sqs: Any,
                   workdir: Path, load_before: tuple[float, float, float]) -> None:
    from django.db import connection
    from django.utils import timezone as dj_timezone

    from scaling.models import Decision, PairSample

    pair_ids = [p for p, _, _ in pairs]

    def progress(label: str) -> None:
        for name, proc in procs.items():
            if proc.poll() is not None:
                tail = (workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                sys.exit(f"{name} stopped (exit {proc.returncode}); its log ends:\n{tail}")
        done, cycled = Decision.objects.count(), PairSample.objects.count()
        load = os.getloadavg()[0]
        print(f"  {label}: {cycled:,} cycles, {done:,} decision rows, queue depth {queue_depth(servers.redis_url)}, "
              f"load {load:.2f}",
              file=sys.stderr, flush=True)
        connection.close()  # the bench's own queries hold no backend between looks

    # Warm up: every pair cycles once, and beat's start-up spread is behind us.
    print("warming up: waiting for every pair's first cycle…", file=sys.stderr, flush=True)
    started = time.monotonic()
    while PairSample.objects.values("pair_id").distinct().count() < len(pairs):
        if time.monotonic() - started > max(300, args.interval * 10):
            print("  not every pair cycled within the warm-up; measuring anyway", file=sys.stderr)
            break
        time.sleep(5)
        progress(f"warm-up {time.monotonic() - started:.0f} s")
    time.sleep(args.interval)

    cpu_before = {name: tree_cpu(pid) for name, pid in servers.pids.items()}
    stand_ins_before = self_cpu()
    window_start = dj_timezone.now()
    t0 = time.time()
    end = t0 + args.minutes * 60
    bursts: list[tuple[float, str]] = []
    stop = threading.Event()

    def land_bursts() -> None:
        # Its own thread, so a slow SQS does not hold up the progress lines.
        untouched = random.Random(9).sample(pairs, len(pairs))  # each burst on queues that had none
        while not stop.wait(20 if not bursts else 60):
            for _, queue, app in [untouched.pop() for _ in range(min(args.bursts, len(untouched)))]:
                try:
                    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
                    # A burst lands with its first message: on a loaded moto the thirty
                    # batches take seconds, and a cycle may answer before the last is in.
                    landed = time.time()
                    for _ in range(BURST_MESSAGES // 10):
                        sqs.send_message_batch(QueueUrl=url,
                                               Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(10)])
                except Exception as exc:  # moto_server stopping under us at the end
                    print(f"  a burst failed: {exc}", file=sys.stderr)
                    return
                bursts.append((landed, app))

    burster = threading.Thread(target=land_bursts, daemon=True)
    burster.start()
    print(f"measuring for {args.minutes:g} min…", file=sys.stderr, flush=True)
    while time.time() < end:
        time.sleep(15)
        progress(f"{time.time() - t0:.0f} s")
    stop.set()
    t1 = time.time()
    window_end = dj_timezone.now()
    cpu = {name: tree_cpu(pid) - cpu_before[name] for name, pid in servers.pids.items()}
    workers = [name for name in cpu if name.startswith("worker")]
    cpu["worker"] = sum(cpu.pop(name) for name in workers)
    stand_ins = self_cpu() - stand_ins_before
    load_after = os.getloadavg()
    time.sleep(2)  # the last cycles' rows and PATCHes land

    seconds = t1 - t0
    found = report_cycles(pair_ids, args.interval, (window_start, window_end))
    cycles = found["cycles"] or 1
    gaps = found["gaps"]
    on_time = sum(g <= args.interval + ON_TIME_SLACK for g in gaps)
    calls = [c for c in heroku.log if t0 <= c[0] <= t1]
    patches = [c for c in heroku.log if c[1] == "PATCH"]
    reactions = []
    for at, app in bursts:
        writes = [t for t, _, path in patches if t >= at and f"/apps/{app}/" in path]
        reactions.append(min(writes) - at if writes else float("nan"))
    intervals = {f"dynoscaler pair {p}": args.interval for p in pair_ids}
    lags, lag_method = dispatch_lags(workdir, workdir / "beat.log", (t0, t1), intervals)
    held = held_share(workdir, (t0, t1))
    decisions_in_window = Decision.objects.filter(created_at__gte=window_start, created_at__lte=window_end).count()

    print()
    print(f"# {len(pairs)} pairs every {args.interval} s, measured {seconds / 60:.1f} min "
          f"({'private' if 'postgresql' in servers.pids else 'shared'} PostgreSQL and Redis)")
    print(f"worker: {procs['worker'].args[-1].removeprefix('exec ')}" + (f" ({len(workers)} processes)" if len(workers) > 1 else ""))
    print(f"beat:   {procs['beat'].args[-1].removeprefix('exec ')}")
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} (2 cores)")
    expected = len(pairs) * seconds / args.interval
    print(f"\ncycles: {found['cycles']:,} of {expected:,.0f} expected ({found['cycles'] / expected:.0%}); "
          f"{found['never']} pair(s) had none")
    if gaps:
        print(f"cycles on time (gap ≤ {args.interval} + {ON_TIME_SLACK:g} s): {on_time:,} of {len(gaps):,} "
              f"({on_time / len(gaps):.1%})")
        print("gap between a pair's cycles, s: " + ", ".join(
            f"p{q} {percentile(gaps, q):.1f}" for q in (1, 50, 90, 99)) + f", max {max(gaps):.1f}")
        edges = [args.interval - 1, args.interval + 1, args.interval + ON_TIME_SLACK, args.interval * 2, args.interval * 4]
        counts = [0] * (len(edges) + 1)
        for g in gaps:
            counts[next((i for i, e in enumerate(edges) if g <= e), len(edges))] += 1
        labels = [f"≤{edges[0]:g}"] + [f"{a:g}–{b:g}" for a, b in zip(edges, edges[1:], strict=False)] + [f">{edges[-1]:g}"]
        print("  " + "  ".join(f"{lab} s: {c:,}" for lab, c in zip(labels, counts, strict=False)))
    print(f"\nCPU seconds per pair-cycle ({cycles:,} cycles):")
    ours = 0.0
    for name in ("worker", "beat", "web", "postgresql", "redis"):
        if name in cpu:
            ours += cpu[name]
            print(f"  {name:<11} {cpu[name] / cycles * 1000:7.2f} ms  ({cpu[name]:.1f} s, {cpu[name] / seconds:.0%} of a core)")
    print(f"  {'ours, all':<11} {ours / cycles * 1000:7.2f} ms  ({ours / seconds:.0%} of a core)")
    print(f"  stand-ins (not ours): moto_server {cpu['moto_server'] / cycles * 1000:.2f} ms, "
          f"Heroku + Elasticsearch + this bench {stand_ins / cycles * 1000:.2f} ms")
    print(f"\nHeroku calls per pair-hour: {len(calls) / len(pairs) / (seconds / 3600):,.1f} "
          f"{'with' if args.webhooks else 'without'} webhooks ({len(calls):,} calls)")
    finite = [r for r in reactions if r == r]
    if reactions:
        print(f"reaction from a burst landing to the formation write, s: "
              f"{', '.join(f'{r:.1f}' if r == r else 'none' for r in reactions)}"
              + (f" (median {statistics.median(finite):.1f})" if finite else ""))
    if lags:
        print(f"beat dispatch lag ({len(lags):,} sends; {lag_method}): p50 {percentile(lags, 50) * 1000:.0f} ms, "
              f"p99 {percentile(lags, 99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms")
    if held is not None:
        print(f"beat held pair cycles back (the queue at its bound) during {held:.0%} of its sends"
              + (": the lag above is that wait, by design" if held > 0.01 else ""))
    print(f"decision rows per pair-day: {decisions_in_window / len(pairs) / (seconds / 86400):,.0f}")
    shipped = Decision.objects.filter(shipped_at__isnull=False).count()
    print(f"decisions in Elasticsearch: {len(elastic.documents):,} of {Decision.objects.count():,} ({shipped:,} marked shipped)")
    if args.keep:
        print(f"logs: {workdir}")


if __name__ == "__main__":
    main()
