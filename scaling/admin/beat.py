"""Beat's periodic tasks, to look at, not to edit."""

from __future__ import annotations

import django_celery_beat.admin  # noqa: F401  registers beat's stock admin, replaced below
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule

from scaling.admin.base import GuardedAdmin
from scaling.beat import FLUSH_SECONDS
from scaling.models import ScalingPair

# --- beat's periodic tasks: to look at, not to edit ---------------------------------------
# DynoScaler writes one periodic task per pair (services.pair_schedule_sync) and two of its
# own from settings. Editing one by hand would desynchronise it from its pair, and beat's
# stock admin answers some bad input (an unregistered task name, a crontab field of "-1",
# an over-long time zone) with a 500; so the tasks are shown read-only and the schedule
# models not at all.
for _model in (PeriodicTask, IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(GuardedAdmin):
    list_display = ["name", "pair", "task", "interval", "enabled", "sent_by_beat", "runs_sent"]
    list_filter = ["enabled", "task"]
    search_fields = ["name", "task", "description"]
    list_select_related = ["interval", "scalingpair"]
    readonly_fields = ["name", "pair", "task", "args", "interval", "enabled", "expire_seconds", "last_run_at",
                       "total_run_count", "date_changed", "description"]
    fields = tuple(readonly_fields)
    actions = None

    # Beat writes these every five minutes (and when it stops), not at each send: a pair
    # cycling every 10 s would otherwise cost a write per cycle. Said in the column names.
    @admin.display(description=f"last sent (written every {FLUSH_SECONDS / 60:g} min)", ordering="last_run_at")
    def sent_by_beat(self, task: PeriodicTask) -> object:
        return task.last_run_at

    @admin.display(description=f"times sent (written every {FLUSH_SECONDS / 60:g} min)", ordering="total_run_count")
    def runs_sent(self, task: PeriodicTask) -> int:
        return task.total_run_count

    @admin.display(description="pair")
    def pair(self, task: PeriodicTask) -> str:
        try:
            pair = task.scalingpair
        except ScalingPair.DoesNotExist:  # one of DynoScaler's own tasks (shipping, pruning)
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:scaling_scalingpair_change", args=[pair.pk]), pair.name)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
