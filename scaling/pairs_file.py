"""The pairs file of `manage.py pairs export` / `pairs import`: its shape, read and written
without Django, so every problem in a file is found and named before the database is touched.

A file holds Heroku accounts, AWS accounts and pairs. It never holds a secret: an account
names the environment variables that hold its secrets, and import reads them there.
Pair settings use the model's own field names, so an error from the model's validation
names the same field the file does.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any

import yaml

FORMAT_VERSION = 1
FORMATS = ("yaml", "json")

# The settings of a pair, in the order they are written, with the type each takes.
PAIR_FIELDS: dict[str, type] = {
    "provider": str,
    "enabled": bool,
    "dry_run": bool,
    "app_name": str,
    "process_type": str,
    "min_dynos": int,
    "max_dynos": int,
    "interval_seconds": int,
    "manual_hold_seconds": int,
    "policy": str,
    "target_wait_seconds": int,
    "dyno_rate": float,
    "pin_dyno_rate": bool,
    "dyno_concurrency": int,
    "pin_dyno_concurrency": bool,
    "boot_seconds": int,
    "pin_boot_seconds": bool,
    "prewarm": str,
    "scale_down_window_seconds": int,
    "lag_seconds": int,
    "backlog_threshold": float,
    "up_cycles": int,
    "down_cycles": int,
}
PAIR_KEYS = ("name", "heroku_account", "aws_account", *PAIR_FIELDS, "queues", "schedules")
HEROKU_ACCOUNT_KEYS = ("name", "api_token_env")
AWS_ACCOUNT_KEYS = ("name", "use_default_chain", "access_key_id_env", "secret_access_key_env")
QUEUE_KEYS = ("queue", "region")
SCHEDULE_KEYS = ("weekdays", "start_time", "end_time", "timezone", "min_dynos", "max_dynos")
TOP_KEYS = ("version", "heroku_accounts", "aws_accounts", "pairs")

# Capital letters, digits and "_": a variable's name, which no Heroku token or AWS secret looks like.
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$")
_REQUIRED = object()

HEADER = """\
# DynoScaler pairs, for `python manage.py pairs import FILE` (see the README, "Pairs as code").
# No secret is written here: each account names the environment variables that hold its
# secrets, and import reads them there. The names below are suggestions made from each
# account's name; rename them as you like, and set them where you run the import.
# A setting left out of a pair takes its default.
"""


class PairsFileError(ValueError):
    """A problem in a pairs file, one line naming its place (file, pair, field)."""

    def __init__(self, place: str, problem: str) -> None:
        self.place = place
        self.problem = problem
        super().__init__(f"{place}: {problem}")


@dataclass(frozen=True)
class HerokuAccountSpec:
    name: str
    api_token_env: str


@dataclass(frozen=True)
class AwsAccountSpec:
    name: str
    use_default_chain: bool = False
    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None


@dataclass(frozen=True)
class QueueSpec:
    queue: str
    region: str

    def describe(self) -> str:
        return f"{self.queue} ({self.region})"


@dataclass(frozen=True)
class ScheduleSpec:
    weekdays: str
    start_time: time
    end_time: time
    timezone: str
    min_dynos: int
    max_dynos: int

    def describe(self) -> str:
        return (f"days {self.weekdays} {format_time(self.start_time)}–{format_time(self.end_time)} {self.timezone}: "
                f"min {self.min_dynos}, max {self.max_dynos}")


@dataclass(frozen=True)
class PairSpec:
    name: str
    heroku_account: str | None = None
    aws_account: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)  # only those the file gives
    queues: tuple[QueueSpec, ...] = ()
    schedules: tuple[ScheduleSpec, ...] = ()


@dataclass(frozen=True)
class PairsFile:
    heroku_accounts: tuple[HerokuAccountSpec, ...] = ()
    aws_accounts: tuple[AwsAccountSpec, ...] = ()
    pairs: tuple[PairSpec, ...] = ()


def format_time(value: time) -> str:
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


def suggest_env_name(prefix: str, account_name: str, taken: set[str]) -> str:
    """A variable name made from an account's name, e.g. HEROKU_TOKEN_TEAM_A, not yet in ``taken``."""
    ascii_name = unicodedata.normalize("NFKD", account_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Z0-9]+", "_", ascii_name.upper()).strip("_")[:80] or "ACCOUNT"
    name, n = f"{prefix}_{slug}", 1
    while name in taken:
        n += 1
        name = f"{prefix}_{slug}_{n}"
    taken.add(name)
    return name


# --- writing ----------------------------------------------------------------------------


def dump(pairs_file: PairsFile, fmt: str) -> str:
    data = {
        "version": FORMAT_VERSION,
        "heroku_accounts": [{"name": a.name, "api_token_env": a.api_token_env} for a in pairs_file.heroku_accounts],
        "aws_accounts": [_aws_account_data(a) for a in pairs_file.aws_accounts],
        "pairs": [_pair_data(p) for p in pairs_file.pairs],
    }
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return HEADER + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False,
                              width=120)


