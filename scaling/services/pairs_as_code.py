"""Pairs as code, the service behind `manage.py pairs`: export the pairs and their accounts
as a ``PairsFile`` (secrets only as the names of environment variables), and import one
so the database matches it, all in one transaction, doing nothing the second time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models, transaction

from scaling.fields import SecretUnreadable
from scaling.models import AwsAccount, HerokuAccount, PairQueue, PairSchedule, ScalingPair
from scaling.pairs_file import (
    PAIR_FIELDS,
    AwsAccountSpec,
    HerokuAccountSpec,
    PairsFile,
    PairSpec,
    QueueSpec,
    ScheduleSpec,
    suggest_env_name,
)
from scaling.schedules import first_overlap
from scaling.services.controls import CycleAsked, pair_first_cycle
from scaling.services.pairs import is_sandbox_demo, pair_apply_settings, pair_delete

# The file's names for model fields where they differ, so errors name what the file says.
FILE_NAMES = {"description": "name", "api_token": "api_token_env", "access_key_id": "access_key_id_env",
              "secret_access_key": "secret_access_key_env"}
REPOINTING = frozenset({"app_name", "process_type", "provider"})


# --- export -------------------------------------------------------------------------------


ENV_PAIR = "the original variables (MY_HEROKU_*, AWS_SQS_*) describe it"
DEMO_PAIR = "it is the laptop's sandbox demo, which DynoScaler makes itself wherever the sandbox is on"


def pairs_export() -> tuple[PairsFile, list[tuple[str, str]]]:
    """Every pair and account as a PairsFile, and the pairs left out, each with why: those
    the original variables describe, and the sandbox demo (a file made on a laptop must
    import where the sandbox is off). Secrets are not even read: only their variables' names."""
    taken: set[str] = set()
    # Pairs name their accounts by description, which is unique.
    heroku_names = dict(HerokuAccount.objects.values_list("id", "description"))
    aws_names = dict(AwsAccount.objects.values_list("id", "description"))
    heroku = [
        HerokuAccountSpec(description, suggest_env_name("HEROKU_TOKEN", description, taken))
        for description in HerokuAccount.objects.filter(managed_by_env=False).order_by("description")
        .values_list("description", flat=True)
    ]
    aws = [
        AwsAccountSpec(description, True) if default_chain else AwsAccountSpec(
            description, False, suggest_env_name("AWS_ACCESS_KEY_ID", description, taken),
            suggest_env_name("AWS_SECRET_ACCESS_KEY", description, taken))
        for description, default_chain in AwsAccount.objects.filter(managed_by_env=False).order_by("description")
        .values_list("description", "use_default_chain")
    ]
    pairs = []
    left_out: list[tuple[str, str]] = []
    for pair in ScalingPair.objects.order_by("name").prefetch_related("queues", "schedules"):
        if pair.managed_by_env or is_sandbox_demo(pair):
            left_out.append((pair.name, ENV_PAIR if pair.managed_by_env else DEMO_PAIR))
            continue
        pairs.append(PairSpec(
            name=pair.name,
            heroku_account=heroku_names.get(pair.heroku_account_id) if pair.heroku_account_id else None,
            aws_account=aws_names.get(pair.aws_account_id) if pair.aws_account_id else None,
            settings={name: getattr(pair, name) for name in PAIR_FIELDS},
            queues=tuple(sorted((QueueSpec(q.queue, q.region) for q in pair.queues.all()),
                                key=lambda q: (q.queue, q.region))),
            schedules=tuple(sorted((_schedule_spec(s) for s in pair.schedules.all()), key=_schedule_key)),
        ))
    return PairsFile(tuple(heroku), tuple(aws), tuple(pairs)), left_out


def _schedule_spec(schedule: PairSchedule) -> ScheduleSpec:
    return ScheduleSpec(schedule.weekdays, schedule.start_time, schedule.end_time, schedule.timezone,
                        schedule.min_dynos, schedule.max_dynos)


def _schedule_key(s: ScheduleSpec) -> tuple[Any, ...]:
    return (s.weekdays, s.start_time, s.end_time, s.timezone, s.min_dynos, s.max_dynos)


# --- import -------------------------------------------------------------------------------


@dataclass
class ImportReport:
    changes: list[str] = field(default_factory=list)  # what was (or, in a dry run, would be) done
    notes: list[str] = field(default_factory=list)  # what was left alone, and why
    errors: list[str] = field(default_factory=list)  # one line each, naming file, account or pair, and field


