"""Pairs as code: `manage.py pairs export` and `pairs import`, on PostgreSQL, through the
command as a team would run it."""

from __future__ import annotations

import io
import re
from datetime import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from scaling import services
from scaling.models import AwsAccount, HerokuAccount, PairQueue, PairSchedule, ScalingPair
from scaling.adapters.sandbox import DEMO_SETTINGS as SANDBOX_DEMO_SETTINGS
from scaling.pairs_file import PAIR_FIELDS
from scaling.services.pairs import SANDBOX_DEMO_NAME
from tests.conftest import AWS_KEY, AWS_SECRET, HEROKU_TOKEN

pytestmark = pytest.mark.django_db
TEAM_B_TOKEN = "hk-team-b-token-fedcba9876543210"
SECRETS = {
    "HEROKU_TOKEN_TEAM_A": HEROKU_TOKEN,
    "HEROKU_TOKEN_TEAM_B": TEAM_B_TOKEN,
    "AWS_ACCESS_KEY_ID_PROD_QUEUES": AWS_KEY,
    "AWS_SECRET_ACCESS_KEY_PROD_QUEUES": AWS_SECRET,
}


def pairs(*args: str) -> str:
    out = io.StringIO()
    call_command("pairs", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def import_error(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        pairs("import", *args)
    return str(caught.value)


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def world(db: None) -> list[ScalingPair]:
    """Two Heroku accounts, a key pair and a default-chain AWS account, three pairs."""
    team_a = HerokuAccount.objects.create(description="Team A", api_token=HEROKU_TOKEN)
    team_b = HerokuAccount.objects.create(description="Team B", api_token=TEAM_B_TOKEN)
    keys = AwsAccount.objects.create(description="prod queues", access_key_id=AWS_KEY, secret_access_key=AWS_SECRET)
    role = AwsAccount.objects.create(description="instance role", use_default_chain=True)
    made = [
        ScalingPair.objects.create(name="orders", heroku_account=team_a, aws_account=keys, app_name="orders-app",
                                   policy="classic", min_dynos=1, max_dynos=5, backlog_threshold=50, up_cycles=2,
                                   down_cycles=6),
        ScalingPair.objects.create(name="billing", heroku_account=team_b, aws_account=role, app_name="billing-app",
                                   process_type="invoicer", min_dynos=0, max_dynos=12, dyno_rate=12.5,
                                   dyno_concurrency=8, target_wait_seconds=300, interval_seconds=30),
        ScalingPair.objects.create(name="reports", heroku_account=team_a, aws_account=keys, app_name="reports-app",
                                   enabled=False, dry_run=True),
    ]
    PairQueue.objects.create(pair=made[0], queue="orders", region="us-east-1")
    PairQueue.objects.create(pair=made[0], queue="orders-priority.fifo", region="us-east-1")
    PairQueue.objects.create(pair=made[1], queue="https://sqs.eu-west-1.amazonaws.com/123456789012/invoices",
                             region="eu-west-1")
    PairQueue.objects.create(pair=made[2], queue="reports", region="us-west-2")
    PairSchedule.objects.create(pair=made[0], weekdays="0,1,2,3,4", start_time=time(8), end_time=time(18),
                                timezone="Europe/Berlin", min_dynos=3, max_dynos=5)
    PairSchedule.objects.create(pair=made[1], weekdays="5,6", start_time=time(22, 30), end_time=time(6),
                                timezone="UTC", min_dynos=0, max_dynos=2)
    for pair in made:
        services.pair_apply_settings(pair=pair)
    return made


def wipe() -> None:
    for pair in ScalingPair.objects.all():
        services.pair_delete(pair=pair)
    HerokuAccount.objects.all().delete()
    AwsAccount.objects.all().delete()
    assert not PeriodicTask.objects.filter(name__startswith="dynoscaler pair").exists()


# --- the round trip ------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_export_wipe_import_export_gives_the_same_file(world: Any, secrets_in_env: None, tmp_path: Path,
                                                       suffix: str) -> None:
    first, second = tmp_path / f"first{suffix}", tmp_path / f"second{suffix}"
    pairs("export", "--output", str(first))
    wipe()

    said = pairs("import", str(first))
    pairs("export", "--output", str(second))

    assert second.read_text() == first.read_text()
    assert 'pair "billing": new (billing-app/invoicer, target_wait, 0–12 dynos)' in said
    # Rebuilt from scratch: secrets from the environment, beat tasks for every pair.
    assert HerokuAccount.objects.get(description="Team B").api_token == TEAM_B_TOKEN
    assert AwsAccount.objects.get(description="prod queues").secret_access_key == AWS_SECRET
    assert AwsAccount.objects.get(description="instance role").use_default_chain
    tasks = {p.name: p.periodic_task for p in ScalingPair.objects.select_related("periodic_task")}
    assert {name: (t.enabled, t.interval.every) for name, t in tasks.items() if t} == {
        "orders": (True, 15), "billing": (True, 30), "reports": (False, 15)}


def test_the_exported_file_reads_as_documented(world: Any) -> None:
    data = yaml.safe_load(pairs("export"))
    assert data["heroku_accounts"] == [{"name": "Team A", "api_token_env": "HEROKU_TOKEN_TEAM_A"},
                                       {"name": "Team B", "api_token_env": "HEROKU_TOKEN_TEAM_B"}]
    assert data["aws_accounts"] == [
        {"name": "instance role", "use_default_chain": True},
        {"name": "prod queues", "access_key_id_env": "AWS_ACCESS_KEY_ID_PROD_QUEUES",
         "secret_access_key_env": "AWS_SECRET_ACCESS_KEY_PROD_QUEUES"},
    ]
    orders = data["pairs"][1]
    assert (orders["name"], orders["heroku_account"], orders["aws_account"]) == ("orders", "Team A", "prod queues")
    assert orders["schedules"] == [{"weekdays": "0,1,2,3,4", "start_time": "08:00", "end_time": "18:00",
                                    "timezone": "Europe/Berlin", "min_dynos": 3, "max_dynos": 5}]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_an_export_never_contains_a_secret_value(world: Any, fmt: str) -> None:
    text = pairs("export", "--format", fmt)
    for secret in (HEROKU_TOKEN, TEAM_B_TOKEN, AWS_SECRET, AWS_KEY):
        assert secret not in text
        assert secret[-8:] not in text  # not even the "ending …abcd" hint


def test_a_short_hand_written_file_takes_the_defaults_it_leaves_out(db: None, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEROKU_TOKEN_WEB", HEROKU_TOKEN)
    path = tmp_path / "pairs.yaml"
    path.write_text(
        "version: 1\n"
        "heroku_accounts: [{name: web team, api_token_env: HEROKU_TOKEN_WEB}]\n"
        "aws_accounts: [{name: role, use_default_chain: true}]\n"
        "pairs:\n"
        "  - name: thumbnails\n"
        "    heroku_account: web team\n"
        "    aws_account: role\n"
        "    app_name: thumbs-app\n"
        "    queues: [{queue: thumbs, region: us-east-1}]\n"
        "    schedules: [{weekdays: [5, 6], start_time: '10:00', end_time: '16:00', min_dynos: 2, max_dynos: 4}]\n"
    )

    pairs("import", str(path))

    pair = ScalingPair.objects.get(name="thumbnails")
    assert (pair.policy, pair.min_dynos, pair.max_dynos, pair.interval_seconds, pair.enabled) == ("target_wait", 1, 5, 15, True)
    assert [(s.weekdays, s.timezone) for s in pair.schedules.all()] == [("5,6", "UTC")]
    assert pairs("import", str(path)) == "No changes.\n"


# --- idempotence and the dry run -------------------------------------------------------

def test_importing_twice_changes_nothing_the_second_time(world: Any, secrets_in_env: None, tmp_path: Path) -> None:
    path = tmp_path / "pairs.yaml"
    pairs("export", "--output", str(path))
    wipe()
    pairs("import", str(path))
    stamps = dict(ScalingPair.objects.values_list("name", "updated_at"))

    assert pairs("import", str(path), "--dry-run") == "No changes.\n"
    assert pairs("import", str(path)) == "No changes.\n"
    assert dict(ScalingPair.objects.values_list("name", "updated_at")) == stamps


def test_a_dry_run_shows_each_change_pair_by_pair_and_writes_nothing(world: Any, secrets_in_env: None,
                                                                      tmp_path: Path) -> None:
    data = yaml.safe_load(pairs("export"))
    orders = data["pairs"][1]
    orders["max_dynos"] = 10
    orders["heroku_account"] = "Team B"
    orders["queues"] = [{"queue": "orders", "region": "us-east-1"}, {"queue": "orders-retry", "region": "us-east-1"}]
    orders["schedules"] = []
    data["pairs"].append({"name": "mailer", "heroku_account": "Team A", "aws_account": "instance role",
                          "app_name": "mailer-app", "queues": [{"queue": "mail", "region": "us-east-1"}]})
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))

    said = pairs("import", str(path), "--dry-run")

    assert said.splitlines() == [
        'pair "orders": changed',
        '  heroku_account: Team A → Team B',
        '  max_dynos: 5 → 10',
        '  + queue orders-retry (us-east-1)',
        '  - queue orders-priority.fifo (us-east-1)',
        '  - schedule days 0,1,2,3,4 08:00–18:00 Europe/Berlin: min 3, max 5',
        'pair "mailer": new (mailer-app/worker, target_wait, 1–5 dynos)',
        '  + queue mail (us-east-1)',
        'Dry run: nothing was written.',
    ]
    orders_now = ScalingPair.objects.get(name="orders")
    assert (orders_now.max_dynos, str(orders_now.heroku_account)) == (5, "Team A")
    assert orders_now.queues.count() == 2 and orders_now.schedules.count() == 1
    assert not ScalingPair.objects.filter(name="mailer").exists()

    pairs("import", str(path))
    assert ScalingPair.objects.get(name="orders").max_dynos == 10
    assert ScalingPair.objects.get(name="mailer").periodic_task is not None


