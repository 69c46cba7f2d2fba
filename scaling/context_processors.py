from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from scaling.models import KillSwitch, accounts_with_unreadable_secrets


def kill_switch(request: HttpRequest) -> dict[str, KillSwitch | None]:
    """The kill switch, for the banner on every admin page (one indexed read)."""
    if not request.path.startswith("/admin/"):
        return {}
    return {"kill_switch": KillSwitch.engaged_now()}


def unreadable_secrets(request: HttpRequest) -> dict[str, Any]:
    """Accounts whose secret cannot be read, for a banner on every admin page an operator
    sees, each linked to the page where it is entered again. Two reads of small tables."""
    user = getattr(request, "user", None)
    if not request.path.startswith("/admin/") or user is None or not user.is_staff:
        return {}
    return {"unreadable_secrets": [
        (f"{account._meta.verbose_name} “{account}”",
         reverse(f"admin:scaling_{account._meta.model_name}_change", args=[account.pk]))
        for account in accounts_with_unreadable_secrets()
    ]}
