"""ASGI entry point: HTTP through Django, sockets through Channels, lifespan hooks.

Django's views are synchronous, so HTTP goes to Django's WSGI handler on a fixed pool of
threads (``core.asgi.WsgiThreads``): one hop to a warm thread per request and one back.
Under Django's ASGI handler each request started a new thread (asgiref's per-request
thread-sensitive context); measured, that path cost about 2 ms more CPU per request than
a pool, more than a heartbeat's own work. ``L10_HTTP_THREADS`` threads (4), never more
than the pooled database connections less those kept for page parts read side by side
(``core.parts``), so a thread never waits for a connection. More threads than the process's core can keep busy cost CPU per
request and throughput as clients grow (docs/performance.md, "Threads per process").
"""

from __future__ import annotations

import gc
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from core.asgi import BodyLimit, Lifespan, WsgiThreads
from core.parts import http_threads

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "l10console.settings")
django_http = WsgiThreads(
    get_wsgi_application(),
    threads=http_threads(settings.L10.postgres_pool_max, settings.L10.http_threads),
)

# Imports that touch models come after Django is set up.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from core.errors import ErrorCode, InterfaceError  # noqa: E402
from core.runner import embedded  # noqa: E402
from ingest.coalesce import HeartbeatPath  # noqa: E402
from l10console.routing import websocket_urlpatterns  # noqa: E402
from realtime import hub  # noqa: E402

# The cyclic garbage collector stops the process while it scans; with a thousand sockets
# open a full scan took long enough to show in the heartbeat tail. What is loaded by now
# (Django, the apps, the URLconf) lives as long as the process: freeze it out of every
# scan, and collect the young generation less often.
GC_THRESHOLDS = (700, 10, 1000)


def _startup() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    if settings.EMBEDDED:
        embedded.start_periodic()


async def _shutdown() -> None:
    embedded.stop_periodic()
    await hub.close_current()


_too_large = InterfaceError(
    ErrorCode.INGEST_BODY_TOO_LARGE,
    f"The request body is larger than {settings.L10.ingest_max_body_bytes} bytes; nothing was stored.",
).as_dict()

application = Lifespan(
    ProtocolTypeRouter(
        {
            # Heartbeats are taken on the event loop and written together, except on the
            # embedded default (ingest/coalesce.py).
            "http": BodyLimit(
                HeartbeatPath(django_http, enabled=not settings.EMBEDDED),
                limit=settings.L10.ingest_max_body_bytes,
                error_body=_too_large,
            ),
            "websocket": URLRouter(websocket_urlpatterns),
        }
    ),
    startup=_startup,
    shutdown=_shutdown,
)
