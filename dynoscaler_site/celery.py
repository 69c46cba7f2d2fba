"""The Celery application: worker and beat both start from here."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, task_postrun, task_prerun, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dynoscaler_site.settings")

app = Celery("dynoscaler")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@beat_init.connect
@worker_ready.connect
def _sync_legacy_pair(**_: Any) -> None:
    # The original tool's users set variables and restart; no admin step may be needed.
    from scaling.legacy_env import legacy_pair_sync_at_start

    legacy_pair_sync_at_start()


@worker_ready.connect
def _watch_beat(**_: Any) -> None:
    # Tells of a beat that stopped (scaling/alerts/watch.py); beat tells of stopped workers.
    from scaling.alerts.watch import BeatWatch

    BeatWatch().start()


@task_prerun.connect
@task_postrun.connect
def _keep_healthy_connections(task: Any = None, **_: Any) -> None:
    # What Django does around each request, around each task: a connection is kept for the
    # next task unless it is older than CONN_MAX_AGE, broken, or was left in a transaction;
    # with CONN_HEALTH_CHECKS its next use first checks it is alive. (Celery's own fix-up,
    # told by CELERY_DB_REUSE_MAX not to, no longer closes every connection every task.)
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@task_postrun.connect
def _workers_seen(task: Any = None, **_: Any) -> None:
    # Beat watches this note and tells of workers that stopped (scaling/alerts/watch.py).
    if task is None or getattr(task.request, "is_eager", False):
        return
    from django.db import Error as DatabaseError  # InterfaceError (a dropped connection) too

    from scaling.alerts.watch import workers_seen

    try:
        workers_seen()
    except DatabaseError:
        pass  # the task itself met the same database; its own error says so