class _Quoted(str):
    """Written in quotes: YAML 1.1 reads an unquoted 18:00 as a number, so every time is quoted alike."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Quoted, lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", str(value),
                                                                                style='"'))


def _aws_account_data(account: AwsAccountSpec) -> dict[str, Any]:
    if account.use_default_chain:
        return {"name": account.name, "use_default_chain": True}
    return {"name": account.name, "access_key_id_env": account.access_key_id_env,
            "secret_access_key_env": account.secret_access_key_env}


def _pair_data(pair: PairSpec) -> dict[str, Any]:
    return {
        "name": pair.name,
        "heroku_account": pair.heroku_account,
        "aws_account": pair.aws_account,
        **{name: pair.settings[name] for name in PAIR_FIELDS if name in pair.settings},
        "queues": [{"queue": q.queue, "region": q.region} for q in pair.queues],
        "schedules": [
            {"weekdays": s.weekdays, "start_time": _Quoted(format_time(s.start_time)),
             "end_time": _Quoted(format_time(s.end_time)),
             "timezone": s.timezone, "min_dynos": s.min_dynos, "max_dynos": s.max_dynos}
            for s in pair.schedules
        ],
    }


# --- reading ----------------------------------------------------------------------------


def format_of(path: str) -> str:
    return "json" if path.lower().endswith(".json") else "yaml"


def load(text: str, *, source: str, fmt: str) -> PairsFile:
    """Read a pairs file; raise PairsFileError naming the first problem's place."""
    return _Reader(source).read(_parse(text, source=source, fmt=fmt))


