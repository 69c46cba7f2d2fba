from __future__ import annotations

import re
from collections.abc import Iterable

# Credentials an outside system may echo back: an Authorization header's value, a
# "token=…" / "password: …" pair, or the password in a URL.
_CREDENTIAL_SHAPES = (
    re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=:-]{8,}"),
    re.compile(r"(?i)\b(api[_-]?key|token|password|secret)(\s*[=:]\s*)[^\s,;\"']{4,}"),
    # The password of a URL's user part: scheme://user:PASSWORD@host
    re.compile(r"(://[^/\s:@]*)(:)[^/\s@]+(?=@)"),
)
MASK = "****"
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}


def _masked(match: re.Match[str]) -> str:
    """The key and separator kept, the value masked. A value ending in a bracket that closes
    one opened before the key ("(token=abc123)") keeps that bracket: it is the text's, not
    the secret's."""
    end = match.group(0)[-1]
    opener = _CLOSERS.get(end)
    before = match.string[: match.start()]
    keep = end if opener and before.count(opener) > before.count(end) else ""
    return f"{match.group(1)}{match.group(2)}{MASK}{keep}"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret and anything shaped like a credential header masked.

    The one scrubbing point: adapters run the outside systems' words through it as they
    build their errors, so no stored or rendered text can carry a secret."""
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, MASK)
    for shape in _CREDENTIAL_SHAPES:
        text = shape.sub(_masked, text)
    return text


class AdapterError(Exception):
    """A call to an outside system failed.

    ``permanent`` says whether trying again unchanged can help: a bad token, a missing
    queue or a refused quantity is permanent; a timeout, a 5xx or a rate limit is not.
    ``retry_after`` (seconds) is set when the system said how long to wait, and
    ``accepts_at_most`` when it said the largest value it would take (Heroku's 422 on a
    process type's dyno limit). The message is scrubbed of ``secrets`` (and of anything
    shaped like a credential) here, where every adapter builds its errors.
    """

    def __init__(
        self,
        system: str,
        message: str,
        *,
        permanent: bool,
        status: int | None = None,
        retry_after: float | None = None,
        accepts_at_most: int | None = None,
        secrets: Iterable[str | None] = (),
    ) -> None:
        self.system = system
        self.message = redact(message, secrets)
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after
        self.accepts_at_most = accepts_at_most
        super().__init__(f"{system}: {self.message}")

    @property
    def rate_limited(self) -> bool:
        return self.status == 429

    @property
    def outcome_unknown(self) -> bool:
        """A write that failed this way may have been applied all the same: the request
        may have reached the system and only its answer was lost (a timeout, a dropped
        connection, a 5xx). A refusal (4xx) or a rate limit (429) applied nothing."""
        return not self.permanent and not self.rate_limited and (self.status is None or self.status >= 500)
