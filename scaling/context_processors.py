from __future__ import annotations

from django.http import HttpRequest

from scaling.models import KillSwitch


def kill_switch(request: HttpRequest) -> dict[str, KillSwitch | None]:
    """The kill switch, for the banner on every admin page (one indexed read)."""
    if not request.path.startswith("/admin/"):
        return {}
    return {"kill_switch": KillSwitch.engaged_now()}
