"""Coordination between processes: named expiring leases, signs of life and the kill switch."""

from __future__ import annotations

from django.db import models


class Lease(models.Model):
    """A named, expiring claim, taken with a conditional UPDATE instead of a row lock, so
    no transaction stays open while the holder talks to the network."""

    key = models.CharField(max_length=100, primary_key=True)
    holder = models.UUIDField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.key


class Heartbeat(models.Model):
    """When a kind of process last showed it works: ``workers`` is written when a worker
    finishes a task (at most every few seconds per process), and watched by beat
    (``scaling.alerts.watch``)."""

    key = models.CharField(max_length=50, primary_key=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.key} at {self.at:%Y-%m-%d %H:%M:%S}"


class KillSwitch(models.Model):
    """One row: while engaged, DynoScaler changes no formation anywhere."""

    engaged = models.BooleanField(default=False)
    changed_by = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = "kill switch"

    def __str__(self) -> str:
        return "engaged" if self.engaged else "off"

    @classmethod
    def current(cls) -> KillSwitch:
        switch, _ = cls.objects.get_or_create(pk=1)
        return switch

    @classmethod
    def engaged_now(cls) -> KillSwitch | None:
        """The switch if it is engaged (one indexed read): every check of it goes through here."""
        return cls.objects.filter(pk=1, engaged=True).first()

    @classmethod
    def is_engaged(cls) -> bool:
        return cls.engaged_now() is not None
