"""Beat's side of the Celery broker: what kombu does not offer, kept apart from the
scheduler (which only decides what to send when)."""

from __future__ import annotations

from typing import Any

from kombu.exceptions import OperationalError


def broker_errors(producer: Any) -> tuple[type[BaseException], ...]:
    """The exceptions that mean the broker is away (down, restarting, unreachable), not a
    fault in what was sent: kombu's own and those of the transport in use."""
    connection = producer.connection
    if connection is None:
        return (OperationalError,)
    return (OperationalError, *connection.connection_errors, *connection.channel_errors)


def reuse_one_redis_client(producer: Any) -> None:
    """kombu's Redis channel builds a new redis client object for every publish, and
    building one (its table of reply handlers) is most of a send's CPU: about 1 ms. Beat
    publishes from one thread, so one client (over the channel's own connection pool)
    serves every send. A channel kombu makes anew after a broker failure works as before."""
    channel = producer.channel
    make = getattr(channel, "_create_client", None)
    if make is None or getattr(producer.connection.transport, "driver_type", "") != "redis":
        return
    client = make()
    channel._create_client = lambda asynchronous=False: make(asynchronous=True) if asynchronous else client


def broker_queue_depth_reader(app: Any) -> Any:
    """A function returning how many tasks wait in the default queue, or None when the
    broker is not Redis (then nothing is held back)."""
    url = app.conf.broker_url or ""
    if not url.startswith(("redis://", "rediss://")):
        return None
    import redis

    options: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2}
    if url.startswith("rediss://") and app.conf.broker_use_ssl:
        options.update(app.conf.broker_use_ssl)
    client = redis.Redis.from_url(url, **options)
    queue = app.conf.task_default_queue or "celery"
    return lambda: client.llen(queue)
