from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """The hub (publish and fan-out), the socket base class, the event socket and the gateway."""

    name = "realtime"
    verbose_name = "Real time"
