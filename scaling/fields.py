"""Secrets encrypted at rest with Fernet (the `cryptography` package).

Keys come from DYNOSCALER_ENCRYPTION_KEYS: comma-separated Fernet keys, the first one
encrypts, all of them decrypt, so a key is rotated by putting a new one first, running
`manage.py rotate_encryption_key`, then dropping the old one. Without the variable a key
is derived from SECRET_KEY (fine on a laptop; set the variable in production so that
changing SECRET_KEY does not make the stored secrets unreadable).
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

TOKEN_PREFIX = "gAAAAA"  # every Fernet token starts so (version byte + timestamp)


class SecretUnreadable(ValueError):
    """A stored secret cannot be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode()) for k in keys])


def configured_keys() -> tuple[str, ...]:
    keys = tuple(settings.ENCRYPTION_KEYS)
    if keys:
        return keys
    derived = base64.urlsafe_b64encode(hashlib.sha256(("dynoscaler-fields:" + settings.SECRET_KEY).encode()).digest())
    return (derived.decode(),)


def encrypt(value: str) -> str:
    return _fernet(configured_keys()).encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(configured_keys()).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "a stored secret cannot be decrypted with DYNOSCALER_ENCRYPTION_KEYS (or, without it, a key derived "
            "from SECRET_KEY): put the key it was saved with back in the list, or enter the secret again"
        ) from None


def rotate(token: str) -> str:
    return _fernet(configured_keys()).rotate(token.encode()).decode()


class EncryptedTextField(models.TextField):
    """A TextField stored as a Fernet token; Python code only ever sees the plain text."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(str(value))
