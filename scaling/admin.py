from __future__ import annotations

import csv
from collections.abc import Iterator
from functools import cached_property
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from scaling import selectors, services
from scaling.adapters.errors import AdapterError
from scaling.charts import line_chart
from scaling.models import (
    HEROKU_MAX_DYNOS_PER_APP,
    AwsAccount,
    Decision,
    HerokuAccount,
    PairQueue,
    PairSchedule,
    ScalingPair,
)
from scaling.schedules import first_overlap


def secret_hint(value: str) -> str:
    return f"set, ending …{value[-4:]}" if len(value) >= 8 else ("set" if value else "not set")


class WriteOnlySecretsForm(forms.ModelForm):
    """Secret fields render empty; leaving one empty keeps the stored value."""

    secret_fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.secret_fields:
            field = self.fields[name]
            field.widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
            stored = getattr(self.instance, name, "") if self.instance.pk else ""
            if stored:
                field.required = False
                field.help_text = f"Currently {secret_hint(stored)}. Leave empty to keep it. {field.help_text}"

    def _clean_secret(self, name: str) -> str:
        value = (self.cleaned_data.get(name) or "").strip()
        if not value and self.instance.pk:
            return str(getattr(self.instance, name, ""))
        return value


class HerokuAccountForm(WriteOnlySecretsForm):
    secret_fields = ("api_token",)

    class Meta:
        model = HerokuAccount
        fields = ["description", "api_token"]

    def clean_api_token(self) -> str:
        return self._clean_secret("api_token")


class AwsAccountForm(WriteOnlySecretsForm):
    secret_fields = ("secret_access_key",)

    class Meta:
        model = AwsAccount
        fields = ["description", "use_default_chain", "access_key_id", "secret_access_key"]

    def clean_secret_access_key(self) -> str:
        if self.cleaned_data.get("use_default_chain"):
            return ""
        return self._clean_secret("secret_access_key")


@admin.register(HerokuAccount)
class HerokuAccountAdmin(admin.ModelAdmin):
    form = HerokuAccountForm
    list_display = ["description", "token_hint", "managed_by_env", "rate_limited_until", "updated_at"]
    search_fields = ["description"]
    readonly_fields = ["managed_by_env", "rate_limited_until"]

    @admin.display(description="token")
    def token_hint(self, obj: HerokuAccount) -> str:
        return secret_hint(obj.api_token)


@admin.register(AwsAccount)
class AwsAccountAdmin(admin.ModelAdmin):
    form = AwsAccountForm
    list_display = ["description", "use_default_chain", "access_key_id", "secret_hint_display", "managed_by_env"]
    list_filter = ["use_default_chain", "managed_by_env"]
    search_fields = ["description", "access_key_id"]

    @admin.display(description="secret")
    def secret_hint_display(self, obj: AwsAccount) -> str:
        return "default chain" if obj.use_default_chain else secret_hint(obj.secret_access_key)


class NumberStepForm(forms.Form):
    """The intermediate page of an action that needs a number."""

    title = ""
    explanation = ""
    submit_label = ""
    number = forms.IntegerField()


class PauseForm(NumberStepForm):
    title = "Pause pairs"
    explanation = ("While paused, each cycle still reads the queue and the formation and records what it saw, "
                   "but changes nothing and moves no counter.")
    submit_label = "Pause"
    number = forms.IntegerField(label="Minutes", min_value=1, max_value=7 * 24 * 60, initial=60,
                                help_text="How long to pause, in minutes (at most a week).")


class ScaleNowForm(NumberStepForm):
    title = "Scale now"
    explanation = ("Sets the formation to this many dynos at once. It is recorded as a decision, and the policy then "
                   "holds off for the pair's manual hold so that it does not undo it.")
    submit_label = "Scale now"
    number = forms.IntegerField(label="Dynos", min_value=0, max_value=HEROKU_MAX_DYNOS_PER_APP,
                                help_text="The formation quantity to set (0–100).")


class PairQueueInline(admin.TabularInline):
    model = PairQueue
    extra = 1
    min_num = 1
    verbose_name_plural = "SQS queues (visible messages are added up across them)"


class ScheduleFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        windows = []
        for form in self.forms:
            if not form.cleaned_data or form.cleaned_data.get("DELETE") or form.errors:
                continue
            windows.append(form.instance.as_window())
        overlap = first_overlap(windows)
        if overlap is not None:
            a, b = overlap
            raise forms.ValidationError(f"Schedule windows overlap: {a.describe()} and {b.describe()}. Make them disjoint.")


class PairScheduleInline(admin.TabularInline):
    model = PairSchedule
    formset = ScheduleFormSet
    extra = 0
    verbose_name_plural = "Schedules: while a window applies, its min/max replace the pair's"


@admin.register(ScalingPair)
class ScalingPairAdmin(admin.ModelAdmin):
    inlines = [PairQueueInline, PairScheduleInline]
    list_display = [
        "name", "provider", "app_name", "process_type", "policy", "min_dynos", "max_dynos",
        "interval_seconds", "enabled", "dry_run", "paused_until", "last_cycle_at", "managed_by_env",
    ]
    list_filter = ["enabled", "dry_run", "policy", "provider", "managed_by_env"]
    search_fields = ["name", "app_name", "process_type", "queues__queue"]
    list_select_related = ["heroku_account", "aws_account"]
    readonly_fields = ["policy_state", "last_cycle_at", "blocked_quantity", "blocked_reason", "managed_by_env"]
    fieldsets = [
        (None, {"fields": ["name", "provider", "enabled", "dry_run"]}),
        ("Heroku", {"fields": ["heroku_account", "app_name", "process_type"]}),
        ("AWS", {"fields": ["aws_account"], "description": "The queues are listed below."}),
        ("Bounds and timing", {"fields": ["min_dynos", "max_dynos", "interval_seconds"]}),
        ("People first", {"fields": ["paused_until", "manual_hold_seconds"],
                          "description": "DynoScaler never fights a person: it holds off while paused, and for the "
                          "manual hold after someone changes the formation outside it."}),
        ("Policy", {"fields": ["policy"]}),
        ("target_wait policy", {
            "fields": ["target_wait_seconds", "dyno_rate", "dyno_concurrency", "boot_seconds",
                       "scale_down_window_seconds", "lag_seconds"],
            "description": "Used when the policy is target_wait: say how long a message may wait and what one dyno gets through.",
        }),
        ("classic policy", {
            "fields": ["backlog_threshold", "up_cycles", "down_cycles"],
            "description": "Used when the policy is classic (the original DynoScaler rule).",
        }),
        ("State (read-only)", {"fields": ["policy_state", "last_cycle_at", "blocked_quantity", "blocked_reason", "managed_by_env"],
                               "classes": ["collapse"]}),
    ]
    actions = ["enable_pairs", "disable_pairs", "dry_run_on", "dry_run_off", "run_cycle_now", "check_connection",
               "pause_pairs", "resume_pairs", "scale_now"]
    chart_ranges = [(6, "6 hours"), (24, "24 hours"), (168, "7 days")]

    def get_urls(self) -> list[URLPattern]:
        own = [
            path("<int:pk>/check/", self.admin_site.admin_view(self.check_view), name="scaling_scalingpair_check"),
            path("<int:pk>/scale-now/", self.admin_site.admin_view(self.scale_now_view), name="scaling_scalingpair_scale_now"),
            path("<int:pk>/pause/", self.admin_site.admin_view(self.pause_view), name="scaling_scalingpair_pause"),
        ]
        return own + super().get_urls()

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None) -> HttpResponse:
        pair = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if pair is not None:
            try:
                hours = int(request.GET.get("hours", "6"))
            except ValueError:
                hours = 6
            hours = hours if hours in dict(self.chart_ranges) else 6
            series = selectors.pair_series(pair, hours=hours)
            now = timezone.now()
            context.update({
                "chart_hours": hours,
                "chart_ranges": self.chart_ranges,
                "chart_svg": line_chart(
                    [t for t, *_ in series],
                    [("visible messages", "#1f77b4", [v for _, v, _, _ in series], "left"),
                     ("dynos running", "#2ca02c", [r for _, _, r, _ in series], "right"),
                     ("dynos desired", "#d62728", [d for _, _, _, d in series], "right")],
                    title=f"Backlog and dynos of {pair.name}",
                ),
                "latest_decisions": list(pair.decisions.order_by("-created_at", "-id")[:20]),
                "pair_stalled": selectors.pair_is_stalled(pair, now),
                "pair_paused": bool(pair.paused_until and pair.paused_until > now),
            })
        return super().change_view(request, object_id, form_url, context)

    def _pair_or_404(self, request: HttpRequest, pk: int, *, change: bool) -> ScalingPair:
        pair = get_object_or_404(ScalingPair.objects.select_related("heroku_account", "aws_account"), pk=pk)
        allowed = self.has_change_permission(request, pair) if change else self.has_view_permission(request, pair)
        if not allowed:
            raise PermissionDenied
        return pair

    def _back(self, pair: ScalingPair) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:scaling_scalingpair_change", args=[pair.pk]))

    def check_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        pair = self._pair_or_404(request, pk, change=False)
        self._report_checks(request, pair)
        return self._back(pair)

    def _report_checks(self, request: HttpRequest, pair: ScalingPair) -> None:
        for check in services.pair_check_connection(pair=pair):
            level = messages.SUCCESS if check.ok else messages.ERROR
            self.message_user(request, f"{pair.name}: {check.what}: {'OK' if check.ok else 'FAILED'} — {check.detail}", level)

    def scale_now_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        pair = self._pair_or_404(request, pk, change=True)
        return self._number_step(request, [pair], form_class=ScaleNowForm, action="", done=self._do_scale_now) or self._back(pair)

    def pause_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        pair = self._pair_or_404(request, pk, change=True)
        return self._number_step(request, [pair], form_class=PauseForm, action="", done=self._do_pause) or self._back(pair)

    def _number_step(self, request: HttpRequest, pairs: list[ScalingPair], *, form_class: type[NumberStepForm], action: str,
                     done: Any) -> TemplateResponse | None:
        """Ask for a number, then do it: the intermediate page of an admin action."""
        form = form_class(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            done(request, pairs, form.cleaned_data["number"])
            return None
        return TemplateResponse(request, "admin/scaling/number_form.html", {
            **self.admin_site.each_context(request), "title": form_class.title, "explanation": form_class.explanation,
            "submit_label": form_class.submit_label, "form": form, "pairs": pairs, "action": action,
            "opts": self.model._meta,
        })

    def _do_scale_now(self, request: HttpRequest, pairs: list[ScalingPair], quantity: int) -> None:
        for pair in pairs:
            try:
                decision = services.pair_scale_now(pair=pair, quantity=quantity, user=request.user.get_username())
                self.message_user(request, f"{pair.name}: {decision.reason}.", messages.SUCCESS)
            except AdapterError as exc:
                self.message_user(request, f"{pair.name}: not scaled — {exc.message}", messages.ERROR)

    def _do_pause(self, request: HttpRequest, pairs: list[ScalingPair], minutes: int) -> None:
        for pair in pairs:
            until = services.pair_pause(pair=pair, minutes=minutes)
            self.message_user(request, f"{pair.name}: paused until {until:%Y-%m-%d %H:%M} UTC; cycles observe and record only.",
                              messages.SUCCESS)

    @admin.action(description="Check connection (reads only, changes nothing)")
    def check_connection(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        for pair in queryset.select_related("heroku_account", "aws_account"):
            self._report_checks(request, pair)

    @admin.action(description="Pause for N minutes…")
    def pause_pairs(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> TemplateResponse | None:
        return self._number_step(request, list(queryset), form_class=PauseForm, action="pause_pairs", done=self._do_pause)

    @admin.action(description="Resume (end a pause)")
    def resume_pairs(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        pairs = list(queryset)
        for pair in pairs:
            services.pair_resume(pair=pair)
        self.message_user(request, f"Resumed: {', '.join(p.name for p in pairs)}.", messages.SUCCESS)

    @admin.action(description="Scale now to N dynos…")
    def scale_now(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> TemplateResponse | None:
        return self._number_step(request, list(queryset), form_class=ScaleNowForm, action="scale_now", done=self._do_scale_now)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # After the queues are saved too: the beat task follows the pair.
        repointed = bool({"app_name", "process_type", "provider"} & set(form.changed_data))
        services.pair_saved(pair=form.instance, repointed=repointed)

    def delete_model(self, request: HttpRequest, obj: ScalingPair) -> None:
        services.pair_delete(pair=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        for pair in queryset:
            services.pair_delete(pair=pair)

    def _set(self, request: HttpRequest, queryset: QuerySet[ScalingPair], what: str, **values: bool) -> None:
        pairs = list(queryset)
        for pair in pairs:
            for name, value in values.items():
                setattr(pair, name, value)
            pair.save(update_fields=[*values, "updated_at"])
            services.pair_saved(pair=pair)
        self.message_user(request, f"{what}: {', '.join(p.name for p in pairs)}.", messages.SUCCESS)

    @admin.action(description="Enable the selected pairs")
    def enable_pairs(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        self._set(request, queryset, "Enabled", enabled=True)

    @admin.action(description="Disable the selected pairs (their formation is left as it is)")
    def disable_pairs(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        self._set(request, queryset, "Disabled", enabled=False)

    @admin.action(description="Dry run on: decide and record only")
    def dry_run_on(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        self._set(request, queryset, "Dry run on", dry_run=True)

    @admin.action(description="Dry run off: change formations again")
    def dry_run_off(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        self._set(request, queryset, "Dry run off", dry_run=False)

    @admin.action(description="Run one cycle now")
    def run_cycle_now(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        for pair in queryset:
            decision = services.pair_run_cycle(pair_id=pair.pk, force=True)
            if decision is None:
                self.message_user(request, f"{pair.name}: not run (disabled, or a cycle is already running).", messages.WARNING)
                continue
            level = messages.ERROR if decision.outcome == Decision.Outcome.ERROR else messages.SUCCESS
            text = f"{pair.name}: {decision.get_outcome_display()}: {decision.reason}"
            self.message_user(request, text + (f" [{decision.error}]" if decision.error else ""), level)


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows, so a page of millions of decisions costs no full COUNT(*)."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return int(self.object_list[: self.CAP + 1].count())  # type: ignore[attr-defined]


class HasErrorFilter(admin.SimpleListFilter):
    title = "error"
    parameter_name = "has_error"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "with an error"), ("no", "without")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Decision]) -> QuerySet[Decision]:
        if self.value() == "yes":
            return queryset.exclude(error="")
        if self.value() == "no":
            return queryset.filter(error="")
        return queryset


CSV_COLUMNS = [
    "id", "created_at", "pair_name", "app_name", "process_type", "policy", "outcome", "visible_messages",
    "in_flight_messages", "delayed_messages", "dynos_running", "dynos_starting", "quantity_before",
    "backlog_per_instance", "desired_quantity", "applied_quantity", "dry_run", "reason", "error",
    "error_permanent", "duration_ms", "heroku_rate_limit_remaining",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = [
        "created_at", "pair_name", "outcome", "visible_messages", "dynos_running",
        "quantity_before", "desired_quantity", "applied_quantity", "reason", "dry_run", "duration_ms",
    ]
    # Filters read the small pairs table or need no query at all: with millions of rows a
    # date hierarchy or a "related only" filter would scan the whole history on every page.
    list_filter = ["pair", "outcome", HasErrorFilter, "error_permanent", "dry_run", "created_at"]
    search_fields = ["pair_name", "app_name", "reason", "error"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 100

    def get_urls(self) -> list[URLPattern]:
        return [path("export.csv", self.admin_site.admin_view(self.export_csv), name="scaling_decision_export")] + super().get_urls()

    def export_csv(self, request: HttpRequest) -> StreamingHttpResponse:
        """Every decision the changelist's current filters and search select, streamed."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        queryset = self.get_changelist_instance(request).get_queryset(request).order_by("created_at", "id")
        writer = csv.writer(_Echo())

        def rows() -> Iterator[str]:
            yield writer.writerow(CSV_COLUMNS)
            for values in queryset.values_list(*CSV_COLUMNS).iterator(chunk_size=2000):
                yield writer.writerow(values)

        response = StreamingHttpResponse(rows(), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="dynoscaler-decisions-{timezone.now():%Y%m%d-%H%M}.csv"'
        return response

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
