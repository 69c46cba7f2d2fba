"""Re-encrypt every stored secret with the first key of DYNOSCALER_ENCRYPTION_KEYS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models, transaction

from scaling.fields import TOKEN_PREFIX, EncryptedTextField, SecretUnreadable, decrypt, encrypt

LABELS = ("description", "name")  # the column that names a row to the operator


def secret_columns() -> Iterator[tuple[type[models.Model], EncryptedTextField]]:
    """Every encrypted column of the app: accounts, apps' webhook secrets, alert channels."""
    for model in apps.get_app_config("scaling").get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield model, field


class Command(BaseCommand):
    help = ("Re-encrypt stored secrets with the first key in DYNOSCALER_ENCRYPTION_KEYS. Put the new key first, "
            "keep the old one after it, run this, then remove the old key.")

    def handle(self, *args: Any, **options: Any) -> None:
        done = 0
        unreadable: list[str] = []
        with transaction.atomic(), connection.cursor() as cursor:
            for model, field in secret_columns():
                meta, quote = model._meta, connection.ops.quote_name
                pk_column, column = str(meta.pk.column), str(field.column)
                label = next(f for f in (*LABELS, meta.pk.attname) if any(c.attname == f for c in meta.concrete_fields))
                cursor.execute(f"SELECT {quote(pk_column)}, {quote(label)}, {quote(column)} "
                               f"FROM {quote(meta.db_table)} ORDER BY 1")
                for pk, name, stored in cursor.fetchall():
                    if not stored:
                        continue
                    try:
                        plain = decrypt(stored) if stored.startswith(TOKEN_PREFIX) else stored
                    except SecretUnreadable:
                        unreadable.append(f"the {field.verbose_name} of {meta.verbose_name} “{name}” (#{pk})")
                        continue  # left exactly as stored: its key may still be found
                    cursor.execute(f"UPDATE {quote(meta.db_table)} SET {quote(column)} = %s WHERE {quote(pk_column)} = %s",
                                   [encrypt(plain), pk])
                    done += 1
        self.stdout.write(f"{done} secret(s) re-encrypted with the first key.")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} secret(s) cannot be read with any key in DYNOSCALER_ENCRYPTION_KEYS and were left as "
                f"they were: {', '.join(unreadable)}. Add the key they were saved with and run this again, or enter them "
                "again in the admin; keep the old key until then."
            )
