"""Pairs: setting them up, watching them (state, chart, latest decisions) and the
operator's controls (pause, resume, scale now, run a cycle, check connection), each of
which goes into the pair's History with who did it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from scaling import selectors, services
from scaling.admin.apps import report_webhooks
from scaling.admin.base import GuardedAdmin
from scaling.adapters.errors import AdapterError
from scaling.charts import line_chart
from scaling.fields import CANNOT_BE_READ, SecretUnreadable
from scaling.forms import AccountChoiceField, NumberStepForm, PairForm, PauseForm, QueueFormSet, ScaleNowForm, ScheduleFormSet
from scaling.models import Decision, PairQueue, PairSample, PairSchedule, ScalingPair
from scaling.models.pairs import interval_floor_problem


def learned_context(pair: ScalingPair) -> dict[str, Any]:
    """What the policy learned, as the pair page shows it: value, how sure, from how much
    data, and what the operator said."""
    learned = pair.learned or {}
    names = {"rate": ("messages per second per dyno", "{:.3g}/s"), "boot": ("boot time", "{:.0f} s"),
             "concurrency": ("concurrency per dyno", "{:.3g}")}
    # The figures as the pair says them now: the table is the last cycle's, and a figure
    # pinned or typed since must not read as the old one until the next cycle (or ever, on
    # a disabled pair).
    typed = {"rate": (pair.dyno_rate, pair.pin_dyno_rate), "boot": (pair.boot_seconds, pair.pin_boot_seconds),
             "concurrency": (pair.dyno_concurrency, pair.pin_dyno_concurrency)}
    rows = []
    for key, (what, shape) in names.items():
        figure = (learned.get("learned") or {}).get(key)
        if not figure:
            continue
        now_typed, pinned = typed[key]
        if now_typed is not None:
            figure = {**figure, "operator": now_typed}
            if pinned:
                figure = {**figure, "value": now_typed, "source": "pinned", "spread": None,
                          "basis": "pinned: used as you gave it"}
            elif figure.get("source") != "learned":
                figure = {**figure, "value": now_typed, "source": "operator"}
        spread = figure.get("spread")
        rows.append({"what": what, "value": shape.format(figure["value"]), "source": figure.get("source", ""),
                     "sure": f"±{spread * 100:.0f} %" if spread is not None else "—", "basis": figure.get("basis") or "—",
                     "operator": shape.format(figure["operator"]) if figure.get("operator") is not None else "—"})
    prewarm = learned.get("prewarm")
    if prewarm and prewarm.get("due"):
        prewarm = {**prewarm, "due_text": f"{datetime.fromtimestamp(prewarm['due'], tz=UTC):%Y-%m-%d %H:%M} UTC"}
    return {"learned_rows": rows, "learned_patterns": learned.get("patterns") or [],
            "learned_prewarm": prewarm, "learned_not_helping": learned.get("not_helping"),
            "learned_boot_timing": learned.get("boot_timing")}


class PairQueueInline(admin.TabularInline):
    """The queues of a Heroku + SQS pair (at least one, which QueueFormSet asks for by name).
    A sandbox pair has none: its queue is simulated, so its page offers no empty row to fill."""

    model = PairQueue
    formset = QueueFormSet
    min_num = 0
    verbose_name_plural = "SQS queues (Heroku + SQS pairs; visible messages are added up across them)"

    def get_extra(self, request: HttpRequest, obj: ScalingPair | None = None, **kwargs: Any) -> int:
        return 0 if obj is not None and (obj.provider == ScalingPair.Provider.SANDBOX or obj.managed_by_env) else 1

    # The env pair's queue is AWS_SQS_NAME's: shown, not editable (a restart sets it back).
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not (isinstance(obj, ScalingPair) and obj.managed_by_env) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not (isinstance(obj, ScalingPair) and obj.managed_by_env) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not (isinstance(obj, ScalingPair) and obj.managed_by_env) and super().has_delete_permission(request, obj)


class PairScheduleInline(admin.TabularInline):
    model = PairSchedule
    formset = ScheduleFormSet
    extra = 0
    verbose_name_plural = "Schedules: while a window applies, its min/max replace the pair's"


# What the original variables describe (scaling.legacy_env): read-only on the env pair's page.
ENV_FIELDS = ["name", "provider", "heroku_account", "aws_account", "app_name", "process_type", "min_dynos", "max_dynos",
              "interval_seconds", "policy", "backlog_threshold", "up_cycles", "down_cycles"]


@admin.register(ScalingPair)
class ScalingPairAdmin(GuardedAdmin):
    inlines = [PairQueueInline, PairScheduleInline]
    list_display = [
        "name", "provider", "app_name", "process_type", "policy", "min_dynos", "max_dynos",
        "interval_seconds", "enabled", "dry_run", "paused_until", "last_cycle_at", "managed_by_env", "credentials",
    ]
    list_filter = ["enabled", "dry_run", "policy", "provider", "managed_by_env"]
    search_fields = ["name", "app_name", "process_type", "queues__queue"]
    list_select_related = ["heroku_account", "aws_account"]
    # By name, here and in every "by pair" filter (they follow this admin's ordering).
    ordering = ["name"]
    form = PairForm
    readonly_fields = ["policy_state", "last_cycle_at", "blocked_quantity", "blocked_reason", "managed_by_env"]
    fieldsets = [
        (None, {"fields": ["name", "provider", "enabled", "dry_run", "controls_loaded"]}),
        ("Heroku", {"fields": ["heroku_account", "app_name", "process_type"]}),
        ("AWS", {"fields": ["aws_account"], "description": "The queues are listed below."}),
        ("Bounds and timing", {"fields": ["min_dynos", "max_dynos", "interval_seconds"]}),
        ("People first", {"fields": ["paused_until", "manual_hold_seconds"],
                          "description": "DynoScaler never fights a person: it holds off while paused, and for the "
                          "manual hold after someone changes the formation outside it."}),
        ("Policy", {"fields": ["policy"]}),
        ("target_wait policy", {
            "fields": ["target_wait_seconds", ("dyno_rate", "pin_dyno_rate"), ("boot_seconds", "pin_boot_seconds"),
                       ("dyno_concurrency", "pin_dyno_concurrency"), "prewarm", "scale_down_window_seconds",
                       "lag_seconds"],
            "description": "Used when the policy is target_wait. Say how long a message may wait; the rest are starting "
            "points that DynoScaler measures (the page above shows what it found) unless you pin them.",
        }),
        ("classic policy", {
            "fields": ["backlog_threshold", "up_cycles", "down_cycles"],
            "description": "Used when the policy is classic (the original DynoScaler rule).",
        }),
        ("State (read-only)", {"fields": ["policy_state", "last_cycle_at", "blocked_quantity", "blocked_reason", "managed_by_env"],
                               "classes": ["collapse"]}),
    ]
    actions = ["enable_pairs", "disable_pairs", "dry_run_on", "dry_run_off", "run_cycle_now", "check_connection",
               "pause_pairs", "resume_pairs", "scale_now", "subscribe_webhooks"]
    chart_ranges = [(6, "6 hours"), (24, "24 hours"), (168, "7 days")]

    @admin.display(description="credentials")
    def credentials(self, pair: ScalingPair) -> str:
        problems = [
            (reverse(f"admin:scaling_{type(account)._meta.model_name}_change", args=[account.pk]), what)
            for account, what in ((pair.heroku_account, "Heroku token"), (pair.aws_account, "AWS secret"))
            if account is not None and account.unreadable_secret_fields()
        ]
        if not problems:
            return "ok"
        return format_html_join("; ", '<a href="{}" style="color:#b30000">{} ' + CANNOT_BE_READ + "</a>", problems)

    def get_readonly_fields(self, request: HttpRequest, obj: ScalingPair | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.managed_by_env:  # the variables' values: a restart would set them back
            fields += [f for f in ENV_FIELDS if f not in fields]
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: ScalingPair | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None:
            # The other policy's settings are folded away: they do nothing for this pair.
            def folded(title: object) -> bool:
                return bool(title) and str(title).endswith(" policy") and title != f"{obj.policy} policy"

            fieldsets = [(title, {**options, "classes": [*options.get("classes", []), "collapse"]}) if folded(title)
                         else (title, options) for title, options in fieldsets]
        if obj is None or not obj.managed_by_env:
            return fieldsets
        (title, first), *rest = fieldsets
        note = format_html(
            "Made from the original DynoScaler variables (MY_HEROKU_*, AWS_*, DYNOSCALER_*): what they describe is "
            "shown here, not editable, as a restart sets it back. Change the variable and restart.{}",
            format_html('<br><strong id="env-problem" style="color:#b30000">Not applied at the last start: {}. This '
                        "pair runs on the values of its last good start.</strong>", obj.env_problem)
            if obj.env_problem else "")
        return [(title, {**first, "description": note}), *rest]

    def number_floor(self, name: str, floor: int) -> tuple[int, str | None]:
        if name == "interval_seconds":
            return settings.MIN_INTERVAL_SECONDS, interval_floor_problem()
        return super().number_floor(name, floor)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name in ("heroku_account", "aws_account"):
            kwargs["form_class"] = AccountChoiceField
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_urls(self) -> list[URLPattern]:
        own = [
            # A POST: it calls Heroku and AWS (Heroku's calls count against the account's
            # budget) and goes on the pair's history, which a prefetched link must not do.
            path("<int:pk>/check/", self.admin_site.admin_view(require_POST(self.check_view)),
                 name="scaling_scalingpair_check"),
            path("<int:pk>/scale-now/", self.admin_site.admin_view(self.scale_now_view), name="scaling_scalingpair_scale_now"),
            path("<int:pk>/pause/", self.admin_site.admin_view(self.pause_view), name="scaling_scalingpair_pause"),
            path("<int:pk>/resume/", self.admin_site.admin_view(require_POST(self.resume_view)),
                 name="scaling_scalingpair_resume"),
            path("<int:pk>/run-cycle/", self.admin_site.admin_view(require_POST(self.run_cycle_view)),
                 name="scaling_scalingpair_run_cycle"),
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
                    [("visible messages", "#1f77b4", [p[1] for p in series], "left"),
                     ("dynos running", "#2ca02c", [p[2] for p in series], "right"),
                     ("dynos desired", "#d62728", [p[3] for p in series], "right"),
                     *([("pre-warm (shadow)", "#9467bd", [p[4] for p in series], "right")]
                       if any(p[4] is not None for p in series) else [])],
                    title=f"Backlog and dynos of {pair.name}",
                ),
                **learned_context(pair),
                "latest_decisions": (latest := list(pair.decisions.order_by("-created_at", "-id")[:20])),
                # Quiet cycles fold into one row written when the run ends: the latest may be newer.
                "latest_cycle": selectors.open_run_last(pair, after=latest[0].created_at if latest else None),
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
        checks = services.pair_check_connection(pair=pair)
        for check in checks:
            level = messages.SUCCESS if check.ok else messages.ERROR
            self.message_user(request, f"{_named(pair)}: {check.what}: {'OK' if check.ok else 'FAILED'} — {check.detail}", level)
        self.log_change(request, pair, "Checked the connection: " + "; ".join(
            f"{check.what} OK" if check.ok else f"{check.what} FAILED ({check.detail})" for check in checks))

    def scale_now_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        pair = self._pair_or_404(request, pk, change=True)
        return self._number_step(request, [pair], form_class=ScaleNowForm, action="", done=self._do_scale_now) or self._back(pair)

    def pause_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        pair = self._pair_or_404(request, pk, change=True)
        return self._number_step(request, [pair], form_class=PauseForm, action="", done=self._do_pause) or self._back(pair)

    def resume_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        pair = self._pair_or_404(request, pk, change=True)
        self.resume_pairs(request, ScalingPair.objects.filter(pk=pair.pk))
        return self._back(pair)

    def run_cycle_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        pair = self._pair_or_404(request, pk, change=True)
        self.run_cycle_now(request, ScalingPair.objects.filter(pk=pair.pk))
        return self._back(pair)

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
            except (AdapterError, SecretUnreadable) as exc:
                problem = exc.message if isinstance(exc, AdapterError) else str(exc)
                self.message_user(request, f"{_named(pair)}: not scaled — {problem}", messages.ERROR)
                self.log_change(request, pair, f"Asked to scale now to {quantity} dynos: not scaled ({problem})")
                continue
            self.message_user(request, f"{_named(pair)}: {decision.reason}.", messages.SUCCESS)
            self.log_change(request, pair, f"Scaled now to {decision.applied_quantity} dynos "
                                           f"(from {decision.quantity_before}); decision #{decision.pk}")

    def _do_pause(self, request: HttpRequest, pairs: list[ScalingPair], minutes: int) -> None:
        for pair in pairs:
            until = services.pair_pause(pair=pair, minutes=minutes, user=request.user.get_username())
            self.message_user(request, f"{_named(pair)}: paused until {_when(until)}; cycles observe and record only.",
                              messages.SUCCESS)
            self.log_change(request, pair, f"Paused for {minutes} minute{'s' if minutes != 1 else ''} (until {_when(until)})")

    @admin.action(description="Check connection (reads only, changes nothing)")
    def check_connection(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        for pair in queryset.select_related("heroku_account", "aws_account"):
            self._report_checks(request, pair)

    @admin.action(description="Subscribe their apps to Heroku webhooks (fewer Heroku calls, changes seen at once)")
    def subscribe_webhooks(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        try:
            apps = services.apps_of(list(queryset.select_related("heroku_account")))
        except SecretUnreadable as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        if not apps:
            self.message_user(request, "None of these pairs scales a Heroku app.", messages.WARNING)
        said_of = report_webhooks(self, request, apps, "subscribe")
        for pair in queryset:
            if pair.provider == ScalingPair.Provider.HEROKU:
                said = said_of.get(pair.app_name, "nothing was subscribed: DYNOSCALER_PUBLIC_URL is not set")
                self.log_change(request, pair, f"Asked to subscribe its app {pair.app_name} to Heroku webhooks: {said}")

    @admin.action(description="Pause for N minutes…")
    def pause_pairs(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> TemplateResponse | None:
        return self._number_step(request, list(queryset), form_class=PauseForm, action="pause_pairs", done=self._do_pause)

    @admin.action(description="Resume (end a pause)")
    def resume_pairs(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        pairs = list(queryset)
        now = timezone.now()
        for pair in pairs:
            services.pair_resume(pair=pair)
            if pair.is_paused(now):
                by = f" by {pair.paused_by}" if pair.paused_by else ""
                self.log_change(request, pair, f"Resumed (it was paused{by} until {_when(pair.paused_until)})")
            else:
                self.log_change(request, pair, "Resumed (it was not paused)")
        self.message_user(request, f"Resumed: {', '.join(p.name for p in pairs)}.", messages.SUCCESS)

    @admin.action(description="Scale now to N dynos…")
    def scale_now(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> TemplateResponse | None:
        return self._number_step(request, list(queryset), form_class=ScaleNowForm, action="scale_now", done=self._do_scale_now)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # After the queues are saved too: the beat task follows the pair.
        pair = form.instance
        # Another app, process type or provider, or other queues: what was learned is about something else.
        queues_changed = any(fs.has_changed() for fs in formsets if fs.model is PairQueue)
        repointed = bool({"app_name", "process_type", "provider"} & set(form.changed_data)) or queues_changed
        services.pair_apply_settings(pair=pair, repointed=repointed)
        if not change:  # a new pair's first cycle runs now, not an interval later
            services.pair_first_cycle(pair=pair, then=lambda asked: self._report_cycle(request, pair, asked, first=True))

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """What deleting the pairs takes with them, counted, not listed: a pair keeps a chart
        sample per cycle (46,000 in eight days at 15 s), and listing each made the page
        1.7 MB and took longer than Heroku's router waits, on the confirmation and the delete."""
        pairs = list(objs)
        deleted: list[Any] = []
        counts = {"queues": 0, "schedules": 0, "samples": 0}
        for pair in pairs:
            queues = [f"Queue: {q.queue} ({q.region})" for q in pair.queues.all()]
            schedules = [f"Schedule window: {s.as_window().describe()}" for s in pair.schedules.all()]
            samples = PairSample.objects.filter(pair=pair).count()
            counts["queues"] += len(queues)
            counts["schedules"] += len(schedules)
            counts["samples"] += samples
            deleted += [f"Scaling pair: {pair.name} ({pair.app_name}/{pair.process_type})",
                        [*queues, *schedules, f"{samples:,} chart sample(s), one per cycle",
                         "its decisions stay in the history, with its name"]]
        model_count = {str(ScalingPair._meta.verbose_name_plural): len(pairs)}
        perms_needed = set()
        for model, key in ((PairQueue, "queues"), (PairSchedule, "schedules"), (PairSample, "samples")):
            if counts[key]:
                model_count[str(model._meta.verbose_name_plural)] = counts[key]
                if not request.user.has_perm(f"scaling.delete_{model._meta.model_name}"):
                    perms_needed.add(str(model._meta.verbose_name))
        if not all(self.has_delete_permission(request, pair) for pair in pairs):
            perms_needed.add(str(ScalingPair._meta.verbose_name))
        return deleted, model_count, perms_needed, []

    def delete_model(self, request: HttpRequest, obj: ScalingPair) -> None:
        services.pair_delete(pair=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        for pair in queryset:
            services.pair_delete(pair=pair)

    def _set(self, request: HttpRequest, queryset: QuerySet[ScalingPair], what: str, **values: bool) -> None:
        pairs = list(queryset)
        for pair in pairs:
            already = all(getattr(pair, name) == value for name, value in values.items())
            for name, value in values.items():
                setattr(pair, name, value)
            pair.save(update_fields=[*values, "updated_at"])
            services.pair_apply_settings(pair=pair)
            self.log_change(request, pair, what + (" (it already was)" if already else ""))
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

    @admin.action(description="Run one cycle now (queued for a worker)")
    def run_cycle_now(self, request: HttpRequest, queryset: QuerySet[ScalingPair]) -> None:
        for pair in queryset:
            if not pair.enabled:
                self.message_user(request, f"{_named(pair)}: not run: the pair is disabled.", messages.WARNING)
                self.log_change(request, pair, "Asked for a cycle now: not run, the pair is disabled")
                continue
            asked = services.pair_cycle_ask(pair_id=pair.pk, requested_by=request.user.get_username())
            self._report_cycle(request, pair, asked)

    def _report_cycle(self, request: HttpRequest, pair: ScalingPair, asked: services.CycleAsked, *,
                      first: bool = False) -> None:
        """Say what became of a cycle asked for now; one the operator asked for goes into History."""
        cycle = "its first cycle" if first else "a cycle"
        decision = asked.decision
        if asked.queued:
            self.message_user(request, f"{_named(pair)}: {cycle} is queued for a worker; its decision appears in the "
                              "pair's latest decisions within seconds.", messages.SUCCESS)
            done = "queued for a worker"
        elif decision is None:
            self.message_user(request, f"{_named(pair)}: the task queue is unreachable, and a cycle of this pair is "
                              "already running.", messages.WARNING)
            done = "the task queue was unreachable, and a cycle of the pair was already running"
        else:
            level = messages.ERROR if decision.outcome == Decision.Outcome.ERROR else messages.SUCCESS
            text = (f"{_named(pair)} (the task queue is unreachable, so {cycle} ran here): "
                    f"{decision.get_outcome_display()}: {decision.reason}")
            self.message_user(request, text + (f" [{decision.error}]" if decision.error else ""), level)
            done = f"the task queue was unreachable, so it ran here: {decision.get_outcome_display()}"
        if not first:
            self.log_change(request, pair, f"Asked for a cycle now ({done})")


def _when(moment: datetime | None) -> str:
    """A time in an action's message: the clock alone today, with the date otherwise (UTC)."""
    if moment is None:
        return "—"
    moment = moment.astimezone(UTC)
    same_day = moment.date() == timezone.now().astimezone(UTC).date()
    return f"{moment:%H:%M} UTC" if same_day else f"{moment:%Y-%m-%d %H:%M} UTC"


def _named(pair: ScalingPair) -> str:
    """A pair as a message names it. The admin capitalises a message's first letter, so a
    message never starts with the operator's own spelling of the name."""
    return f"Pair “{pair.name}”"
