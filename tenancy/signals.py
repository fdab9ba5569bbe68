"""What tenancy tells the apps above it when a grant ends.

``access_revoked`` is sent once a revocation has committed, with ``principals`` (the keys
of the grants that ended, spelled by the helpers below) and ``reason`` (one of
``REASONS``). Tenancy knows nothing of sockets: the real-time app listens and closes the
sockets those grants opened, in every process (docs/architecture.md, "Sockets"). A
person signing out is Django's own ``user_logged_out``; its session's key is
``session_principal``.
"""

from __future__ import annotations

import hashlib

from django.dispatch import Signal

access_revoked = Signal()
# A token made or revoked, sent in the change's transaction with ``token`` (an ``ApiToken``
# or a ``PersonalToken``), ``change`` ("created", "revoked", or "unchanged" for a token
# revoked already) and ``by`` (the account acting, or None for the system): the audit trail
# records it beside the change.
token_changed = Signal()

REVOKED = "revoked"
SIGNED_OUT = "signed_out"
EXPIRED = "expired"
REASONS = frozenset({REVOKED, SIGNED_OUT, EXPIRED})


def api_token_principal(token_id: int) -> str:
    return f"api-token:{token_id}"


def personal_token_principal(token_id: int) -> str:
    return f"personal-token:{token_id}"


def member_principal(user_id: int, tenant_id: int) -> str:
    """A person's membership of a tenant: removing it ends what they hold open there."""
    return f"member:{user_id}:{tenant_id}"


def session_principal(user_id: int, session_key: str) -> str:
    # A digest, never the key: the key is a credential, and principals travel between processes.
    digest = hashlib.sha256(session_key.encode()).hexdigest()[:32]
    return f"session:{user_id}:{digest}"
