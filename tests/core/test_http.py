"""Where a request came from (core/http.py): the peer, or behind trusted proxies the last
address of X-Forwarded-For that is not one of them."""

from __future__ import annotations

import ipaddress

import pytest
from django.test import RequestFactory

from core.http import client_ip

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", "", "203.0.113.9"),  # no proxy
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # an untrusted peer cannot name another address
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),  # the proxy heard from the client
        (
            "10.0.0.2",
            "6.6.6.6, 198.51.100.1, 10.0.0.7",
            "198.51.100.1",
        ),  # left of the first untrusted: the client's words
        ("10.0.0.2", "10.0.0.8, 10.0.0.7", "10.0.0.8"),  # proxies all the way: the first one named
        ("10.0.0.2", "not-an-address", "10.0.0.2"),  # a header no trusted proxy wrote
        ("10.0.0.2", "", "10.0.0.2"),
        ("::1", "2001:db8::5", "2001:db8::5"),
    ],
)
def test_the_client_address_is_taken_from_forwarded_for_only_behind_a_trusted_proxy(peer, forwarded, expected):
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    request = RequestFactory().get("/", REMOTE_ADDR=peer, **headers)
    assert client_ip(request, PROXIES) == expected
    assert client_ip(request, ()) == peer  # no trusted proxy configured: always the peer