def test_pointing_a_pair_at_other_queues_forgets_what_it_learned_as_the_admin_does(world: Any, secrets_in_env: None,
                                                                                   tmp_path: Path) -> None:
    learned = {"learn": {"boots": [50.0, 52.0]}, "bursts": {"onsets": [[0, 1]]}, "at": 5.0,
               "boot_timing": {"at": 0.0, "dynos": 2, "done": True}}
    ScalingPair.objects.filter(name="orders").update(learned={"rate": {"value": 7.5}}, policy_state=learned,
                                                     expected_quantity=3)
    data = yaml.safe_load(pairs("export"))
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert pairs("import", str(path)) == "No changes.\n"  # the same queues: nothing is forgotten
    assert ScalingPair.objects.get(name="orders").learned == {"rate": {"value": 7.5}}

    orders = next(p for p in data["pairs"] if p["name"] == "orders")
    orders["queues"] = [{"queue": "payments", "region": "us-east-1"}]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    pairs("import", str(path))
    pair = ScalingPair.objects.get(name="orders")
    assert (pair.learned, pair.expected_quantity) == ({}, None)
    assert not {"learn", "bursts", "boot_timing"} & set(pair.policy_state)  # a new app's boot may be timed


def test_a_changed_token_is_replaced_and_said_without_its_value(world: Any, secrets_in_env: None, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pairs.yaml"
    pairs("export", "--output", str(path))
    monkeypatch.setenv("HEROKU_TOKEN_TEAM_B", "hk-rotated-token-0000111122223333")

    said = pairs("import", str(path))

    assert said.splitlines()[0] == 'Heroku account "Team B": token changed (token from HEROKU_TOKEN_TEAM_B)'
    assert "hk-rotated" not in said
    assert HerokuAccount.objects.get(description="Team B").api_token == "hk-rotated-token-0000111122223333"


# --- what import refuses ---------------------------------------------------------------------

def test_one_invalid_pair_stops_the_whole_import_naming_file_pair_and_field(world: Any, secrets_in_env: None,
                                                                            tmp_path: Path) -> None:
    data = yaml.safe_load(pairs("export"))
    data["pairs"][0]["max_dynos"] = 20  # billing: fine on its own
    data["pairs"][1]["min_dynos"] = 9  # orders: above its max of 5
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))

    message = import_error(str(path))

    assert message == (f"{path}: pair 'orders', field min_dynos: Min dynos (9) cannot be above max dynos (5). "
                       "(nothing was imported)")
    assert ScalingPair.objects.get(name="billing").max_dynos == 12


