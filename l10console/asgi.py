"""ASGI entry point: HTTP through Django, sockets through Channels, lifespan hooks."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "l10console.settings")
django_asgi = get_asgi_application()

# Imports that touch models come after Django is set up.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from l10console.errors import ErrorCode, InterfaceError  # noqa: E402
from l10console.lib.asgi import BodyLimit, Lifespan  # noqa: E402
from l10console.routing import websocket_urlpatterns  # noqa: E402
from l10console.runner import embedded  # noqa: E402


def _startup() -> None:
    if settings.EMBEDDED:
        embedded.start_periodic()


def _shutdown() -> None:
    embedded.stop_periodic()


_too_large = InterfaceError(
    ErrorCode.INGEST_BODY_TOO_LARGE,
    f"The request body is larger than {settings.L10.ingest_max_body_bytes} bytes; nothing was stored.",
).as_dict()

application = Lifespan(
    ProtocolTypeRouter(
        {
            "http": BodyLimit(django_asgi, limit=settings.L10.ingest_max_body_bytes, error_body=_too_large),
            "websocket": URLRouter(websocket_urlpatterns),
        }
    ),
    startup=_startup,
    shutdown=_shutdown,
)
