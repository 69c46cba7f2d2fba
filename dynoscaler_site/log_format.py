"""The log lines' format, with every line scrubbed of credentials on its way out.

Adapters scrub what outside systems say as they build their errors; this is the net under
them for what they never see: an exception raised inside a library (its traceback quotes
the URL it was given, password and all) or a line someone logs with a value in it."""

from __future__ import annotations

import logging

from scaling.adapters.errors import redact


class ScrubbingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
