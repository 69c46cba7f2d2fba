"""`.env.example` is the list of every variable DynoScaler reads (the README sends operators
there): nothing read is missing from it, and no value it shows differs from the default."""

from __future__ import annotations

import re
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
READERS = re.compile(r"""(?:\benv_(?:str|int|float|bool|optional|database)\(\s*|environ(?:\.get)?[(\[]\s*|getenv\(\s*)"([A-Z][A-Z0-9_]+)\"""")
LITERAL_DEFAULT = re.compile(r"""\benv_(?:int|str|bool)\(\s*"([A-Z][A-Z0-9_]+)",\s*("[^"]*"|\d+|True|False)\s*[,)]""")


def sources() -> str:
    files = [BASE_DIR / "manage.py", *(BASE_DIR / "dynoscaler_site").rglob("*.py"), *(BASE_DIR / "scaling").rglob("*.py")]
    return "\n".join(path.read_text() for path in files)


def example() -> dict[str, str]:
    lines = (BASE_DIR / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_every_variable_the_code_reads_is_in_the_example() -> None:
    read = set(READERS.findall(sources()))
    assert len(read) > 50, "the pattern stopped finding the readers"
    assert sorted(read - set(example())) == []


def test_the_example_shows_each_default_as_the_code_has_it() -> None:
    shown = example()
    wrong = []
    defaults = LITERAL_DEFAULT.findall(sources())
    assert len(defaults) > 30, "the pattern stopped finding the defaults"
    for name, default in defaults:
        value = {"True": "1", "False": "0"}.get(default, default.strip('"'))
        if shown.get(name) and shown[name] != value:
            wrong.append(f"{name}: example {shown[name]!r}, default {value!r}")
    assert wrong == []

