"""`make run` (manage.py runlocal) as a newcomer meets it: the login it prints works at once,
Ctrl-C stops all three processes cleanly, and when it cannot run it says so and exits
non-zero instead of printing a login for a server that is not there."""

from __future__ import annotations

import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.test_commands_without_config import manage

BASE_DIR = Path(__file__).resolve().parent.parent
PASSWORD = "laptop-login-for-tests"


class RunLocal:
    """runlocal in its own process and session, its lines collected as they come."""

    def __init__(self, tmp_path: Path, *args: str, **variables: str) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "DEBUG": "1",
               "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
               # Nothing of a run reaches the real Heroku or AWS: these ports refuse at once.
               "HEROKU_API_URL": f"http://127.0.0.1:{free_port()}", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
               **variables}
        self.proc = subprocess.Popen([sys.executable, "manage.py", "runlocal", *args], cwd=BASE_DIR, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, seconds: float = 120) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"{text!r} never came; runlocal printed:\n" + "\n".join(self.seen[-40:]))

    def finish(self, seconds: float = 60) -> int:
        code = self.proc.wait(timeout=seconds)
        time.sleep(0.2)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        assert self.finish() == 0, "\n".join(self.seen[-20:])

    def stop_everything(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def child_pid(parent: int, marker: str) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and marker in cmdline:
            return int(entry.name)
    raise AssertionError(f"no child of {parent} runs {marker!r}")


def test_the_printed_login_works_at_once_and_ctrl_c_stops_all_three(tmp_path: Path) -> None:
    port = free_port()
    run = RunLocal(tmp_path, "--port", str(port))
    try:
        banner = run.wait_for("DynoScaler admin:")
        assert f"http://127.0.0.1:{port}/admin/" in banner and repr(PASSWORD) in banner
        # The login is printed once the web server answers, so the first click works.
        session = requests.Session()
        login = session.get(f"http://127.0.0.1:{port}/admin/login/", timeout=10)
        assert login.status_code == 200
        done = session.post(f"http://127.0.0.1:{port}/admin/login/?next=/admin/", timeout=10,
                            data={"username": "admin", "password": PASSWORD,
                                  "csrfmiddlewaretoken": session.cookies["csrftoken"]})
        assert done.url.endswith("/admin/") and "Log out" in done.text
        # Its task queue lies beside its SQLite file: a developer's own `make run` in this
        # checkout keeps its tasks to itself.
        assert (tmp_path / ".broker" / "queue").is_dir()
        children = [child_pid(run.proc.pid, marker) for marker in ("runserver", "worker", "beat")]
        run.proc.send_signal(signal.SIGINT)
        assert run.finish() == 0, "\n".join(run.seen[-20:])
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    finally:
        run.stop_everything()


def test_a_taken_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = RunLocal(tmp_path, "--port", str(port))
        try:
            assert run.finish() == 1
        finally:
            run.stop_everything()
    assert run.seen == [f"CommandError: port {port} on 127.0.0.1 is taken (Address already in use); is "
                        "DynoScaler already running? Choose another with --port or PORT"]
    assert not (tmp_path / "db.sqlite3").exists(), "nothing is migrated for a run that cannot start"


@pytest.mark.parametrize("port", ["eighty", "70000"])
def test_a_malformed_port_variable_is_named(tmp_path: Path, port: str) -> None:
    done = manage("runlocal", DEBUG="1", PORT=port, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert done.returncode == 1
    assert done.stderr.startswith("CommandError: PORT: ")
    assert "Traceback" not in done.stderr


def test_a_port_option_out_of_range_is_named(tmp_path: Path) -> None:
    done = manage("runlocal", "--port", "99999", DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert done.returncode == 1
    assert done.stderr == "CommandError: --port: expected a number from 1 to 65535, got 99999\n"
    assert not (tmp_path / "db.sqlite3").exists()


def test_a_process_that_dies_stops_the_others_and_the_run_fails(tmp_path: Path) -> None:
    port = free_port()
    run = RunLocal(tmp_path, "--port", str(port))
    try:
        run.wait_for("DynoScaler admin:")
        worker = child_pid(run.proc.pid, " worker ")
        web = child_pid(run.proc.pid, "runserver")
        os.kill(worker, signal.SIGKILL)
        assert run.finish() == 1
        assert f"worker (exit code {-signal.SIGKILL}) stopped; stopping the others" in run.seen
        assert run.seen[-1].startswith("CommandError: DynoScaler stopped because worker")
        assert not Path(f"/proc/{web}").exists() or "Z" in Path(f"/proc/{web}/stat").read_text().split()[2]
    finally:
        run.stop_everything()


def pairs_in(tmp_path: Path) -> dict[str, tuple[str, bool]]:
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        rows = db.execute("SELECT name, provider, enabled FROM scaling_scalingpair").fetchall()
    return {name: (provider, bool(enabled)) for name, provider, enabled in rows}


ORIGINAL_VARIABLES = {
    "MY_HEROKU_AUTH_TOKEN": "hk-runlocal-token-0123456789", "MY_HEROKU_AS_APP": "orders-app",
    "MY_HEROKU_AS_PROCESS": "worker", "AWS_KEY": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_SQS_NAME": "orders",
    "AWS_SQS_REGION": "us-east-1", "DYNOSCALER_MAX_DYNOS": "4", "DYNOSCALER_MIN_DYNOS": "1",
    "DYNOSCALER_UP_CYCLES": "2", "DYNOSCALER_DOWN_CYCLES": "3", "DYNOSCALER_BACKLOG_THRESHOLD": "10",
}


def test_malformed_original_variables_are_named_and_no_demo_pair_gets_in_the_way(tmp_path: Path) -> None:
    run = RunLocal(tmp_path, "--port", str(free_port()), **{**ORIGINAL_VARIABLES, "DYNOSCALER_MAX_DYNOS": "lots"})
    try:
        run.wait_for("DynoScaler admin:")
        run.stop()
    finally:
        run.stop_everything()
    assert any("DYNOSCALER_MAX_DYNOS: expected a whole number, got 'lots'" in line for line in run.seen)
    assert pairs_in(tmp_path) == {}


def test_the_demo_pair_is_switched_off_once_the_original_variables_are_set(tmp_path: Path) -> None:
    first = RunLocal(tmp_path, "--port", str(free_port()))
    try:
        first.wait_for("DynoScaler admin:")
        first.stop()
    finally:
        first.stop_everything()
    assert pairs_in(tmp_path) == {"Sandbox demo (simulated, no account)": ("sandbox", True)}

    second = RunLocal(tmp_path, "--port", str(free_port()), **ORIGINAL_VARIABLES)
    try:
        second.wait_for("DynoScaler admin:")
        second.stop()
    finally:
        second.stop_everything()
    assert ("The sandbox pair 'Sandbox demo (simulated, no account)' is switched off: real work is configured "
            "(the original variables, or accounts in the admin); delete it in the admin when you no longer want it.") in second.seen
    pairs = pairs_in(tmp_path)
    assert pairs["Sandbox demo (simulated, no account)"] == ("sandbox", False)
    assert [provider for provider, enabled in pairs.values() if enabled] == ["heroku"]
