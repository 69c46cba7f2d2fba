"""Secrets encrypted at rest with Fernet (the `cryptography` package).

Keys come from DYNOSCALER_ENCRYPTION_KEYS: comma-separated Fernet keys, the first one
encrypts, all of them decrypt, so a key is rotated by putting a new one first, running
`manage.py rotate_encryption_key`, then dropping the old one. Without the variable a key
is derived from SECRET_KEY (fine on a laptop; set the variable in production so that
changing SECRET_KEY does not make the stored secrets unreadable); with it, that derived
key still decrypts, last, so the secrets saved before the variable was set stay readable
until the rotation re-encrypts them.

A secret that no configured key decrypts (the key was lost or changed) must not take
whole pages down with it: its row loads as usual and holds an ``UnreadableSecret``.
Reading the attribute raises ``SecretUnreadable`` (so a cycle records a clear, permanent
error instead of calling out with a wrong credential); the admin shows "cannot be read:
enter it again"; saving a new value replaces it; saving the row unchanged writes the
stored token back as it was, so putting the lost key back still recovers it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.query_utils import DeferredAttribute

TOKEN_PREFIX = "gAAAAA"  # every Fernet token starts so (version byte + timestamp)
CANNOT_BE_READ = "cannot be read: enter it again"
KEYS_HINT = (
    "it cannot be decrypted with DYNOSCALER_ENCRYPTION_KEYS (or, without it, a key derived from SECRET_KEY): "
    "put the key it was saved with back in the list, or enter the secret again"
)


class SecretUnreadable(ValueError):
    """A stored secret cannot be decrypted with any configured key."""


class UnreadableSecret:
    """What a row holds in place of a secret that no configured key decrypts.

    It keeps the stored token, never a plain text (there is none to keep), so that saving
    the row writes back exactly what was stored."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "<secret that cannot be read>"

    __str__ = __repr__


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def configured_keys() -> tuple[str, ...]:
    """The listed keys (the first encrypts), then the key derived from SECRET_KEY: the one
    that encrypts when none is listed, and that still reads what was saved with it once
    keys are listed, so moving off it is setting the variable and rotating."""
    derived = base64.urlsafe_b64encode(hashlib.sha256(("dynoscaler-fields:" + settings.SECRET_KEY).encode()).digest())
    return tuple(dict.fromkeys([*settings.ENCRYPTION_KEYS, derived.decode()]))


def encrypt(value: str) -> str:
    return _fernet(configured_keys()).encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _decrypted(token, configured_keys())
    except InvalidToken:
        raise SecretUnreadable(f"a stored secret {CANNOT_BE_READ}: {KEYS_HINT}") from None


@lru_cache(maxsize=1024)
def _decrypted(token: str, keys: tuple[str, ...]) -> str:
    """Every cycle loads its accounts: a worker decrypts each stored token once per key set."""
    return _fernet(keys).decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    return _fernet(configured_keys()).rotate(token.encode()).decode()


# While set, reading a secret attribute hands back the UnreadableSecret itself, so that
# Django's own copying (refresh_from_db) can move it from one instance to another.
_raw_secrets: ContextVar[bool] = ContextVar("raw_secrets", default=False)


@contextmanager
def raw_secrets() -> Iterator[None]:
    reset = _raw_secrets.set(True)
    try:
        yield
    finally:
        _raw_secrets.reset(reset)


class _SecretAttribute(DeferredAttribute):
    """The model attribute of an encrypted field: the plain text, or SecretUnreadable."""

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        value = super().__get__(instance, cls)
        if isinstance(value, UnreadableSecret) and not _raw_secrets.get():
            owner = f"{instance._meta.verbose_name} “{instance}”"
            raise SecretUnreadable(f"the {self.field.verbose_name} of the {owner} {CANNOT_BE_READ}: {KEYS_HINT}")
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        # A data descriptor, so that every read goes through __get__ above.
        instance.__dict__[self.field.attname] = value


class EncryptedTextField(models.TextField):
    """A TextField stored as a Fernet token; Python code only ever sees the plain text."""

    descriptor_class = _SecretAttribute

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | UnreadableSecret | None:
        if not value:
            return value
        try:
            return decrypt(value)
        except SecretUnreadable:
            return UnreadableSecret(value)

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, UnreadableSecret):
            return value.token  # kept exactly as stored: the lost key may come back
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(str(value))

    def value_from_object(self, obj: Any) -> Any:
        """The stored value without raising: the plain text or an UnreadableSecret."""
        with raw_secrets():
            return getattr(obj, self.attname)

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        return self.value_from_object(model_instance)


def stored_secret(instance: models.Model, name: str) -> str | UnreadableSecret:
    """A secret field's value as loaded, never raising: the plain text, "" or an UnreadableSecret."""
    return instance._meta.get_field(name).value_from_object(instance) or ""  # type: ignore[union-attr]


class EncryptedSecretsMixin(models.Model):
    """For models with encrypted fields: a row whose secret cannot be read still loads,
    refreshes and validates (with the field named as the problem)."""

    class Meta:
        abstract = True

    def secret_field_names(self) -> list[str]:
        return [f.name for f in self._meta.concrete_fields if isinstance(f, EncryptedTextField)]

    def unreadable_secret_fields(self) -> list[str]:
        return [name for name in self.secret_field_names() if isinstance(stored_secret(self, name), UnreadableSecret)]

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        with raw_secrets():
            super().refresh_from_db(*args, **kwargs)

    def clean_fields(self, exclude: Iterable[str] | None = None) -> None:
        excluded = set(exclude or ())
        unreadable = [name for name in self.unreadable_secret_fields() if name not in excluded]
        errors: dict[str, list[ValidationError]] = {}
        try:
            super().clean_fields(exclude=excluded | set(unreadable))
        except ValidationError as exc:
            errors = exc.error_dict
        for name in unreadable:
            errors[name] = [ValidationError(f"The stored secret {CANNOT_BE_READ}.", code="unreadable")]
        if errors:
            raise ValidationError(errors)
