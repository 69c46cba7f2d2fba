"""Email through Django's email backend, with the SMTP settings from the environment
(EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS/SSL)."""

from __future__ import annotations

import smtplib

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from scaling.adapters.errors import AdapterError
from scaling.alerts.transports.base import OutgoingMessage

SYSTEM = "email"


class EmailTransport:
    system = SYSTEM

    def __init__(self, *, recipients: list[str], timeout: float) -> None:
        self.recipients = recipients
        self.timeout = timeout

    def send(self, message: OutgoingMessage) -> str:
        server = f"SMTP server {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
        email = EmailMessage(
            subject=" ".join(message.title.split()),  # one line: a newline would be a header injection
            body=message.text,
            from_email=settings.ALERT_FROM_EMAIL,
            to=self.recipients,
            headers={"X-DynoScaler-Delivery": str(message.delivery_id), "X-DynoScaler-Event": message.event},
            connection=get_connection(fail_silently=False, timeout=self.timeout),
        )
        try:
            email.send()
        except smtplib.SMTPRecipientsRefused as exc:
            refused = ", ".join(sorted(exc.recipients))
            raise AdapterError(SYSTEM, f"{server} refused the recipient(s) {refused}", permanent=True) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise AdapterError(SYSTEM, f"{server} refused the login (EMAIL_HOST_USER/EMAIL_HOST_PASSWORD): {exc.smtp_code}",
                               permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            said = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            raise AdapterError(SYSTEM, f"{server} answered {exc.smtp_code}: {said[:200]}",
                               permanent=exc.smtp_code >= 500, status=exc.smtp_code) from None
        except (smtplib.SMTPException, OSError) as exc:
            # Connection refused, timeouts, a dropped connection, TLS failures: the server may come back.
            raise AdapterError(SYSTEM, f"{server}: {type(exc).__name__}: {exc}"[:300], permanent=False) from None
        return f"handed to {server}" if settings.EMAIL_HOST else "printed by the console email backend"