def pairs_import(spec: PairsFile, *, source: str, env: Mapping[str, str], dry_run: bool = False,
                 prune: bool = False) -> ImportReport:
    """Make the database match ``spec``. All or nothing: one transaction, rolled back when any
    account or pair is invalid, and in a dry run (so that a dry run reports exactly what the
    import would do, validation included)."""
    importer = _Importer(spec, source=source, env=env, prune=prune)
    with transaction.atomic():
        importer.run()
        if importer.report.errors or dry_run:
            transaction.set_rollback(True)
    return importer.report


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Importer:
    def __init__(self, spec: PairsFile, *, source: str, env: Mapping[str, str], prune: bool) -> None:
        self.spec = spec
        self.source = source
        self.env = env
        self.prune = prune
        self.report = ImportReport()
        self.failed_accounts: set[tuple[str, str]] = set()

    def error(self, place: str, problem: str) -> None:
        self.report.errors.append(f"{place}: {problem}")

    def account_failed(self, kind: str, name: str) -> None:
        # Its own error is reported; the pairs that name it need not say so again.
        self.failed_accounts.add((kind, name))

    def run(self) -> None:
        for account in self.spec.heroku_accounts:
            self.heroku_account(account)
        for aws in self.spec.aws_accounts:
            self.aws_account(aws)
        self.heroku_ids = self.ids_by_name(HerokuAccount)
        self.aws_ids = self.ids_by_name(AwsAccount)
        self.prune_or_note_the_rest()
        for pair in self.spec.pairs:
            self.pair(pair)

    # accounts

    def secret(self, variable: str, place: str, key: str) -> str | None:
        value = self.env.get(variable, "").strip()
        if not value:
            self.error(f"{place}, field {key}", f"environment variable {variable} is not set; set it to the secret "
                       "where you run the import")
            return None
        return value

    def existing_account(self, model: type[HerokuAccount] | type[AwsAccount], name: str, place: str, variables: str) -> Any:
        """The account of that name, a new one, or None (after an error) when it must not be touched."""
        secret = "api_token" if model is HerokuAccount else "secret_access_key"
        # Deferred: a secret is read (decrypted) only to compare it with the file's.
        found: HerokuAccount | AwsAccount | None = model.objects.filter(description=name).defer(secret).first()
        if found is not None and found.managed_by_env:
            self.error(place, f"is made from the original variables ({variables}); leave it out of the file "
                       "(pairs may still name it)")
            return None
        return found if found is not None else model(description=name)

    def heroku_account(self, spec: HerokuAccountSpec) -> None:
        place = f"{self.source}: Heroku account {spec.name!r}"
        token = self.secret(spec.api_token_env, place, "api_token_env")
        account = self.existing_account(HerokuAccount, spec.name, place, "MY_HEROKU_AUTH_TOKEN")
        if token is None or account is None:
            self.account_failed("Heroku", spec.name)
            return
        new = account.pk is None
        if not new and _stored(account, "api_token") == token:
            return
        account.api_token = token
        if not self.valid(account, place):
            self.account_failed("Heroku", spec.name)
            return
        account.save()
        what = "new" if new else "token changed"
        self.report.changes.append(f'Heroku account "{spec.name}": {what} (token from {spec.api_token_env})')

    def aws_account(self, spec: AwsAccountSpec) -> None:
        place = f"{self.source}: AWS account {spec.name!r}"
        key_id: str | None = ""
        secret: str | None = ""
        if not spec.use_default_chain:
            assert spec.access_key_id_env and spec.secret_access_key_env  # the reader sees to it
            key_id = self.secret(spec.access_key_id_env, place, "access_key_id_env")
            secret = self.secret(spec.secret_access_key_env, place, "secret_access_key_env")
        account = self.existing_account(AwsAccount, spec.name, place, "AWS_KEY, AWS_SECRET")
        if key_id is None or secret is None or account is None:
            self.account_failed("AWS", spec.name)
            return
        new = account.pk is None
        unchanged = (account.use_default_chain, account.access_key_id) == (spec.use_default_chain, key_id) and (
            _stored(account, "secret_access_key") == secret)
        if not new and unchanged:
            return
        account.use_default_chain, account.access_key_id, account.secret_access_key = spec.use_default_chain, key_id, secret
        if not self.valid(account, place):
            self.account_failed("AWS", spec.name)
            return
        account.save()
        how = ("the default credential chain" if spec.use_default_chain
               else f"keys from {spec.access_key_id_env}, {spec.secret_access_key_env}")
        self.report.changes.append(f'AWS account "{spec.name}": {"new" if new else "changed"} ({how})')

    def ids_by_name(self, model: type[HerokuAccount] | type[AwsAccount]) -> dict[str, list[int]]:
        ids: dict[str, list[int]] = {}
        for pk, name in model.objects.values_list("id", "description"):
            ids.setdefault(name, []).append(pk)
        return ids

    def account_id(self, name: str | None, kind: str, place: str) -> tuple[bool, int | None]:
        """(found, id) of the account a pair names; (True, None) when it names none."""
        if name is None:
            return True, None
        if (kind, name) in self.failed_accounts:
            return False, None
        found = (self.heroku_ids if kind == "Heroku" else self.aws_ids).get(name, [])
        if len(found) == 1:
            return True, found[0]
        self.error(place, f"no {kind} account named {name!r} in the file or the database" if not found else
                   f"several {kind} accounts are named {name!r}; rename them in the admin first")
        return False, None

    # pairs

    def prune_or_note_the_rest(self) -> None:
        in_file = {p.name for p in self.spec.pairs}
        for pair in ScalingPair.objects.exclude(name__in=in_file).order_by("name"):
            if pair.managed_by_env:
                self.report.notes.append(f'pair "{pair.name}": made from the original variables; left as it is')
            elif is_sandbox_demo(pair):
                self.report.notes.append(f'pair "{pair.name}": the sandbox demo; left as it is')
            elif self.prune:
                pair_delete(pair=pair)
                self.report.changes.append(f'pair "{pair.name}": deleted (not in the file, and --prune)')
            else:
                self.report.notes.append(f'pair "{pair.name}": not in the file; left as it is (--prune deletes it)')

    def pair(self, spec: PairSpec) -> None:
        place = f"{self.source}: pair {spec.name!r}"
        found = ScalingPair.objects.filter(name=spec.name).prefetch_related("queues", "schedules").first()
        if found is not None and found.managed_by_env:
            self.error(place, "is made from the original variables (MY_HEROKU_AS_APP, AWS_SQS_NAME, …); change "
                       "those, or leave it out of the file")
            return
        heroku_ok, heroku_id = self.account_id(spec.heroku_account, "Heroku", f"{place}, field heroku_account")
        aws_ok, aws_id = self.account_id(spec.aws_account, "AWS", f"{place}, field aws_account")
        # An unknown account is one problem among the pair's others: every one is said at once.
        unknown = [name for name, ok in (("heroku_account", heroku_ok), ("aws_account", aws_ok)) if not ok]
        pair = found or ScalingPair(name=spec.name)
        before = self.values(pair) if found else {}
        for name in PAIR_FIELDS:
            setattr(pair, name, spec.settings[name] if name in spec.settings else _default(name))
        pair.heroku_account_id, pair.aws_account_id = heroku_id, aws_id
        valid = self.valid(pair, place, exclude=unknown) and not unknown
        valid = self.queues_valid(spec, pair, place) and valid
        valid = self.schedules_valid(spec, place) and valid
        if not valid:
            return
        after = self.values(pair)
        changed = [name for name in after if found and before[name] != after[name]]
        if found is None:
            pair.save()
        elif changed:
            pair.save(update_fields=[*changed, "updated_at"])
        lines = [f"  {name}: {_show(before[name])} → {_show(after[name])}" for name in changed]
        queue_lines = self.sync_queues(pair, spec, fresh=found is None)
        lines += queue_lines + self.sync_schedules(pair, spec, fresh=found is None)
        if found is None:
            self.report.changes.append(f'pair "{pair.name}": new ({pair.app_name}/{pair.process_type}, {pair.policy}, '
                                       f"{pair.min_dynos}–{pair.max_dynos} dynos)")
        elif lines:
            self.report.changes.append(f'pair "{pair.name}": changed')
        else:
            return
        self.report.changes.extend(lines)
        # Beat follows the pair, and a quantity Heroku refused is asked again, as after an admin edit.
        # Another app, process type or provider, or other queues: what was learned is about
        # something else, as the admin says.
        pair_apply_settings(pair=pair, repointed=bool(REPOINTING & set(changed)) or bool(found and queue_lines))
        if found is None:  # its first cycle now, once the import is committed (never in a dry run)
            pair_first_cycle(pair=pair, then=lambda asked: self.report.notes.append(_first_cycle_note(pair, asked)))

    def values(self, pair: ScalingPair) -> dict[str, Any]:
        """The pair's settings as the file writes them, accounts by name."""
        heroku = {i: n for n, ids in self.heroku_ids.items() for i in ids}
        aws = {i: n for n, ids in self.aws_ids.items() for i in ids}
        return {
            "heroku_account": heroku.get(pair.heroku_account_id) if pair.heroku_account_id else None,
            "aws_account": aws.get(pair.aws_account_id) if pair.aws_account_id else None,
            **{name: getattr(pair, name) for name in PAIR_FIELDS},
        }

    def queues_valid(self, spec: PairSpec, pair: ScalingPair, place: str) -> bool:
        ok = all([self.valid(PairQueue(queue=q.queue, region=q.region), f"{place}, queue {i}", exclude=["pair"])
                  for i, q in enumerate(spec.queues, 1)])
        if not spec.queues and pair.provider == ScalingPair.Provider.HEROKU:
            self.error(f"{place}, field queues", "a Heroku + SQS pair needs at least one queue")
            return False
        if spec.queues and pair.provider == ScalingPair.Provider.SANDBOX:
            self.error(f"{place}, field queues", "a sandbox pair reads no queue (its queue is simulated): leave it out")
            return False
        return ok

    def schedules_valid(self, spec: PairSpec, place: str) -> bool:
        rows = [_schedule_row(s) for s in spec.schedules]
        if not all([self.valid(row, f"{place}, schedule {i}", exclude=["pair"]) for i, row in enumerate(rows, 1)]):
            return False
        overlap = first_overlap([row.as_window() for row in rows])
        if overlap is not None:
            self.error(f"{place}, field schedules", f"windows overlap: {overlap[0].describe()} and "
                       f"{overlap[1].describe()}; make them disjoint")
            return False
        return True

    def sync_queues(self, pair: ScalingPair, spec: PairSpec, *, fresh: bool) -> list[str]:
        current = {} if fresh else {QueueSpec(q.queue, q.region): q for q in pair.queues.all()}
        wanted = set(spec.queues)
        lines = []
        for queue in sorted(wanted - set(current), key=lambda q: (q.queue, q.region)):
            PairQueue.objects.create(pair=pair, queue=queue.queue, region=queue.region)
            lines.append(f"  + queue {queue.describe()}")
        for queue in sorted(set(current) - wanted, key=lambda q: (q.queue, q.region)):
            current[queue].delete()
            lines.append(f"  - queue {queue.describe()}")
        return lines

    def sync_schedules(self, pair: ScalingPair, spec: PairSpec, *, fresh: bool) -> list[str]:
        current = {} if fresh else {_schedule_spec(s): s for s in pair.schedules.all()}
        wanted = set(spec.schedules)
        lines = []
        for schedule in sorted(wanted - set(current), key=_schedule_key):
            row = _schedule_row(schedule)
            row.pair = pair
            row.save()
            lines.append(f"  + schedule {schedule.describe()}")
        for schedule in sorted(set(current) - wanted, key=_schedule_key):
            current[schedule].delete()
            lines.append(f"  - schedule {schedule.describe()}")
        return lines

    def valid(self, obj: models.Model, place: str, *, exclude: list[str] | None = None) -> bool:
        try:
            obj.full_clean(exclude=exclude)
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                if name in (exclude or ()):
                    continue  # already said, in the file's own terms (an unknown account's name)
                where = place if name == NON_FIELD_ERRORS else f"{place}, field {FILE_NAMES.get(name, name)}"
                for message in messages:
                    self.error(where, message)
            return False
        return True


def _first_cycle_note(pair: ScalingPair, asked: CycleAsked) -> str:
    if asked.queued:
        return f'pair "{pair.name}": its first cycle is queued for a worker'
    if asked.decision is None:
        return f'pair "{pair.name}": its first cycle did not run (the task queue is unreachable); beat runs it'
    return (f'pair "{pair.name}": its first cycle ran here (the task queue is unreachable): '
            f"{asked.decision.get_outcome_display()}")


def _stored(account: models.Model, name: str) -> str | None:
    """A stored secret, or None if it cannot be decrypted (then the file's value replaces it)."""
    try:
        return str(getattr(account, name))
    except SecretUnreadable:
        return None


def _default(name: str) -> Any:
    model_field = ScalingPair._meta.get_field(name)
    assert isinstance(model_field, models.Field)
    return model_field.get_default()


def _schedule_row(spec: ScheduleSpec) -> PairSchedule:
    return PairSchedule(weekdays=spec.weekdays, start_time=spec.start_time, end_time=spec.end_time,
                        timezone=spec.timezone, min_dynos=spec.min_dynos, max_dynos=spec.max_dynos)