def _parse(text: str, *, source: str, fmt: str) -> Any:
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise PairsFileError(f"{source}, line {exc.lineno}", f"not valid JSON: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = f", line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise PairsFileError(f"{source}{line}", f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise PairsFileError(source, f"not valid YAML: {exc}") from None


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def read(self, data: Any) -> PairsFile:
        top = self.mapping(data, self.source, TOP_KEYS, what="the file")
        if top.get("version") != FORMAT_VERSION:
            raise PairsFileError(f"{self.source}: field version",
                                 f"expected {FORMAT_VERSION} (the format this DynoScaler reads), got {top.get('version')!r}")
        heroku = tuple(self.heroku_account(raw, i) for i, raw in enumerate(self.items(top, "heroku_accounts"), 1))
        aws = tuple(self.aws_account(raw, i) for i, raw in enumerate(self.items(top, "aws_accounts"), 1))
        pairs = tuple(self.pair(raw, i) for i, raw in enumerate(self.items(top, "pairs"), 1))
        for kind, names in (("Heroku account", [a.name for a in heroku]), ("AWS account", [a.name for a in aws]),
                            ("pair", [p.name for p in pairs])):
            twice = _first_repeat(names)
            if twice is not None:
                raise PairsFileError(f"{self.source}: {kind} {twice!r}", f"named twice; each {kind} needs its own name")
        return PairsFile(heroku, aws, pairs)

    def items(self, top: Mapping[str, Any], key: str) -> list[Any]:
        value = top.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise PairsFileError(f"{self.source}: field {key}", f"expected a list, got {_kind(value)}")
        return value

    def mapping(self, value: Any, place: str, keys: Iterable[str], *, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise PairsFileError(place, f"expected {what} as a mapping of field: value, got {_kind(value)}")
        known = list(keys)
        for key in value:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(known)}"
                raise PairsFileError(f"{place}, field {key}", f"unknown field{hint}")
        return value

    def name(self, raw: Any, kind: str, index: int, keys: Iterable[str]) -> tuple[str, dict[str, Any], str]:
        """The entry's name, its fields, and its place in messages (by name once it has one)."""
        place = f"{self.source}: {kind} {index}"
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str) and name.strip():
            place = f"{self.source}: {kind} {name!r}"
        data = self.mapping(raw, place, keys, what=f"a {kind}")
        if not isinstance(name, str) or not name.strip():
            raise PairsFileError(f"{place}, field name", "required: a non-empty text")
        return name, data, place

    def env_name(self, data: Mapping[str, Any], key: str, place: str) -> str:
        value = data.get(key)
        # The value is never echoed: someone may have pasted the secret itself here.
        if not isinstance(value, str) or not ENV_NAME.match(value):
            raise PairsFileError(f"{place}, field {key}", "must name an environment variable (capital letters, digits "
                                 "and _, e.g. HEROKU_TOKEN_TEAM_A), never hold the secret itself")
        return value

    def heroku_account(self, raw: Any, index: int) -> HerokuAccountSpec:
        name, data, place = self.name(raw, "Heroku account", index, HEROKU_ACCOUNT_KEYS)
        return HerokuAccountSpec(name, self.env_name(data, "api_token_env", place))

    def aws_account(self, raw: Any, index: int) -> AwsAccountSpec:
        name, data, place = self.name(raw, "AWS account", index, AWS_ACCOUNT_KEYS)
        default_chain = self.typed(data, "use_default_chain", bool, place, default=False)
        if default_chain:
            for key in ("access_key_id_env", "secret_access_key_env"):
                if data.get(key) is not None:
                    raise PairsFileError(f"{place}, field {key}", "leave it out when use_default_chain is true")
            return AwsAccountSpec(name, use_default_chain=True)
        return AwsAccountSpec(name, False, self.env_name(data, "access_key_id_env", place),
                              self.env_name(data, "secret_access_key_env", place))

    def pair(self, raw: Any, index: int) -> PairSpec:
        name, data, place = self.name(raw, "pair", index, PAIR_KEYS)
        settings = {key: self.typed(data, key, kind, place) for key, kind in PAIR_FIELDS.items() if key in data}
        accounts = [self.typed(data, key, str, place, default=None) for key in ("heroku_account", "aws_account")]
        queues = tuple(self.queue(q, f"{place}, queue {i}") for i, q in enumerate(self.items_of(data, "queues", place), 1))
        twice = _first_repeat(queues)
        if twice is not None:
            raise PairsFileError(f"{place}, queues", f"{twice.describe()} is listed twice")
        schedules = tuple(self.schedule(s, f"{place}, schedule {i}")
                          for i, s in enumerate(self.items_of(data, "schedules", place), 1))
        return PairSpec(name, accounts[0], accounts[1], settings, queues, schedules)

    def items_of(self, data: Mapping[str, Any], key: str, place: str) -> list[Any]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise PairsFileError(f"{place}, field {key}", f"expected a list, got {_kind(value)}")
        return value

    def queue(self, raw: Any, place: str) -> QueueSpec:
        data = self.mapping(raw, place, QUEUE_KEYS, what="a queue")
        return QueueSpec(self.typed(data, "queue", str, place), self.typed(data, "region", str, place))

    def schedule(self, raw: Any, place: str) -> ScheduleSpec:
        data = self.mapping(raw, place, SCHEDULE_KEYS, what="a schedule")
        return ScheduleSpec(
            weekdays=self.weekdays(data, place),
            start_time=self.time(data, "start_time", place),
            end_time=self.time(data, "end_time", place),
            timezone=self.typed(data, "timezone", str, place, default="UTC"),
            min_dynos=self.typed(data, "min_dynos", int, place),
            max_dynos=self.typed(data, "max_dynos", int, place),
        )

    def weekdays(self, data: Mapping[str, Any], place: str) -> str:
        """ "0,1,2,3,4" as written by export; a lone day (5) or a list ([5, 6]) reads the same."""
        value = data.get("weekdays")
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, list) and value and all(isinstance(d, int) and not isinstance(d, bool) for d in value):
            return ",".join(str(d) for d in value)
        return str(self.typed(data, "weekdays", str, place))

    def time(self, data: Mapping[str, Any], key: str, place: str) -> time:
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            # YAML 1.1 reads an unquoted 18:00 as the number 1080 (base 60).
            raise PairsFileError(f"{place}, field {key}", f'expected a time such as "18:00" in quotes; unquoted, YAML '
                                 f"read it as the number {value}")
        if not isinstance(value, str) or not _TIME.match(value):
            raise PairsFileError(f"{place}, field {key}", f'expected a time such as "08:00" (HH:MM), got {value!r}')
        return time.fromisoformat(value)

    def typed(self, data: Mapping[str, Any], key: str, kind: type, place: str, default: Any = _REQUIRED) -> Any:
        if data.get(key) is None:
            if default is _REQUIRED:
                raise PairsFileError(f"{place}, field {key}", "required")
            return default
        value = data[key]
        ok = (isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))) or (
            kind is float and isinstance(value, int) and not isinstance(value, bool)
        )
        if key == "prewarm" and isinstance(value, bool):
            # YAML 1.1 reads an unquoted on / off as true / false.
            raise PairsFileError(f"{place}, field {key}", "expected one of on, shadow, off in quotes (\"off\"); "
                                 f"unquoted, YAML read it as {str(value).lower()}")
        if not ok:
            expected = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}[kind]
            raise PairsFileError(f"{place}, field {key}", f"expected {expected}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise PairsFileError(f"{place}, field {key}", f"expected a finite number, got {value!r}")
        return float(value) if kind is float else value


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", type(None): "nothing"}.get(type(value), type(value).__name__)


def _first_repeat(values: Iterable[Any]) -> Any:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None
