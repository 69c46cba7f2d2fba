from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from scaling import services
from scaling.models import AwsAccount, Decision, HerokuAccount, PairQueue, PairSchedule, ScalingPair
from scaling.policies import first_overlap


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
        "name", "app_name", "process_type", "policy", "min_dynos", "max_dynos",
        "interval_seconds", "enabled", "dry_run", "last_cycle_at", "managed_by_env",
    ]
    list_filter = ["enabled", "dry_run", "policy", "managed_by_env"]
    search_fields = ["name", "app_name", "process_type", "queues__queue"]
    list_select_related = ["heroku_account", "aws_account"]
    readonly_fields = ["policy_state", "last_cycle_at", "blocked_quantity", "blocked_reason", "managed_by_env"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "dry_run"]}),
        ("Heroku", {"fields": ["heroku_account", "app_name", "process_type"]}),
        ("AWS", {"fields": ["aws_account"], "description": "The queues are listed below."}),
        ("Bounds and timing", {"fields": ["min_dynos", "max_dynos", "interval_seconds"]}),
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
    actions = ["enable_pairs", "disable_pairs", "dry_run_on", "dry_run_off", "run_cycle_now"]

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # After the queues are saved too: the beat task follows the pair.
        services.pair_saved(pair=form.instance)

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


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = [
        "created_at", "pair_name", "outcome", "visible_messages", "dynos_running",
        "quantity_before", "desired_quantity", "applied_quantity", "short_reason", "dry_run", "duration_ms",
    ]
    list_filter = ["outcome", "dry_run", "error_permanent", "created_at", "pair_name"]
    search_fields = ["pair_name", "app_name", "reason", "error"]
    date_hierarchy = "created_at"
    show_full_result_count = False

    @admin.display(description="reason")
    def short_reason(self, obj: Decision) -> str:
        return obj.reason if len(obj.reason) <= 120 else obj.reason[:117] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
