"""A fault run: DynoScaler on real processes, under every class of fault it must survive.

    python bench/faults.py            # about ten minutes; exits 1 if any check fails
    python bench/faults.py --keep     # keep the working directory (every process's log)

It starts a PostgreSQL cluster and a Redis server of its own (so Redis can be restarted
under the worker), moto_server for SQS, and, in this process, the Heroku and
Elasticsearch stand-ins and an alert receiver. It makes a dozen pairs on two Heroku
accounts plus the pair the original environment variables describe, subscribes their apps
to Heroku's webhooks at the Procfile's ``web`` process, starts the Procfile's ``worker``
and ``beat``, and then, one after the other, while bursts of messages land:

 1. answers 429 to one account for 20 s (its back-off must end when it says it ends);
 2. drops the answer to a formation write that Heroku applied (not a person's change),
    then a person scales another app by hand (that one is, and is never overwritten);
 3. SIGKILLs the worker while it ships decisions to a hanging Elasticsearch;
 4. has Heroku echo the API token in a 422;
 5. sends hostile input to every admin list, filter, search, form and export;
 6. restarts web and worker with a different encryption key, then re-enters the secrets;
 7. runs ``check --deploy`` with the production settings the README gives;
 8. refuses the original variables' pair a quantity (it must not ask again every run);
and the faults that already held: Heroku 503s, Elasticsearch down and back, two beats at
once, a Redis restart, the kill switch.

Then it checks, over the whole run: no wrong formation write (outside min–max, on a dry-run
pair, while the kill switch is engaged, over a person's change, a refused quantity asked
again); every decision in Elasticsearch exactly once and no pair's cycle doubled; no
process crashed and no task raised; no answer of 500; and no secret in any log, page,
export, alert, Elasticsearch document or database row. It prints one line per check.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale import (  # noqa: E402
    free_port,
    moto,
    private_postgres,
    procfile_command,
    redis_server_command,
    setup_django,
    start_process,
    stop_process,
    wait_for_port,
)
from tests.standins.alert_receivers import WebhookReceiver  # noqa: E402
from tests.standins.elasticsearch_api import ElasticsearchStandIn  # noqa: E402
from tests.standins.heroku_api import HerokuStandIn  # noqa: E402

TOKEN_A = "hk-faults-team-a-0123456789abcdef"
TOKEN_B = "hk-faults-team-b-fedcba9876543210"
TOKEN_ENV = "hk-faults-original-vars-13579bdf"
AWS_KEY, AWS_SECRET, REGION = "AKIAFAULTSEXAMPLE001", "faults/secret/key/EXAMPLEKEY98765432", "us-east-1"
ES_USER, ES_PASS = "elastic", "faults-es-pass-2468"
ADMIN_USER, ADMIN_PASS = "operator", "faults-admin-pass-97531"
SIGNING_SECRET = "faults-alert-signing-secret-1357"
INTERVAL = 5  # seconds between a pair's cycles
BACKOFF = 12  # HEROKU_RATE_LIMIT_BACKOFF for the run
HOSTILE = ["", "-1", "99999999999999999999999", "x" * 3000, "orders\x00--", "\ufffd\ufffe\u202e",
           "'; DROP TABLE scaling_scalingpair; --", "<script>alert(1)</script>", "2026-13-45 25:99"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class FaultHeroku(HerokuStandIn):
    """The Heroku stand-in with a clock on every request, and 429s for one account's apps
    while ``throttle_until`` is ahead (with ``RateLimit-Remaining: 0``, as Heroku answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.rate_limit_pool = 2_000_000_000
        self.log: list[tuple[float, str, str, Any, int]] = []  # (time, method, path, body, status)
        self.throttled_apps: set[str] = set()
        self.throttle_until = 0.0

    def answer(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        import json

        at = time.time()
        app = path.split("/")[2] if path.startswith("/apps/") else ""
        body = json.loads(raw) if raw else None
        if app in self.throttled_apps and at < self.throttle_until:
            self.log.append((at, method, path, body, 429))
            return 429, {"id": "rate_limit", "message": "Your account reached the API rate limit."}, \
                {"RateLimit-Remaining": "0"}
        status, payload, extra = super().answer(method, path, headers, raw)
        self.log.append((at, method, path, body, status))
        return status, payload, extra


@dataclass
class Run:
    """What the run saw, for the checks at the end."""

    pages: list[tuple[str, int, str]] = field(default_factory=list)  # (what, status, body)
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (command, what it printed)
    marks: dict[str, float] = field(default_factory=dict)  # moments, by name
    findings: list[tuple[str, bool, str]] = field(default_factory=list)  # (check, held, figures)

    def check(self, name: str, held: bool, figures: str) -> None:
        self.findings.append((name, held, figures))
        log(f"{'ok  ' if held else 'FAIL'} {name}: {figures}")


class FormReader(HTMLParser):
    """The fields of the first form that posts to the page: name -> value, as a browser sends them."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._first_option: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name", "")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.values[name] = a.get("value", "on")
            elif kind not in ("submit", "button", "file"):
                self.values[name] = a.get("value", "")
        elif tag == "select" and name:
            self._select, self._first_option = name, None
        elif tag == "option" and self._select:
            if self._first_option is None:
                self._first_option = a.get("value", "")
            if "selected" in a:
                self.values[self._select] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select:
            self.values.setdefault(self._select, self._first_option or "")
            self._select = None
        elif tag == "textarea":
            self._textarea = None


class Web:
    """A logged-in operator's browser, minus the browser: every answer is kept for the checks."""

    def __init__(self, url: str, run: Run) -> None:
        import requests

        self.url, self.run = url, run
        self.session = requests.Session()

    def login(self) -> None:
        page = self.session.get(f"{self.url}/admin/login/", timeout=30)
        answer = self.session.post(f"{self.url}/admin/login/?next=/admin/", timeout=30, data={
            "username": ADMIN_USER, "password": ADMIN_PASS, "next": "/admin/", "csrfmiddlewaretoken": _csrf(page.text)})
        if not answer.url.endswith("/admin/"):
            sys.exit(f"could not log in to the admin at {self.url}")

    def get(self, path: str, **params: str) -> Any:
        answer = self.session.get(f"{self.url}{path}", params=params or None, timeout=60)
        self.run.pages.append((f"GET {path} {params}"[:300], answer.status_code, answer.text))
        return answer

    def post(self, path: str, data: dict[str, str]) -> Any:
        answer = self.session.post(f"{self.url}{path}", data=data, timeout=60)
        self.run.pages.append((f"POST {path}"[:300], answer.status_code, answer.text))
        return answer

    def form(self, path: str) -> dict[str, str]:
        reader = FormReader()
        reader.feed(self.get(path).text)
        return reader.values


def _csrf(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    return found.group(1) if found else ""


# --- the run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs) afterwards")
    args = parser.parse_args()
    from cryptography.fernet import Fernet

    key_saved, key_other = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    workdir = Path(tempfile.mkdtemp(prefix="dynoscaler-faults-"))
    os.chmod(workdir, 0o755)
    run = Run()
    with ExitStack() as stack:
        moto_url, _ = stack.enter_context(moto(workdir))
        database_url, _ = stack.enter_context(private_postgres(workdir))
        redis = RedisServer(workdir)
        stack.callback(redis.stop)
        heroku = FaultHeroku()
        heroku.start()
        stack.callback(heroku.stop)
        elastic = ElasticsearchStandIn(user=ES_USER, password=ES_PASS).start()
        stack.callback(elastic.stop)
        receiver = WebhookReceiver().start()
        stack.callback(receiver.stop)
        web_port = free_port()
        web_url = f"http://127.0.0.1:{web_port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MY_HEROKU_", "AWS_", "DYNOSCALER_", "ELK_"))},
            "DATABASE_URL": database_url, "REDIS_URL": redis.url, "SECRET_KEY": "faults-run-secret-key-" + "x" * 40,
            "DYNOSCALER_ENCRYPTION_KEYS": key_saved, "HEROKU_API_URL": heroku.url,
            "AWS_ENDPOINT_URL_SQS": moto_url, "AWS_ENDPOINT_URL_CLOUDWATCH": moto_url,
            "ELK_ELASTIC_URL": elastic.url, "ELK_ELASTIC_USER": ES_USER, "ELK_ELASTIC_PASS": ES_PASS,
            "DYNOSCALER_MIN_INTERVAL": "1", "HEROKU_RATE_LIMIT_BACKOFF": str(BACKOFF),
            "DYNOSCALER_AUDIT_INTERVAL": "5", "DYNOSCALER_ALERT_INTERVAL": "5",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "SECURE_SSL_REDIRECT": "0", "SECURE_HSTS_SECONDS": "0", "SECURE_COOKIES": "0",
            "DYNOSCALER_PUBLIC_URL": web_url,
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{web_port} --access-logfile -",
            # The original tool's variables: one more pair, with no admin step.
            "MY_HEROKU_AUTH_DES": "original", "MY_HEROKU_AUTH_TOKEN": TOKEN_ENV, "MY_HEROKU_AS_APP": "env-app",
            "MY_HEROKU_AS_PROCESS": "worker", "AWS_KEY": AWS_KEY, "AWS_SECRET": AWS_SECRET,
            "AWS_SQS_NAME": "env-q", "AWS_SQS_REGION": REGION, "DYNOSCALER_MAX_DYNOS": "4",
            "DYNOSCALER_MIN_DYNOS": "1", "DYNOSCALER_UP_CYCLES": "1", "DYNOSCALER_DOWN_CYCLES": "3",
            "DYNOSCALER_BACKLOG_THRESHOLD": "10",
        }
        os.environ.update({k: env[k] for k in ("DYNOSCALER_ENCRYPTION_KEYS", "HEROKU_API_URL", "AWS_ENDPOINT_URL_SQS",
                                               "SECRET_KEY")})
        setup_django(database_url)
        import boto3

        sqs = boto3.client("sqs", region_name=REGION, aws_access_key_id=AWS_KEY, aws_secret_access_key=AWS_SECRET)
        world = make_world(sqs, heroku, receiver)
        run.outputs.append(command([sys.executable, "manage.py", "sync_env_pair"], env))  # the release phase
        procs = Procs(workdir, env)
        stack.callback(procs.stop_all)
        for name in ("web", "worker", "beat"):
            procs.start(name)
        wait_for_port(web_port)
        subscribe(world, web_url)
        web = Web(web_url, run)
        web.login()
        try:
            faults(run, world, procs, web, heroku, elastic, redis, sqs, env, key_other, key_saved)
            settle(run, elastic, procs)
            checks(run, world, procs, heroku, elastic, receiver, workdir, database_url, secrets=[
                TOKEN_A, TOKEN_B, TOKEN_ENV, AWS_SECRET, ES_PASS, ADMIN_PASS, SIGNING_SECRET, key_saved, key_other])
        finally:
            procs.stop_all()
    failed = [name for name, held, _ in run.findings if not held]
    print()
    print(f"# fault run: {len(run.findings) - len(failed)} of {len(run.findings)} checks held")
    for name, held, figures in run.findings:
        print(f"{'ok  ' if held else 'FAIL'}  {name}: {figures}")
    if args.keep:
        print(f"logs: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if failed else 0)


class RedisServer:
    """A Redis of our own on a fixed port, so it can be stopped and started under the worker."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.workdir = free_port(), workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(redis_server_command(self.port, self.workdir), stdout=subprocess.DEVNULL)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Procs:
    """The Procfile's processes; a deliberate kill or restart is not counted as a crash."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir, self.env = workdir, env
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, int] = defaultdict(int)
        self.crashed: list[str] = []

    def start(self, name: str, command_name: str | None = None, **env: str) -> None:
        self.starts[name] += 1
        label = f"{name}-{self.starts[name]}"
        self.running[name] = start_process(label, procfile_command(command_name or name), {**self.env, **env}, self.workdir)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.running.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def restart(self, name: str, **env: str) -> None:
        stop_process(self.running.pop(name))
        self.start(name, **env)

    def alive(self) -> None:
        for name, proc in list(self.running.items()):
            if proc.poll() is not None:
                self.crashed.append(f"{name} exited {proc.returncode}")
                del self.running[name]

    def stop_all(self) -> None:
        self.alive()
        for name in list(self.running):
            stop_process(self.running.pop(name))


