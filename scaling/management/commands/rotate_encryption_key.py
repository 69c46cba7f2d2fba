"""Re-encrypt every stored secret with the first key of DYNOSCALER_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from scaling.fields import SecretUnreadable, TOKEN_PREFIX, decrypt, encrypt

COLUMNS = (("scaling_herokuaccount", "api_token"), ("scaling_awsaccount", "secret_access_key"))


class Command(BaseCommand):
    help = ("Re-encrypt stored secrets with the first key in DYNOSCALER_ENCRYPTION_KEYS. Put the new key first, "
            "keep the old one after it, run this, then remove the old key.")

    def handle(self, *args: Any, **options: Any) -> None:
        done = 0
        with transaction.atomic(), connection.cursor() as cursor:
            for table, column in COLUMNS:
                cursor.execute(f"SELECT id, {column} FROM {table}")
                for pk, stored in cursor.fetchall():
                    if not stored:
                        continue
                    try:
                        plain = decrypt(stored) if stored.startswith(TOKEN_PREFIX) else stored
                    except SecretUnreadable as exc:
                        raise CommandError(f"{table} row {pk}: {exc}") from None
                    cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [encrypt(plain), pk])
                    done += 1
        self.stdout.write(f"{done} secret(s) re-encrypted with the first key.")
