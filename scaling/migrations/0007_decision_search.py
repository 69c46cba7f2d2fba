"""Free-text search of the decision history (the admin's ?q=) without scanning the table:
trigram indexes on what the admin searches, on PostgreSQL (other databases are left as
they are). The admin's search is UPPER(column) LIKE UPPER('%term%'), so the indexes are
on UPPER(column)."""

from django.db import migrations

COLUMNS = ("reason", "error", "pair_name", "app_name")


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for column in COLUMNS:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS decision_{column}_trgm ON scaling_decision '
            f'USING gin (UPPER("{column}"::text) gin_trgm_ops)'
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS decision_{column}_trgm")


class Migration(migrations.Migration):

    dependencies = [("scaling", "0006_learning")]

    operations = [migrations.RunPython(create, drop)]
