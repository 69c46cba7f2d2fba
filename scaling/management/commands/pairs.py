"""Pairs as code: `pairs export` writes the pairs and their accounts to a YAML or JSON file
(secrets only as the names of the environment variables that hold them); `pairs import
FILE` makes the database match the file, all in one transaction, and does nothing the
second time. `--dry-run` shows what would change and writes nothing."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scaling.pairs_file import FORMATS, PairsFileError, dump, format_of, load
from scaling.services.pairs_as_code import pairs_export, pairs_import


class Command(BaseCommand):
    help = ("Pairs as code. 'pairs export' writes pairs and accounts as YAML or JSON (no secret values); "
            "'pairs import FILE' makes the database match it (--dry-run to see what would change).")

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{export,import}")
        export = actions.add_parser("export", help="write every pair and account to a file or standard output")
        export.add_argument("--format", choices=FORMATS, help="yaml or json (default: from --output's extension, else yaml)")
        export.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")
        load_ = actions.add_parser("import", help="make the pairs and accounts match FILE, in one transaction")
        load_.add_argument("file", metavar="FILE", help="a pairs file (.yaml, .yml or .json); - reads standard input")
        load_.add_argument("--dry-run", action="store_true", help="show what would change, pair by pair; write nothing")
        load_.add_argument("--prune", action="store_true",
                           help="also delete pairs that are not in the file (by default they are left as they are)")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "export":
            self.export(fmt=options.get("format"), output=options.get("output"))
        else:
            self.import_file(Path(options["file"]), dry_run=options["dry_run"], prune=options["prune"])

    def export(self, *, fmt: str | None, output: str | None) -> None:
        if fmt and output and fmt != format_of(output) and fmt == "yaml":
            # import reads a .json file as JSON: the file would not import.
            raise CommandError(f"--format: yaml into {output}, which import would read as JSON; name it .yaml")
        fmt = fmt or (format_of(output) if output else "yaml")
        try:
            exported, left_out = pairs_export()
        except PairsFileError as exc:
            raise CommandError(str(exc)) from None
        text = dump(exported, fmt)
        if output:
            try:
                Path(output).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"--output: cannot write {output} ({exc.strerror or exc})") from None
            self.stdout.write(f"Wrote {len(exported.pairs)} pair(s), {len(exported.heroku_accounts)} Heroku and "
                              f"{len(exported.aws_accounts)} AWS account(s) to {output}.")
        else:
            self.stdout.write(text, ending="")
        for name, why in left_out:  # on stderr, so that standard output stays a clean file
            self.stderr.write(f"Left out pair {name!r}: {why}.")

    def import_file(self, path: Path, *, dry_run: bool, prune: bool, env: Mapping[str, str] = os.environ) -> None:
        source = "<stdin>" if str(path) == "-" else str(path)
        try:
            text = sys.stdin.read() if source == "<stdin>" else path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise CommandError(f"{source}: not a UTF-8 text file (byte {exc.start + 1} cannot be read); a pairs "
                               "file is YAML or JSON") from None
        try:
            # YAML reads JSON too, so standard input needs no format.
            spec = load(text, source=source, fmt=format_of(source))
        except PairsFileError as exc:
            raise CommandError(str(exc)) from None
        report = pairs_import(spec, source=source, env=env, dry_run=dry_run, prune=prune)
        if report.errors:
            if len(report.errors) == 1:
                raise CommandError(f"{report.errors[0]} (nothing was imported)")
            raise CommandError("\n".join([*report.errors, f"{len(report.errors)} problems; nothing was imported."]))
        for line in [*report.changes, *report.notes]:
            self.stdout.write(line)
        if not report.changes:
            self.stdout.write("No changes.")
        elif dry_run:
            self.stdout.write("Dry run: nothing was written.")
        else:
            self.stdout.write(self.style.SUCCESS(f"Imported {source}."))
