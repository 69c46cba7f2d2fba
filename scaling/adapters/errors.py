from __future__ import annotations


class AdapterError(Exception):
    """A call to an outside system failed.

    ``permanent`` says whether trying again unchanged can help: a bad token, a missing
    queue or a refused quantity is permanent; a timeout, a 5xx or a rate limit is not.
    ``retry_after`` (seconds) is set when the system said how long to wait.
    Messages never carry credentials: adapters build them from status codes and the
    service's own error text, and callers redact known secrets again before storing.
    """

    def __init__(
        self,
        system: str,
        message: str,
        *,
        permanent: bool,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.system = system
        self.message = message
        self.permanent = permanent
        self.status = status
        self.code = code
        self.retry_after = retry_after
        super().__init__(f"{system}: {message}")

    @property
    def rate_limited(self) -> bool:
        return self.status == 429
