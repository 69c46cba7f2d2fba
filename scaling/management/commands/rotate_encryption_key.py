"""Re-encrypt every stored secret with the first key of DYNOSCALER_ENCRYPTION_KEYS."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from scaling.fields import TOKEN_PREFIX, SecretUnreadable, decrypt, encrypt

COLUMNS = (("scaling_herokuaccount", "api_token", "Heroku account"),
           ("scaling_awsaccount", "secret_access_key", "AWS account"))


class Command(BaseCommand):
    help = ("Re-encrypt stored secrets with the first key in DYNOSCALER_ENCRYPTION_KEYS. Put the new key first, "
            "keep the old one after it, run this, then remove the old key.")

    def handle(self, *args: Any, **options: Any) -> None:
        done = 0
        unreadable: list[str] = []
        with transaction.atomic(), connection.cursor() as cursor:
            for table, column, what in COLUMNS:
                cursor.execute(f"SELECT id, description, {column} FROM {table} ORDER BY id")
                for pk, description, stored in cursor.fetchall():
                    if not stored:
                        continue
                    try:
                        plain = decrypt(stored) if stored.startswith(TOKEN_PREFIX) else stored
                    except SecretUnreadable:
                        unreadable.append(f"{what} “{description}” (#{pk})")
                        continue  # left exactly as stored: its key may still be found
                    cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [encrypt(plain), pk])
                    done += 1
        self.stdout.write(f"{done} secret(s) re-encrypted with the first key.")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} secret(s) cannot be read with any key in DYNOSCALER_ENCRYPTION_KEYS and were left as "
                f"they were: {', '.join(unreadable)}. Add the key they were saved with and run this again, or enter them "
                "again in the admin; keep the old key until then."
            )
