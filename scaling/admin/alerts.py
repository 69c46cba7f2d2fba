"""The alert pages of the admin: channels (with "send a test alert"), and the read-only
record of problems and of every message sent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from scaling.admin.base import GuardedAdmin
from scaling.forms import WriteOnlySecretsForm, secret_hint
from scaling.alerts.delivery import channel_send_test
from scaling.alerts.messages import PREFIX
from scaling.models.alerts import AlertChannel, AlertDelivery, AlertProblem, ProblemKind


def url_hint(url: str) -> str:
    """Enough of a stored URL to tell which one it is (scheme, host and port, its last four
    characters), never its path, which may be the secret (Slack's)."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return (f"set: {parts.scheme}://{parts.hostname}{port}/…{url[-4:]}" if parts.hostname and len(url) >= 20
            else secret_hint(url))


class AlertChannelForm(WriteOnlySecretsForm):
    secret_fields = ("url", "signing_secret")
    kinds = forms.MultipleChoiceField(
        label="Problems",
        choices=ProblemKind.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Which problems this channel hears about. None ticked: all of them.",
    )

    class Meta:
        model = AlertChannel
        fields = ["name", "kind", "enabled", "url", "signing_secret", "recipients", "all_pairs", "pairs",
                  "include_global", "kinds", "max_per_hour"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.url:
            # The host says which service it is and is no secret; the path and query are the key.
            self.fields["url"].help_text = (f"Currently {url_hint(self.instance.url)}. Leave empty to keep it. "
                                            f"{AlertChannel._meta.get_field('url').help_text}")

    def clean_url(self) -> str:
        return self._clean_secret("url")

    def clean_signing_secret(self) -> str:
        return self._clean_secret("signing_secret")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        # Only what the kind uses is kept, so no forgotten secret lingers on the row.
        kind = data.get("kind")
        if kind == AlertChannel.Kind.EMAIL:
            data["url"] = data["signing_secret"] = ""
        elif kind == AlertChannel.Kind.SLACK:
            data["signing_secret"], data["recipients"] = "", ""
        elif kind == AlertChannel.Kind.WEBHOOK:
            data["recipients"] = ""
        # Chosen pairs only count when "every pair" is off; a channel that hears no pair and
        # no global problem would never hear anything.
        if data.get("all_pairs"):
            data["pairs"] = []
        elif "pairs" in data and not data["pairs"] and not data.get("include_global"):
            self.add_error("pairs", "Choose at least one pair, tick “every pair”, or tick “global problems too”.")
        return data


def _send_test(model_admin: admin.ModelAdmin, request: HttpRequest, channel: AlertChannel) -> None:
    delivery = channel_send_test(channel=channel, user=request.user.get_username())
    if delivery.status == AlertDelivery.Status.SENT:
        receipt = delivery.attempt_log[-1].get("receipt") or "sent"
        model_admin.message_user(request, f"Test alert sent to “{channel.name}” ({receipt}).", messages.SUCCESS)
        if channel.kind == AlertChannel.Kind.EMAIL and not settings.EMAIL_HOST:
            model_admin.message_user(
                request, "EMAIL_HOST is not set, so email is printed by the console backend instead of sent: set the "
                "EMAIL_* variables to send it.", messages.WARNING)
    else:
        model_admin.message_user(
            request, f"Test alert to “{channel.name}” failed: {delivery.last_error}. It is recorded under Alert deliveries.",
            messages.ERROR)


@admin.register(AlertChannel)
class AlertChannelAdmin(GuardedAdmin):
    form = AlertChannelForm
    list_display = ["name", "kind", "enabled", "covers", "include_global", "max_per_hour", "target"]
    list_filter = ["kind", "enabled", "all_pairs", "include_global"]
    search_fields = ["name", "recipients", "pairs__name"]
    filter_horizontal = ["pairs"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "enabled"]}),
        ("Where it goes", {
            "fields": ["url", "signing_secret", "recipients"],
            "description": "Slack: the incoming-webhook URL. Webhook: the URL and a signing secret (see the README "
            "for how to check the signature). Email: the addresses; the SMTP server comes from the environment.",
        }),
        ("What it hears about", {"fields": ["all_pairs", "pairs", "include_global", "kinds"]}),
        ("How often", {"fields": ["max_per_hour"]}),
    ]
    actions = ["send_test_alert", "enable_channels", "disable_channels"]

    @admin.display(description="pairs")
    def covers(self, obj: AlertChannel) -> str:
        if obj.all_pairs:
            return "every pair"
        return ", ".join(p.name for p in obj.pairs.all()) or "no pair"

    @admin.display(description="target")
    def target(self, obj: AlertChannel) -> str:
        return obj.recipients if obj.kind == AlertChannel.Kind.EMAIL else f"URL {url_hint(obj.url)}"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertChannel]:
        return super().get_queryset(request).prefetch_related("pairs")

    def get_urls(self) -> list[URLPattern]:
        own = [path("<int:pk>/test/", self.admin_site.admin_view(require_POST(self.test_view)),
                    name="scaling_alertchannel_test")]
        return own + super().get_urls()

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        context = dict(extra_context or {})
        context["recent_deliveries"] = list(AlertDelivery.objects.filter(channel_id=int(object_id))
                                            .order_by("-created_at", "-id")[:10]) if object_id.isdigit() else []
        return super().change_view(request, object_id, form_url, context)

    def save_model(self, request: HttpRequest, obj: AlertChannel, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.kind == AlertChannel.Kind.EMAIL and not settings.EMAIL_HOST:
            self.message_user(request, "EMAIL_HOST is not set here: email alerts are printed by the console backend "
                              "until the EMAIL_* variables are set.", messages.WARNING)

    def test_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        channel = get_object_or_404(AlertChannel, pk=pk)
        if not self.has_change_permission(request, channel):
            raise PermissionDenied
        _send_test(self, request, channel)
        return HttpResponseRedirect(reverse("admin:scaling_alertchannel_change", args=[pk]))

    @admin.action(description="Send a test alert (now, to each selected channel)", permissions=["change"])
    def send_test_alert(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        for channel in queryset:
            _send_test(self, request, channel)

    @admin.action(description="Enable the selected channels", permissions=["change"])
    def enable_channels(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        names = [c.name for c in queryset]
        queryset.update(enabled=True)
        self.message_user(request, f"Enabled: {', '.join(names)}.", messages.SUCCESS)

    @admin.action(description="Disable the selected channels (queued messages are dropped)", permissions=["change"])
    def disable_channels(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        names = [c.name for c in queryset]
        queryset.update(enabled=False)
        self.message_user(request, f"Disabled: {', '.join(names)}.", messages.SUCCESS)


class ReadOnlyAdmin(GuardedAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "open"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "open"), ("no", "resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AlertProblem]) -> QuerySet[AlertProblem]:
        if self.value() == "yes":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "no":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


class DeliveryInline(admin.TabularInline):
    model = AlertDelivery
    fields = readonly_fields = ("created_at", "channel", "event", "status", "attempts", "last_error", "sent_at")
    extra = 0
    can_delete = False
    verbose_name_plural = "messages sent about it"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _utc(moment: datetime | None) -> str:
    """A time as the decision pages show it: to the second, in UTC, and saying so."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if moment else "—"


@admin.register(AlertProblem)
class AlertProblemAdmin(ReadOnlyAdmin):
    list_display = ["opened", "state", "kind", "about", "summary", "resolved"]
    list_filter = [OpenFilter, "kind", "opened_at"]
    search_fields = ["key", "pair_name", "summary"]
    inlines = [DeliveryInline]

    @admin.display(description="opened", ordering="opened_at")
    def opened(self, obj: AlertProblem) -> str:
        return _utc(obj.opened_at)

    @admin.display(description="resolved", ordering="resolved_at")
    def resolved(self, obj: AlertProblem) -> str:
        return _utc(obj.resolved_at)

    @admin.display(description="state")
    def state(self, obj: AlertProblem) -> str:
        return "open" if obj.resolved_at is None else "resolved"

    @admin.display(description="pair", ordering="pair_name")
    def about(self, obj: AlertProblem) -> str:
        return obj.pair_name or "— (global)"


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["queued", "channel", "event", "status", "message", "attempts", "last_error", "next_attempt"]
    list_filter = ["status", "event", "channel", "created_at"]
    search_fields = ["title", "text", "last_error", "channel__name"]
    list_select_related = ["channel"]

    @admin.display(description="queued", ordering="created_at")
    def queued(self, obj: AlertDelivery) -> str:
        return _utc(obj.created_at)

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj: AlertDelivery) -> str:
        return _utc(obj.next_attempt_at)

    @admin.display(description="message", ordering="title")
    def message(self, obj: AlertDelivery) -> str:
        return obj.title.removeprefix(PREFIX).strip()