def test_every_problem_is_listed_one_line_each(world: Any, secrets_in_env: None, tmp_path: Path) -> None:
    data = yaml.safe_load(pairs("export"))
    data["pairs"][0]["queues"] = [{"queue": "bad queue name", "region": "eu-west-1"}]
    data["pairs"][1]["app_name"] = "Orders_App"
    data["pairs"][2]["heroku_account"] = "Team C"
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))

    lines = import_error(str(path)).splitlines()

    assert lines[0].startswith(f"{path}: pair 'billing', queue 1, field queue: Give the queue's name")
    assert lines[1].startswith(f"{path}: pair 'orders', field app_name: A Heroku app name is 3–30 characters")
    assert lines[2] == f"{path}: pair 'reports', field heroku_account: no Heroku account named 'Team C' in the file or the database"
    assert lines[3] == "3 problems; nothing was imported."


def test_an_unknown_account_does_not_hide_the_pairs_other_problems(world: Any, secrets_in_env: None,
                                                                    tmp_path: Path) -> None:
    data = yaml.safe_load(pairs("export"))
    data["pairs"][1]["heroku_account"] = "Team C"
    data["pairs"][1]["min_dynos"] = 9
    data["pairs"][1]["queues"] = [{"queue": "bad queue name", "region": "us-east-1"}]
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    lines = import_error(str(path)).splitlines()
    assert lines[0] == f"{path}: pair 'orders', field heroku_account: no Heroku account named 'Team C' in the file or the database"
    assert lines[1] == f"{path}: pair 'orders', field min_dynos: Min dynos (9) cannot be above max dynos (5)."
    assert lines[2].startswith(f"{path}: pair 'orders', queue 1, field queue: Give the queue's name")
    assert lines[3] == "3 problems; nothing was imported."


