"""The Celery application: worker and beat both start from here."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_ready

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