def command(argv: list[str], env: dict[str, str]) -> tuple[str, str]:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    return " ".join(argv), f"exit {done.returncode}\n{done.stdout}{done.stderr}"


@dataclass
class World:
    pairs: dict[str, Any]  # role -> ScalingPair
    apps: dict[str, str]  # role -> app
    queues: dict[str, str]  # role -> queue
    bounds: dict[str, tuple[int, int]]  # app -> (min, max)


def make_world(sqs: Any, heroku: FaultHeroku, receiver: WebhookReceiver) -> World:
    from django.contrib.auth.models import User

    from scaling import services
    from scaling.models import AlertChannel, AwsAccount, HerokuAccount, PairQueue, PairSchedule, ScalingPair

    User.objects.create_superuser(ADMIN_USER, "operator@example.com", ADMIN_PASS)
    team_a = HerokuAccount.objects.create(description="team a", api_token=TOKEN_A)
    team_b = HerokuAccount.objects.create(description="team b", api_token=TOKEN_B)
    aws = AwsAccount.objects.create(description="aws", access_key_id=AWS_KEY, secret_access_key=AWS_SECRET)
    AlertChannel.objects.create(name="on call", kind="webhook", all_pairs=True,
                                url=f"{receiver.url}/hooks/dynoscaler", signing_secret=SIGNING_SECRET)
    roles: dict[str, tuple[Any, dict[str, Any]]] = {f"fleet{i}": (team_a, {}) for i in range(5)}
    roles.update({
        "lost": (team_a, {}), "echo": (team_a, {}), "hand": (team_a, {}), "sched": (team_a, {}),
        "dry": (team_a, {"dry_run": True}), "limited": (team_a, {"max_dynos": 8}),
        "throttled0": (team_b, {}), "throttled1": (team_b, {}),
    })
    pairs, apps, queues, bounds = {}, {}, {}, {}
    for role, (account, extra) in roles.items():
        app, queue = f"{role}-app", f"{role}-q"
        sqs.create_queue(QueueName=queue)
        token = TOKEN_A if account == team_a else TOKEN_B
        heroku.add_app(app, token=token, quantity=1, max_quantity=3 if role == "limited" else 100)
        fields = {"policy": "target_wait", "min_dynos": 1, "max_dynos": 5, "target_wait_seconds": 120,
                  "dyno_rate": 1.0, "interval_seconds": INTERVAL, **extra}
        pair = ScalingPair.objects.create(name=role, heroku_account=account, aws_account=aws, app_name=app, **fields)
        PairQueue.objects.create(pair=pair, queue=queue, region=REGION)
        services.pair_apply_settings(pair=pair)
        pairs[role], apps[role], queues[role] = pair, app, queue
        bounds[app] = (fields["min_dynos"], fields["max_dynos"])
    PairSchedule.objects.create(pair=pairs["sched"], start_time="00:00", end_time="00:00", min_dynos=1, max_dynos=3)
    heroku.throttled_apps = {apps["throttled0"], apps["throttled1"]}
    # The original variables' pair: Heroku accepts 2 dynos at most, its variables allow 4.
    sqs.create_queue(QueueName="env-q")
    heroku.add_app("env-app", token=TOKEN_ENV, quantity=2, max_quantity=2)
    bounds["env-app"] = (1, 4)
    return World(pairs, apps, queues, bounds)