def test_a_sandbox_pair_in_the_file_with_accounts_or_queues_is_refused(world: Any, secrets_in_env: None,
                                                                       tmp_path: Path, settings: Any) -> None:
    settings.SANDBOX_ENABLED = True
    data = yaml.safe_load(pairs("export"))
    data["pairs"][1]["provider"] = "sandbox"  # orders, with its accounts and queue
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    lines = import_error(str(path)).splitlines()
    assert f"{path}: pair 'orders', field queues: a sandbox pair reads no queue (its queue is simulated): leave it out" \
        in lines
    assert any("field heroku_account: A sandbox pair uses no account" in line for line in lines)
    assert ScalingPair.objects.get(name="orders").provider == "heroku"


def test_a_queue_url_in_another_region_is_named_in_the_file(world: Any, secrets_in_env: None, tmp_path: Path) -> None:
    data = yaml.safe_load(pairs("export"))
    data["pairs"][0]["queues"][0]["region"] = "us-east-1"  # billing's queue URL is in eu-west-1
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))

    assert import_error(str(path)) == (f"{path}: pair 'billing', queue 1, field region: The queue's URL is in "
                                       "eu-west-1, not us-east-1: set the region to eu-west-1. (nothing was imported)")


def test_an_unset_secret_variable_is_named_and_nothing_is_written(world: Any, secrets_in_env: None, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pairs.yaml"
    pairs("export", "--output", str(path))
    wipe()
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY_PROD_QUEUES")

    message = import_error(str(path))

    assert message == (f"{path}: AWS account 'prod queues', field secret_access_key_env: environment variable "
                       "AWS_SECRET_ACCESS_KEY_PROD_QUEUES is not set; set it to the secret where you run the import "
                       "(nothing was imported)")
    assert not HerokuAccount.objects.exists() and not ScalingPair.objects.exists()


BAD_FILES = [
    ("version: 1\npairs:\n  - name: orders\n    max_dyno: 5\n",
     "pair 'orders', field max_dyno: unknown field (did you mean max_dynos?)"),
    ("version: 1\npairs:\n  - name: orders\n    max_dynos: ten\n",
     "pair 'orders', field max_dynos: expected a whole number, got 'ten'"),
    ("version: 1\npairs:\n  - name: orders\n    enabled: 1\n",
     "pair 'orders', field enabled: expected true or false, got 1"),
    ("version: 1\npairs:\n  - name: orders\n    schedules:\n      - {weekdays: '0', start_time: 08:00, end_time: 18:00,"
     " min_dynos: 1, max_dynos: 2}\n",
     "pair 'orders', schedule 1, field end_time: expected a time such as \"18:00\" in quotes; unquoted, YAML read it "
     "as the number 1080"),
    ("version: 1\npairs:\n  - name: orders\n    dyno_rate: .nan\n",
     "pair 'orders', field dyno_rate: expected a finite number, got nan"),
    ("version: 1\npairs:\n  - name: orders\n    backlog_threshold: .inf\n",
     "pair 'orders', field backlog_threshold: expected a finite number, got inf"),
    ("version: 1\npairs:\n  - name: orders\n    prewarm: off\n",
     "pair 'orders', field prewarm: expected one of on, shadow, off in quotes (\"off\"); unquoted, YAML read it as "
     "false"),
    ("version: 1\npairs:\n  - name: orders\n  - name: orders\n", "pair 'orders': named twice; each pair needs its own name"),
    ("version: 1\npairs:\n  - app_name: orders-app\n", "pair 1, field name: required: a non-empty text"),
    ("pairs: []\n", "field version: expected 1 (the format this DynoScaler reads), got None"),
    ("version: 1\npairs:\n  - name: orders\n    queues:\n      - queue: a\n        region: [\n",
     "not valid YAML"),
    ("version: 1\nheroku_accounts:\n  - name: Team A\n    api_token_env: hk-0123456789abcdef\n",
     "Heroku account 'Team A', field api_token_env: must name an environment variable (capital letters, digits and _, "
     "e.g. HEROKU_TOKEN_TEAM_A), never hold the secret itself"),
]


@pytest.mark.parametrize("text, says", BAD_FILES)
def test_a_bad_file_gets_one_line_naming_the_place(db: None, tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "pairs.yaml"
    path.write_text(text)
    message = import_error(str(path))
    assert message.startswith(f"{path}")
    assert says in message
    assert "\n" not in message
    assert "hk-0123456789abcdef" not in message  # a pasted secret is not echoed


def test_a_json_file_with_a_syntax_error_names_its_line(db: None, tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text('{\n  "version": 1,\n  "pairs": [\n}\n')
    assert import_error(str(path)).startswith(f"{path}, line 4: not valid JSON")


def test_a_file_on_standard_input_is_read_as_yaml_or_json(world: Any, secrets_in_env: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # For `heroku run`, where the file is on the laptop and the database on Heroku.
    monkeypatch.setattr("sys.stdin", io.StringIO(pairs("export", "--format", "json")))
    assert pairs("import", "-", "--dry-run") == "No changes.\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("version: 1\npairs:\n  - name: x\n    max_dynos: ten\n"))
    assert import_error("-") == "<stdin>: pair 'x', field max_dynos: expected a whole number, got 'ten'"


def test_a_missing_file_is_named(db: None, tmp_path: Path) -> None:
    assert import_error(str(tmp_path / "nope.yaml")) == f"{tmp_path / 'nope.yaml'}: cannot read it (No such file or directory)"


# --- pairs not in the file, and the original variables' pair ---------------------------------

def test_pairs_missing_from_the_file_are_left_alone_unless_pruned(world: Any, secrets_in_env: None,
                                                                  tmp_path: Path) -> None:
    data = yaml.safe_load(pairs("export"))
    data["pairs"] = [p for p in data["pairs"] if p["name"] != "reports"]
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    reports_task = ScalingPair.objects.get(name="reports").periodic_task_id

    assert pairs("import", str(path)).splitlines() == [
        'pair "reports": not in the file; left as it is (--prune deletes it)', "No changes."]
    assert ScalingPair.objects.filter(name="reports").exists()

    assert pairs("import", str(path), "--prune").splitlines() == [
        'pair "reports": deleted (not in the file, and --prune)', f"Imported {path}."]
    assert not ScalingPair.objects.filter(name="reports").exists()
    assert not PeriodicTask.objects.filter(pk=reports_task).exists()


def test_the_pair_of_the_original_variables_is_left_to_them(world: Any, secrets_in_env: None, tmp_path: Path) -> None:
    ScalingPair.objects.filter(name="reports").update(managed_by_env=True)
    err = io.StringIO()
    call_command("pairs", "export", "--output", str(tmp_path / "pairs.yaml"), stdout=io.StringIO(), stderr=err)
    data = yaml.safe_load((tmp_path / "pairs.yaml").read_text())
    assert [p["name"] for p in data["pairs"]] == ["billing", "orders"]
    assert "Left out pair 'reports'" in err.getvalue()

    assert pairs("import", str(tmp_path / "pairs.yaml"), "--prune").splitlines() == [
        'pair "reports": made from the original variables; left as it is', "No changes."]

    data["pairs"].append({"name": "reports", "app_name": "reports-app", "heroku_account": "Team A",
                          "aws_account": "prod queues", "queues": [{"queue": "reports", "region": "us-west-2"}]})
    (tmp_path / "pairs.yaml").write_text(yaml.safe_dump(data))
    assert "pair 'reports': is made from the original variables" in import_error(str(tmp_path / "pairs.yaml"))


# --- beat, and the format's coverage -----------------------------------------------------------

def test_import_keeps_beat_in_step_with_each_pair(world: Any, secrets_in_env: None, tmp_path: Path) -> None:
    data = yaml.safe_load(pairs("export"))
    orders = data["pairs"][1]
    orders["interval_seconds"], orders["enabled"] = 120, False
    path = tmp_path / "pairs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))

    pairs("import", str(path))

    task = ScalingPair.objects.select_related("periodic_task__interval").get(name="orders").periodic_task
    assert task is not None and (task.interval.every, task.enabled) == (120, False)


def test_every_setting_an_operator_edits_is_in_the_file_format() -> None:
    # A new field on the pair must be added to the file format (or knowingly left out here).
    runtime = {"paused_until"}
    edited = {f.name for f in ScalingPair._meta.get_fields()
              if getattr(f, "editable", False) and not getattr(f, "auto_created", False) and not f.is_relation}
    assert edited - runtime - {"name"} == set(PAIR_FIELDS)


def test_the_readmes_example_file_imports_as_shown(db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Pairs as code"):]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example is not None
    path = tmp_path / "pairs.yaml"
    path.write_text(example.group(1))
    for name in ("HEROKU_TOKEN_TEAM_A", "AWS_ACCESS_KEY_ID_PROD_QUEUES", "AWS_SECRET_ACCESS_KEY_PROD_QUEUES"):
        monkeypatch.setenv(name, SECRETS.get(name, HEROKU_TOKEN))

    said = pairs("import", str(path))

    assert 'pair "orders": new (orders-app/worker, target_wait, 1–20 dynos)' in said
    assert ScalingPair.objects.get(name="reports").aws_account == AwsAccount.objects.get(use_default_chain=True)
    assert pairs("import", str(path)) == "No changes.\n"


def test_a_laptops_export_leaves_the_sandbox_demo_out_so_it_imports_where_the_sandbox_is_off(
        world: Any, secrets_in_env: None, tmp_path: Path, settings: Any) -> None:
    # The demo an earlier `make run` made, kept (switched off) once real pairs were added.
    demo = ScalingPair.objects.create(name=SANDBOX_DEMO_NAME, provider=ScalingPair.Provider.SANDBOX,
                                      app_name="sandbox-app", **SANDBOX_DEMO_SETTINGS)
    err = io.StringIO()
    path = tmp_path / "pairs.yaml"
    call_command("pairs", "export", "--output", str(path), stdout=io.StringIO(), stderr=err)
    assert [p["name"] for p in yaml.safe_load(path.read_text())["pairs"]] == ["billing", "orders", "reports"]
    assert f"Left out pair {demo.name!r}: it is the laptop's sandbox demo" in err.getvalue()
    # On the laptop itself, --prune leaves the demo where it is.
    assert f'pair "{demo.name}": the sandbox demo; left as it is' in pairs("import", str(path), "--prune")
    assert ScalingPair.objects.filter(pk=demo.pk).exists()
    # In production, with the sandbox off, the same file imports whole.
    settings.SANDBOX_ENABLED = False
    ScalingPair.objects.all().delete()
    assert pairs("import", str(path)).splitlines()[-1] == f"Imported {path}."
    assert sorted(ScalingPair.objects.values_list("name", flat=True)) == ["billing", "orders", "reports"]


def test_a_file_that_cannot_be_written_or_read_is_named_in_one_line(world: Any, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"^--output: cannot write /nonexistent/dir/p.yaml \(No such file"):
        pairs("export", "--output", "/nonexistent/dir/p.yaml")
    with pytest.raises(CommandError, match=r"^--format: yaml into .*p\.json, which import would read as JSON"):
        pairs("export", "--format", "yaml", "--output", str(tmp_path / "p.json"))
    assert not (tmp_path / "p.json").exists()
    binary = tmp_path / "pairs.yaml"
    binary.write_bytes(b"pairs:\n  - name: \xff\xfe\n")
    assert import_error(str(binary)) == (f"{binary}: not a UTF-8 text file (byte 18 cannot be read); a pairs file is "
                                         "YAML or JSON")
