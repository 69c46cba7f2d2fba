"""Pages beyond the model admin: status, the kill switch, the health check, and Heroku's webhooks."""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from scaling import selectors, services
from scaling.alerts.watch import silent_after, workers_last_seen
from scaling.models import KillSwitch, ScalingPair


def status(request: HttpRequest) -> TemplateResponse:
    now = timezone.now()
    seen = workers_last_seen()
    context = {
        **admin.site.each_context(request),
        "title": "Status",
        "rows": selectors.pairs_status(),
        "switch": KillSwitch.current(),
        "unshipped": selectors.unshipped_decision_count(),
        "now": now,
        "workers_seen": seen,
        "env_problems": ScalingPair.objects.filter(managed_by_env=True).exclude(env_problem="").only("pk", "name", "env_problem"),
        "workers_silent": seen is None or now - seen > silent_after(),
    }
    return TemplateResponse(request, "admin/scaling/status.html", context)


@require_POST
def kill_switch(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("scaling.change_scalingpair"):
        raise PermissionDenied
    engage = {"1": True, "0": False}.get(request.POST.get("engage", ""))
    if engage is None:
        messages.error(request, "The kill switch was not changed: the form must say engage (1) or release (0).")
        return redirect("/admin/status/")
    # An emergency stop must not fail on its note: a NUL byte, which PostgreSQL cannot store, is dropped.
    note = request.POST.get("note", "").replace("\x00", "").strip()
    switch = services.kill_switch_set(engaged=engage, user=request.user.get_username(), note=note)
    # Who pulled or released the emergency stop, in the admin's history like every operator action.
    assert request.user.pk is not None  # only a user with the permission gets here
    LogEntry.objects.log_actions(user_id=request.user.pk, queryset=[switch], action_flag=CHANGE, single_object=True,
                                 change_message=("Engaged the kill switch" if engage else "Released the kill switch")
                                 + (f": {note[:200]}" if note else ""))
    if engage:
        messages.warning(request, "Kill switch engaged: DynoScaler will change no formation until it is released.")
    else:
        messages.success(request, "Kill switch released: pairs may change formations again.")
    target = request.POST.get("next", "")
    return redirect(target if target.startswith("/admin/") and target.isprintable() else "/admin/status/")


def healthz(request: HttpRequest) -> JsonResponse:
    """The web dyno's health for Heroku: 200 while it and its database answer.

    Also reports stalled pairs, the kill switch and how long ago a worker last finished a
    task, for monitors; those do not make the
    web dyno unhealthy (restarting it would not help them)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        stalled = selectors.stalled_pair_count()
        engaged = KillSwitch.is_engaged()
        seen = workers_last_seen()
    except Exception as exc:  # any database failure makes the dyno unhealthy
        return JsonResponse({"ok": False, "database": type(exc).__name__}, status=503)
    # Seconds since a worker last finished a task (None: never): a monitor's view of the
    # workers that needs neither beat nor the workers to be up.
    idle = round((timezone.now() - seen).total_seconds()) if seen else None
    return JsonResponse({"ok": True, "stalled_pairs": stalled, "kill_switch": engaged, "workers_last_task_seconds": idle})


@csrf_exempt
@require_POST
def heroku_webhook(request: HttpRequest, token: uuid.UUID) -> HttpResponse:
    """Heroku's deliveries of an app's formation and dyno events (see services.webhooks)."""
    received = services.webhook_receive(
        token=token, body=request.body, signature=request.headers.get("Heroku-Webhook-Hmac-SHA256"))
    return HttpResponse(received.note, status=received.status, content_type="text/plain")
