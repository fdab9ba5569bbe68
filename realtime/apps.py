from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.http import HttpRequest


class RealtimeConfig(AppConfig):
    """The hub (publish and fan-out), the socket base class, the event socket and the gateway."""

    name = "realtime"
    verbose_name = "Real time"

    def ready(self) -> None:
        # Tenancy is below us and cannot call the hub: it says when a grant ends, and the
        # hub closes the sockets that grant opened, in every process.
        from django.contrib.auth.signals import user_logged_out

        from tenancy.signals import access_revoked

        access_revoked.connect(end_revoked_access, dispatch_uid="realtime.end_revoked_access")
        user_logged_out.connect(end_session_access, dispatch_uid="realtime.end_session_access")


def end_revoked_access(sender: object, *, principals: list[str], reason: str, **kwargs: Any) -> None:
    """``tenancy.signals.access_revoked`` (sent after commit): close those grants' sockets."""
    from realtime import hub

    hub.revoke(principals, reason)


def end_session_access(sender: object, *, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Django's ``user_logged_out``: close the sockets of the session that signed out. The
    person's other sessions (another browser, another device) keep theirs."""
    from django.db import transaction

    from realtime import hub
    from tenancy.signals import SIGNED_OUT, session_principal

    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if user is None or not key:
        return
    principal = session_principal(user.pk, key)
    transaction.on_commit(lambda: hub.revoke([principal], SIGNED_OUT), robust=True)