def subscribe(world: World, public_url: str) -> None:
    from scaling import services
    from scaling.models import ScalingPair

    pairs = list(ScalingPair.objects.filter(managed_by_env=False).select_related("heroku_account"))
    done = services.apps_webhooks(apps=services.apps_of(pairs), action="subscribe", public_url=public_url)
    if not all(d.ok for d in done):
        sys.exit("subscribing to webhooks failed: " + "; ".join(d.said for d in done if not d.ok))


def burst(sqs: Any, queue: str, messages: int = 300) -> None:
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    for _ in range(messages // 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(10)])


def drain(sqs: Any, queue: str) -> None:
    sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName=queue)["QueueUrl"])


def wait_until(what: str, done: Callable[[], bool], seconds: float) -> float | None:
    """Seconds it took, or None if it did not happen in time."""
    from django.db import connection

    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if done():
            return time.monotonic() - started
        connection.close()
        time.sleep(0.5)
    log(f"  not within {seconds:g} s: {what}")
    return None


def faults(run: Run, world: World, procs: Procs, web: Web, heroku: FaultHeroku, elastic: ElasticsearchStandIn,
           redis: RedisServer, sqs: Any, env: dict[str, str], key_other: str, key_saved: str) -> None:
    from django.db.models import Max

    from scaling.models import Decision, HerokuAccount, Lease, PairSample, ScalingPair
    from scaling.services import AUDIT_LEASE

    log("warming up: every pair cycles…")
    every = ScalingPair.objects.count()
    if wait_until("every pair's first cycle", lambda: PairSample.objects.values("pair_id").distinct().count() >= every,
                  120) is None:
        sys.exit("the pairs never cycled; see the worker's log")
    for role in ("fleet0", "fleet1", "dry", "env"):
        burst(sqs, world.queues.get(role, "env-q"))
    time.sleep(3 * INTERVAL)

    # 1. 429 for one account; its pairs want to scale up meanwhile.
    log("1. Heroku answers 429 to team b for 20 s")
    for role in ("throttled0", "throttled1"):
        burst(sqs, world.queues[role])
    heroku.throttle_until = time.time() + 20
    run.marks["429 until"] = heroku.throttle_until
    time.sleep(20)
    cleared = time.time()
    took = wait_until("team b calls Heroku again", lambda: any(
        t > cleared and s < 400 and (p.split("/")[2] in heroku.throttled_apps if p.startswith("/apps/") else False)
        for t, _, p, _, s in list(heroku.log)), BACKOFF + 3 * INTERVAL + 10)
    backoff_end = HerokuAccount.objects.get(description="team b").rate_limited_until
    run.check("1. a 429 back-off ends when it says", took is not None and took <= BACKOFF + INTERVAL + 2,
              f"first call {took if took is None else round(took, 1)} s after the 429s stopped "
              f"(back-off {BACKOFF} s + one {INTERVAL} s interval allowed); back-off ended "
              f"{(backoff_end.timestamp() - cleared) if backoff_end else float('nan'):+.1f} s from then")

    # 2. a write Heroku applied, its answer lost; then a person scales another app by hand.
    log("2. the answer to a formation write is lost; a person scales an app by hand")
    heroku.lose_answer_next("PATCH", rf"^/apps/{world.apps['lost']}/formation/")
    burst(sqs, world.queues["lost"])
    wait_until("the lost write lands", lambda: heroku.quantity(world.apps["lost"]) > 1, 60)
    time.sleep(4 * INTERVAL)
    heroku.set_quantity(world.apps["hand"], 4, actor="alice@example.com")
    run.marks["person scaled"] = time.time()
    burst(sqs, world.queues["hand"], 30)  # it would like fewer or more: it must hold
    lost = ScalingPair.objects.get(pk=world.pairs["lost"].pk)
    blamed = Decision.objects.filter(pair=lost, reason__contains="outside DynoScaler").count()
    run.check("2. a write with a lost answer is not a person's", blamed == 0 and lost.paused_until is None,
              f"{blamed} decisions blamed a person; held until {lost.paused_until}; "
              f"now {heroku.quantity(world.apps['lost'])} dynos")

    # Heroku 503s on writes (held before; kept in the run).
    heroku.fail_next("PATCH", rf"^/apps/{world.apps['fleet2']}/formation/", 503, times=2)
    burst(sqs, world.queues["fleet2"])

    # 3. the worker killed while it ships to a hanging Elasticsearch.
    log("3. SIGKILL the worker while it ships decisions to a hanging Elasticsearch")
    elastic.delay_seconds = 8
    held = wait_until("the shipper takes its lease", lambda: Lease.objects.filter(
        key=AUDIT_LEASE, holder__isnull=False).exists(), 90)
    time.sleep(1)
    procs.kill("worker")
    killed = time.time()
    lease = Lease.objects.filter(key=AUDIT_LEASE).first()
    lease_left = (lease.expires_at.timestamp() - killed) if lease and lease.expires_at else 0.0
    elastic.delay_seconds = 0
    procs.start("worker")
    from django.conf import settings

    before_kill = Decision.objects.filter(created_at__lte=_aware(killed)).count()
    caught_up = wait_until("the decisions made before the kill are shipped", lambda: not Decision.objects.filter(
        created_at__lte=_aware(killed), shipped_at__isnull=True).exists(), 300)
    limit = settings.AUDIT_LEASE_SECONDS + settings.AUDIT_SHIP_INTERVAL_SECONDS + 15
    run.check("3. a killed shipper holds the audit trail up for seconds",
              held is not None and caught_up is not None and caught_up <= limit,
              f"its lease had {lease_left:.0f} s left; the {before_kill} decisions made before the kill were all "
              f"shipped {caught_up if caught_up is None else round(caught_up)} s after it (allowed {limit} s)")

    # 4. Heroku echoes the token in a 422.
    log("4. Heroku echoes the token in a 422")
    heroku.fail_next("PATCH", rf"^/apps/{world.apps['echo']}/formation/", 422,
                     message=f"Token {TOKEN_A} may not scale; request had Authorization: Bearer {TOKEN_A}")
    burst(sqs, world.queues["echo"])
    wait_until("the refusal is recorded", lambda: Decision.objects.filter(
        pair_id=world.pairs["echo"].pk, error__contains="may not scale").exists(), 60)
    echo = world.pairs["echo"]
    for path in (f"/admin/scaling/scalingpair/{echo.pk}/change/", "/admin/scaling/scalingpair/",
                 "/admin/scaling/decision/", "/admin/scaling/decision/export.csv", "/admin/status/"):
        web.get(path)
    for row in Decision.objects.filter(pair_id=echo.pk, error__contains="may not scale")[:2]:
        web.get(f"/admin/scaling/decision/{row.pk}/change/")

    # Elasticsearch down and back; two beats at once; a Redis restart (all held before).
    log("Elasticsearch down for 30 s, a second beat for 30 s, then Redis restarted")
    elastic.stop()
    procs.start("beat2", "beat")
    for role in ("fleet3", "fleet4"):
        burst(sqs, world.queues[role])
    time.sleep(30)
    elastic.start()
    procs.kill("beat2", signal.SIGTERM)
    redis.stop()
    time.sleep(5)
    redis.start()
    redis_back = time.time()
    resumed = wait_until("every pair cycles after the Redis restart", lambda: PairSample.objects.filter(
        at__gt=_aware(redis_back)).values("pair_id").distinct().count() >= every - 1, 180)
    run.check("Redis restarted under the worker and beat: cycles resume", resumed is not None,
              f"every pair cycled again {resumed if resumed is None else round(resumed)} s after Redis was back")

    # The kill switch, engaged through the status page while bursts land.
    log("the kill switch: engaged for 20 s while bursts land")
    status = web.get("/admin/status/")
    web.post("/admin/kill-switch/", {"engage": "1", "note": "fault run", "csrfmiddlewaretoken": _csrf(status.text)})
    run.marks["kill engaged"] = time.time()
    for role in ("fleet0", "fleet1", "limited"):
        burst(sqs, world.queues[role], 600)
    time.sleep(20)
    status = web.get("/admin/status/")
    web.post("/admin/kill-switch/", {"engage": "0", "note": "", "csrfmiddlewaretoken": _csrf(status.text)})
    run.marks["kill released"] = time.time()

    # 5. hostile input to every admin page.
    log("5. hostile input to every admin list, filter, search, form and export")
    sweep(web, world)

    # 7. the production settings, as the README's deploy steps give them.
    log("7. check --deploy with the production settings")
    prod = {k: v for k, v in env.items() if k not in ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_COOKIES", "DEBUG")}
    said = command([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], prod)
    run.outputs.append(said)
    run.check("7. check --deploy is clean with production settings", said[1].startswith("exit 0")
              and "System check identified no issues" in said[1], said[1].strip().splitlines()[-1][:160])

    # 8. the original variables' pair, refused a quantity, run as the old tool was (and by beat).
    log("8. the original variables' pair is refused a quantity")
    run.marks["scale_once from"] = time.time()
    for _ in range(3):
        run.outputs.append(command([sys.executable, "manage.py", "scale_once"], env))
    run.marks["scale_once to"] = time.time()

    # 6. a different encryption key, then the secrets entered again.
    log("6. web and worker restarted with a different encryption key")
    procs.restart("web", DYNOSCALER_ENCRYPTION_KEYS=key_other)
    procs.restart("worker", DYNOSCALER_ENCRYPTION_KEYS=key_other)
    wait_for_port(int(web.url.rsplit(":", 1)[1]))
    web.login()
    pair = world.pairs["fleet0"]
    lost_pages = ["/admin/", "/admin/scaling/herokuaccount/", "/admin/scaling/awsaccount/",
                  f"/admin/scaling/herokuaccount/{pair.heroku_account_id}/change/",
                  f"/admin/scaling/awsaccount/{pair.aws_account_id}/change/", "/admin/scaling/scalingpair/",
                  f"/admin/scaling/scalingpair/{pair.pk}/change/", "/admin/scaling/scalingpair/add/",
                  "/admin/scaling/decision/", "/admin/status/"]
    answers = [web.get(path) for path in lost_pages]
    said_cannot = sum("cannot be read" in a.text for a in answers)
    release = command([sys.executable, "manage.py", "sync_env_pair"], {**env, "DYNOSCALER_ENCRYPTION_KEYS": key_other})
    run.outputs.append(release)
    # The release phase says how the original variables' pair stands, then, in one line,
    # which stored secrets cannot be read (a warning: the release still goes out).
    release_lines = [line for line in release[1].splitlines()[1:] if line.strip()]
    release_said = [line for line in release_lines if "cannot be read" in line]
    log("   entering team a's token and the AWS secret again")
    reentered_at = time.time()
    for path, secret_field, secret in (
            (f"/admin/scaling/herokuaccount/{pair.heroku_account_id}/change/", "api_token", TOKEN_A),
            (f"/admin/scaling/awsaccount/{pair.aws_account_id}/change/", "secret_access_key", AWS_SECRET)):
        values = web.form(path)
        values[secret_field] = secret
        web.post(path, values)
    works = wait_until("team a's pairs cycle without error again", lambda: Decision.objects.filter(
        pair_id=pair.pk, created_at__gt=_aware(reentered_at), error="").exists(), 90)
    run.check("6. a lost key: pages render, the release phase says so in a line, re-entering works",
              all(a.status_code == 200 for a in answers) and said_cannot == len(lost_pages)
              and len(release_said) == 1 and len(release_lines) <= 2 and "Traceback" not in release[1]
              and works is not None,
              f"{sum(a.status_code == 200 for a in answers)} of {len(lost_pages)} pages answered 200, "
              f"{said_cannot} said 'cannot be read'; release phase: {release[1].splitlines()[0]}, "
              f"{len(release_said)} line on the secrets: {release_said[0][:110] if release_said else ''!r}; cycling again "
              f"{works if works is None else round(works)} s after re-entering")
    last = PairSample.objects.aggregate(at=Max("at"))["at"]
    run.marks["end of faults"] = time.time()
    log(f"faults done; last cycle at {last}")


def sweep(web: Web, world: World) -> None:
    """Every changelist with hostile searches, filters, orderings and pages; every add form
    and the first object's change form posted with hostile values; the decisions export
    with the filters the list rejects; a schedule window with min above max."""
    home = web.get("/admin/").text
    lists = sorted(set(re.findall(r'href="(/admin/[a-z_]+/[a-z_]+/)"', home)))
    for path in lists:
        page = web.get(path).text
        params = {"q", "o", "p", "e"} | {m for m in re.findall(r'href="\?([a-z_]+)(?:__[a-z_]+)?=', page)}
        params |= set(re.findall(r'href="\?([a-z_]+__[a-z]+)=', page))
        for value in HOSTILE[::2]:
            for name in sorted(params):
                web.get(path, **{name: value})
        add = web.get(f"{path}add/")
        if add.status_code == 200:
            for value in HOSTILE[:5]:
                reader = FormReader()
                reader.feed(add.text)
                form = {k: (v if k.startswith(("csrf", "_")) or k.endswith(("TOTAL_FORMS", "INITIAL_FORMS",
                                                                               "MIN_NUM_FORMS", "MAX_NUM_FORMS"))
                            else value) for k, v in reader.values.items()}
                web.post(f"{path}add/", form)
        first = re.search(rf'href="({re.escape(path)}(\d+)/change/)', page)
        # Not the pairs, accounts, channels or users the run goes on with: a hostile value
        # that is valid text would be saved, as it should be.
        if first and not any(m in path for m in ("scalingpair", "account", "alertchannel", "/user/")):
            change = web.form(first.group(1))
            web.post(first.group(1), change)
            for value in HOSTILE[:5]:
                web.post(first.group(1), {k: (v if k.startswith("csrf") or "FORMS" in k else value)
                                          for k, v in change.items()})
    for bad in ({"policy": "nonsense"}, {"created_at__gte": "yesterday"}, {"pair__id__exact": "x"}, {"q": "a\x00b"}):
        web.get("/admin/scaling/decision/export.csv", **bad)
    sched = world.pairs["sched"]
    form = web.form(f"/admin/scaling/scalingpair/{sched.pk}/change/")
    form.update({"schedules-0-min_dynos": "5", "schedules-0-max_dynos": "2"})
    answer = web.post(f"/admin/scaling/scalingpair/{sched.pk}/change/", form)
    if answer.status_code == 200 and "errornote" not in answer.text:
        log("   the schedule window with min above max was not refused")


def settle(run: Run, elastic: ElasticsearchStandIn, procs: Procs) -> None:
    from scaling.models import Decision

    log("settling: the audit trail catches up…")
    took = wait_until("every decision shipped", lambda: not Decision.objects.filter(shipped_at__isnull=True).exists(), 120)
    run.marks["settled"] = time.time()
    log(f"   settled in {took if took is None else round(took)} s")
    procs.alive()


def _aware(at: float) -> Any:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(at, tz=timezone.utc)


def checks(run: Run, world: World, procs: Procs, heroku: FaultHeroku, elastic: ElasticsearchStandIn,
           receiver: WebhookReceiver, workdir: Path, database_url: str, secrets: list[str]) -> None:
    from scaling.models import Decision, PairSample, ScalingPair

    # Wrong writes.
    writes = [(t, p.split("/")[2], (b or {}).get("quantity"), s) for t, m, p, b, s in heroku.log
              if m == "PATCH" and "/formation/" in p]
    wrong = []
    dry_app, hand_app = world.apps["dry"], world.apps["hand"]
    for at, app, quantity, status in writes:
        low, high = world.bounds.get(app, (0, 100))
        if not isinstance(quantity, int) or not low <= quantity <= high:
            wrong.append(f"{app} asked for {quantity} outside {low}–{high}")
        if app == dry_app:
            wrong.append(f"{app} written though its pair is a dry run")
        if run.marks["kill engaged"] + 1 < at < run.marks["kill released"]:
            wrong.append(f"{app} written while the kill switch was engaged")
        if app == hand_app and at > run.marks["person scaled"]:
            wrong.append(f"{app} written over a person's change")
    refused: dict[tuple[str, Any], int] = defaultdict(int)
    for _, app, quantity, status in writes:
        if status == 422:
            refused[(app, quantity)] += 1
    wrong += [f"{app} asked again for {q}, refused {n} times" for (app, q), n in refused.items() if n > 1]
    # The kill switch held something back (so its window was a real test, not a quiet spell).
    kill_held = Decision.objects.filter(
        created_at__gt=_aware(run.marks["kill engaged"]), created_at__lt=_aware(run.marks["kill released"]),
        reason__contains="not sent: the kill switch is on").count()
    limited = heroku.quantity(world.apps["limited"])
    env_writes = [q for _, app, q, _ in writes if app == "env-app"]
    run.check("no wrong formation write", not wrong and limited == 3 and kill_held > 0,
              f"{len(writes)} writes, {len(wrong)} wrong{': ' + '; '.join(wrong[:3]) if wrong else ''}; "
              f"{kill_held} writes held back by the kill switch; "
              f"the pair Heroku caps at 3 ended at {limited}; the original variables' pair asked "
              f"{env_writes or 'nothing'} over the run and {3} scale_once runs")
    run.check("8. a refused quantity is not asked again", env_writes.count(3) <= 1 and not any(n > 1 for n in refused.values()),
              f"quantities refused (422) per app and quantity: {dict(refused) or 'none'}")

    # Lost or doubled decisions and cycles.
    ids = {str(i) for i in Decision.objects.values_list("id", flat=True)}
    shipped = {doc_id for (_, doc_id) in elastic.documents}
    # A cycle closer than half an interval to the one before is doubled, but for those the
    # operator asked for (``scale_once`` runs every pair once, as the original tool did).
    doubled = asked = 0
    asked_from, asked_to = run.marks["scale_once from"], run.marks["scale_once to"] + 0.5
    for pair in ScalingPair.objects.all():
        ats = list(PairSample.objects.filter(pair=pair).order_by("at").values_list("at", flat=True))
        for a, b in zip(ats, ats[1:]):
            if (b - a) < timedelta(seconds=pair.interval_seconds / 2 - 0.5):
                if any(asked_from <= at.timestamp() <= asked_to for at in (a, b)):
                    asked += 1
                else:
                    doubled += 1
    stale = [p.name for p in ScalingPair.objects.filter(enabled=True)
             if not p.last_cycle_at or p.last_cycle_at.timestamp() < run.marks["end of faults"] - 3 * p.interval_seconds]
    run.check("no decision lost or doubled, no pair stopped", ids == shipped and doubled == 0 and not stale,
              f"{len(ids)} decisions, {len(shipped)} in Elasticsearch ({len(ids - shipped)} missing, "
              f"{len(shipped - ids)} unknown); {doubled} doubled cycles ({asked} more run by scale_once); pairs that stopped cycling: {stale or 'none'}")

    # Crashes: processes that died on their own, tasks that raised.
    tracebacks = []
    for path in sorted(workdir.glob("*.log")):
        if path.name.startswith(("worker", "beat", "web")):
            tracebacks += [f"{path.name}: {t}" for t in _tracebacks(path.read_text(errors="replace"))]
    run.check("no crash", not procs.crashed and not tracebacks,
              f"processes that died: {procs.crashed or 'none'}; tracebacks in the logs: {len(tracebacks)}"
              + (f" (first: {tracebacks[0][:200]})" if tracebacks else ""))

    # Answers of 500: our own requests, the webhooks Heroku posted, the web's access log.
    ours = [(what, status) for what, status, _ in run.pages if status >= 500]
    hooks = [d for d in heroku.deliveries if d.status is None or d.status >= 500]
    access = []
    for path in workdir.glob("web-*.log"):
        access += [line for line in path.read_text(errors="replace").splitlines() if re.search(r'" 5\d\d ', line)]
    run.check("no answer of 500", not ours and not hooks and not access,
              f"{len(run.pages)} admin requests ({len(ours)} answered 5xx{': ' + ours[0][0] if ours else ''}); "
              f"{len(heroku.deliveries)} webhook deliveries ({len(hooks)} not 2xx–4xx); {len(access)} 5xx in the access log")

    # Secrets anywhere.
    dump = subprocess.run([_pg_dump(), "--data-only", database_url.replace("postgres://", "postgresql://")],
                          capture_output=True, text=True, check=True).stdout
    places: dict[str, str] = {"database": dump}
    for path in sorted(workdir.glob("*.log")):
        places[path.name] = path.read_text(errors="replace")
    places["pages and exports"] = "\n".join(body for _, _, body in run.pages)
    places["commands' output"] = "\n".join(out for _, out in run.outputs)
    places["Elasticsearch"] = b"".join(elastic.raw_bodies).decode(errors="replace")
    places["alerts"] = "\n".join(r.body.decode(errors="replace") if isinstance(r.body, bytes) else str(r.body)
                                 for r in receiver.received)
    leaks = [f"{secret[:6]}… in {where}" for where, text in places.items() for secret in secrets if secret in text]
    run.check("no secret on any page, log, export, alert, document or row", not leaks,
              f"searched {len(places)} places ({sum(len(t) for t in places.values()) / 1e6:.1f} MB), "
              f"{len(run.pages)} pages, {len(receiver.received)} alerts: {leaks or 'no secret found'}")


def _tracebacks(text: str) -> list[str]:
    """Each traceback in a log (chained ones count once), as the log line that printed it and
    its last exception, but for two that are not faults: Celery's "Connection to broker lost"
    (the run cut the broker; the worker reconnects) and Django's 403 for a form the sweep may
    not post (Django logs the PermissionDenied it answers with)."""
    lines = text.splitlines()
    found: list[list[str]] = []
    for i, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last)"):
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j].startswith(" ")), len(lines) - 1)
        chained = any("During handling of the above" in x or "direct cause of the following" in x
                      for x in lines[max(0, i - 2):i])
        if chained and found:
            found[-1][1] = lines[end]
            continue
        intro = next((lines[j] for j in range(i - 1, -1, -1) if re.match(r"\d{4}-\d\d-\d\d ", lines[j])), "")
        found.append([intro, lines[end]])
    return [f"{intro[24:130]} → {last[:160]}" for intro, last in found
            if "Connection to broker lost" not in intro and "Cannot connect to redis" not in intro
            and not last.startswith("django.core.exceptions.PermissionDenied")]


def _pg_dump() -> str:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    return str(found[-1]) if found else "pg_dump"


if __name__ == "__main__":
    main()
