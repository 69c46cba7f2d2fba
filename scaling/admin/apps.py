"""Heroku apps: what DynoScaler knows of each formation, where that came from, and the
webhook subscription that keeps it current (subscribe, check, unsubscribe)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from scaling import services
from scaling.admin.base import GuardedAdmin
from scaling.models import HerokuApp


def report_webhooks(model_admin: admin.ModelAdmin, request: HttpRequest, apps: list[HerokuApp],
                    what: str) -> dict[str, str]:
    """Subscribe, check or unsubscribe each app and say what happened, one message each.
    Returns what was said of each app, by its name."""
    public_url = settings.DYNOSCALER_PUBLIC_URL
    said_of: dict[str, str] = {}
    if what == "subscribe" and not public_url:
        model_admin.message_user(request, "Set DYNOSCALER_PUBLIC_URL (e.g. https://my-dynoscaler.herokuapp.com) so "
                                 "Heroku knows where to post; nothing was subscribed.", messages.ERROR)
        return said_of
    for done, app in zip(services.apps_webhooks(apps=apps, action=what, public_url=public_url), apps, strict=True):
        said_of[app.name] = done.said
        model_admin.message_user(request, done.said, messages.SUCCESS if done.ok else messages.ERROR)
    return said_of


@admin.register(HerokuApp)
class HerokuAppAdmin(GuardedAdmin):
    list_display = ["name", "account", "webhooks", "last_event_at", "reconciled_at", "formation"]
    list_filter = ["account"]
    search_fields = ["name"]
    list_select_related = ["account"]
    readonly_fields = ["name", "account", "webhooks", "webhook_url", "webhook_checked", "last_event_at",
                       "reconciled_at", "dynos_read_at", "formation"]
    fields = tuple(readonly_fields)
    actions = ["subscribe_webhooks", "check_webhooks", "unsubscribe_webhooks"]

    @admin.display(description="webhooks")
    def webhooks(self, app: HerokuApp) -> str:
        return "subscribed" if app.subscribed else f"no: read every {settings.RECONCILE_SECONDS} s and before changes"

    @admin.display(description="formation as DynoScaler knows it")
    def formation(self, app: HerokuApp) -> str:
        rows = [(f.process_type, f.quantity, *f.dyno_counts(), f.changed_by or "unknown", f"{f.changed_at:%Y-%m-%d %H:%M}")
                for f in app.formations.order_by("process_type")]
        if not rows:
            return "not read yet"
        return format_html_join("; ", "{}={} ({} up, {} booting; changed by {} at {} UTC)", rows)

    @admin.action(description="Subscribe to Heroku webhooks (at DYNOSCALER_PUBLIC_URL)")
    def subscribe_webhooks(self, request: HttpRequest, queryset: QuerySet[HerokuApp]) -> None:
        report_webhooks(self, request, list(queryset.select_related("account")), "subscribe")

    @admin.action(description="Check the webhook subscription")
    def check_webhooks(self, request: HttpRequest, queryset: QuerySet[HerokuApp]) -> None:
        report_webhooks(self, request, list(queryset.select_related("account")), "check")

    @admin.action(description="Unsubscribe (read the formation every few minutes instead)")
    def unsubscribe_webhooks(self, request: HttpRequest, queryset: QuerySet[HerokuApp]) -> None:
        report_webhooks(self, request, list(queryset.select_related("account")), "remove")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # an app is known once a pair scales it

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> Any:
        # Read-only otherwise, but the webhook actions are for whoever may change pairs.
        actions = super().get_actions(request)
        if not request.user.has_perm("scaling.change_scalingpair"):
            return {}
        return actions
