"""Sessions in the database, as Django's ``db`` engine keeps them, read by one plain
statement (``tenancy.sql.session_by_key``): every signed-in request reads its session.
Writes, deletes and expiry are Django's own."""

from __future__ import annotations

import re

from django.contrib.sessions.backends import db
from django.contrib.sessions.models import Session
from django.utils import timezone

from tenancy import sql

# The keys Django makes (VALID_KEY_CHARS, 32 of them); any other cookie names no session.
KEY = re.compile(r"[a-z0-9]{8,40}")


class SessionStore(db.SessionStore):
    def _get_session_from_db(self) -> Session | None:
        key = self.session_key
        found = sql.session_by_key(key, timezone.now()) if key and KEY.fullmatch(key) else None
        if found is None:
            self._session_key = None
        return found
