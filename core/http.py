"""The request type the console's views see (for type checkers), and where a request
came from."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from core.config import IPNetwork


class ConsoleRequest(HttpRequest):
    htmx: HtmxDetails
    user: User  # login_required has run


def _trusted(address: str, proxies: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_ip(request: HttpRequest, proxies: Sequence[IPNetwork] | None = None) -> str | None:
    """The address of whoever sent ``request``: the peer's, unless the peer is one of
    ``L10_TRUSTED_PROXIES``; then the last address of ``X-Forwarded-For`` that is not a
    trusted proxy (each proxy appends the address it heard from, so the addresses left of
    the first untrusted one could be anything the client wrote)."""
    peer = request.META.get("REMOTE_ADDR")
    proxies = settings.L10.trusted_proxies if proxies is None else proxies
    if not peer or not proxies or not _trusted(peer, proxies):
        return peer
    chain = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    for address in reversed(chain):
        if not _trusted(address, proxies):
            try:
                return str(ipaddress.ip_address(address))
            except ValueError:
                return peer  # not an address: the header was not written by a proxy we trust
    return chain[0] if chain else peer
