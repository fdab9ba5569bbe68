"""The request type the console's views see (for type checkers)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class ConsoleRequest(HttpRequest):
    htmx: HtmxDetails
    user: User  # login_required has run
