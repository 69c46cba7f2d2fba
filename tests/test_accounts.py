"""Accounts as the operator meets them: named uniquely (pairs and the pairs file name them by
description), with the original variables' account never colliding with one made in the
admin, and older databases with duplicate names brought in line by the migration."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from scaling.legacy_env import legacy_pair_sync_at_start
from scaling.models import AwsAccount, HerokuAccount, ScalingPair
from scaling.services.pairs_as_code import pairs_export
from tests.conftest import AWS_KEY, AWS_SECRET, HEROKU_TOKEN
from tests.test_commands_without_config import manage
from tests.test_legacy_env import LEGACY_ENV


def field_errors(html: str, field: str) -> str:
    """The text of the errors the admin shows on one field's row."""
    row = re.search(rf'<div class="form-row[^"]*errors[^"]*field-{field}[^"]*">(.*?)</div>', html, re.S)
    return re.sub(r"<[^>]+>", " ", row.group(1)) if row else ""


@pytest.mark.django_db
def test_a_second_account_of_the_same_description_is_refused_on_its_field(admin_client: Any) -> None:
    HerokuAccount.objects.create(description="production", api_token=HEROKU_TOKEN)
    page = admin_client.post("/admin/scaling/herokuaccount/add/",
                             {"description": "production", "api_token": "hk-other-token-9876543210"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Another Heroku account already has this description" in field_errors(html, "description")
    assert HerokuAccount.objects.count() == 1
    assert "hk-other-token-9876543210" not in html

    AwsAccount.objects.create(description="queues", access_key_id=AWS_KEY, secret_access_key=AWS_SECRET)
    page = admin_client.post("/admin/scaling/awsaccount/add/",
                             {"description": "queues", "access_key_id": AWS_KEY, "secret_access_key": AWS_SECRET})
    assert "Another AWS account already has this description" in field_errors(page.content.decode(), "description")
    assert AwsAccount.objects.count() == 1


@pytest.mark.django_db
def test_the_original_variables_account_steps_aside_from_an_admin_accounts_name() -> None:
    mine = HerokuAccount.objects.create(description=LEGACY_ENV["MY_HEROKU_AUTH_DES"], api_token=HEROKU_TOKEN)
    AwsAccount.objects.create(description="from AWS_KEY / AWS_SECRET", use_default_chain=True)
    assert legacy_pair_sync_at_start(LEGACY_ENV) is True
    pair = ScalingPair.objects.get(managed_by_env=True)
    assert pair.heroku_account is not None and pair.heroku_account != mine
    assert pair.heroku_account.description == "dynoscaler (from the environment)"
    assert pair.aws_account is not None and pair.aws_account.description == "from AWS_KEY / AWS_SECRET (from the environment)"
    mine.refresh_from_db()
    assert mine.description == "dynoscaler" and mine.api_token == HEROKU_TOKEN
    # A restart keeps the names it chose, and pairs as code can tell all four apart.
    assert legacy_pair_sync_at_start(LEGACY_ENV) is True
    assert HerokuAccount.objects.count() == 2 and AwsAccount.objects.count() == 2
    spec, left_out = pairs_export()
    assert [a.name for a in spec.heroku_accounts] == ["dynoscaler"]
    assert [name for name, _ in left_out] == [pair.name]


def test_the_upgrade_renames_duplicate_descriptions_and_says_so(tmp_path: Path) -> None:
    laptop = {"DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    assert manage("migrate", "scaling", "0007", **laptop).returncode == 0
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:  # as an older DynoScaler left it
        for when in ("2026-01-01", "2026-02-01", "2026-03-01"):
            db.execute("INSERT INTO scaling_herokuaccount (description, api_token, managed_by_env, created_at, "
                       "updated_at) VALUES ('production', 'stored', 0, ?, ?)", (when, when))
        db.execute("INSERT INTO scaling_herokuaccount (description, api_token, managed_by_env, created_at, "
                   "updated_at) VALUES ('production (2)', 'stored', 0, '2026-04-01', '2026-04-01')")
    done = manage("migrate", **laptop)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "heroku account #2: renamed 'production' to 'production (3)'" in out.lower()
    assert "heroku account #3: renamed 'production' to 'production (4)'" in out.lower()
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        names = db.execute("SELECT id, description FROM scaling_herokuaccount ORDER BY id").fetchall()
    assert names == [(1, "production"), (2, "production (3)"), (3, "production (4)"), (4, "production (2)")]


@pytest.mark.django_db
def test_a_typed_secret_that_was_not_saved_asks_to_be_typed_again(admin_client: Any) -> None:
    HerokuAccount.objects.create(description="production", api_token=HEROKU_TOKEN)
    new_token = "hk-new-token-0123456789abcdef"
    page = admin_client.post("/admin/scaling/herokuaccount/add/", {"description": "production", "api_token": new_token})
    html = page.content.decode()
    assert "Type it again: it was not saved" in field_errors(html, "api_token")
    assert new_token not in html

    account = HerokuAccount.objects.get()
    page = admin_client.post(f"/admin/scaling/herokuaccount/{account.pk}/change/",
                             {"description": "", "api_token": new_token})
    assert "Type it again: it was not saved" in field_errors(page.content.decode(), "api_token")
    account.refresh_from_db()
    assert account.api_token == HEROKU_TOKEN and account.description == "production"

    # Nothing typed, nothing to retype: only the real problem is shown.
    page = admin_client.post(f"/admin/scaling/herokuaccount/{account.pk}/change/", {"description": "", "api_token": ""})
    assert field_errors(page.content.decode(), "api_token") == ""


@pytest.mark.django_db
@pytest.mark.parametrize("pasted", ["hk-token 0123456789abcdef", "hk-token-0123\n456789abcdef"])
def test_a_secret_pasted_with_a_space_or_break_inside_is_refused_without_quoting_it(admin_client: Any,
                                                                                      pasted: str) -> None:
    page = admin_client.post("/admin/scaling/herokuaccount/add/", {"description": "production", "api_token": pasted})
    errors = field_errors(page.content.decode(), "api_token")
    assert "A Heroku API token has no spaces or line breaks inside" in errors
    assert "0123" not in page.content.decode() and not HerokuAccount.objects.exists()
    page = admin_client.post("/admin/scaling/awsaccount/add/",
                             {"description": "queues", "access_key_id": AWS_KEY, "secret_access_key": pasted})
    assert "A secret access key has no spaces" in field_errors(page.content.decode(), "secret_access_key")
    assert not AwsAccount.objects.exists()


def test_the_original_variables_refuse_a_token_with_a_space_naming_it() -> None:
    from dynoscaler_site.env import EnvError
    from scaling.legacy_env import legacy_config_from_env

    with pytest.raises(EnvError) as caught:
        legacy_config_from_env({**LEGACY_ENV, "MY_HEROKU_AUTH_TOKEN": "hk-token 0123456789abcdef"})
    assert str(caught.value) == ("MY_HEROKU_AUTH_TOKEN: a Heroku API token has no spaces or line breaks inside; "
                                 "paste it again, whole")
    with pytest.raises(EnvError, match="^AWS_SECRET: a secret access key has no spaces"):
        legacy_config_from_env({**LEGACY_ENV, "AWS_SECRET": "wJalrXUtnFEMI K7MDENG"})


@pytest.mark.django_db
def test_the_pair_form_names_the_accounts_as_operators_know_them(admin_client: Any) -> None:
    html = admin_client.get("/admin/scaling/scalingpair/add/").content.decode()
    labels = dict(re.findall(r'<label[^>]*for="id_(heroku_account|aws_account)"[^>]*>([^<]+)</label>', html))
    assert labels == {"heroku_account": "Heroku account:", "aws_account": "AWS account:"}
