"""The console's own 404 page in debug mode too, and /favicon.ico."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [True, False])
def test_an_unknown_address_gets_the_consoles_page_not_djangos_list_of_patterns(settings, debug):
    settings.DEBUG = debug
    response = Client().get("/no/such/page/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "Nothing here" in page
    assert "URLconf" not in page and "healthz" not in page


@pytest.mark.parametrize("debug", [True, False])
def test_a_tenant_one_is_not_a_member_of_gets_the_consoles_404(settings, viewer_a, tenant_b, debug):
    settings.DEBUG = debug
    response = client_for(viewer_a).get("/t/globex/agents/")
    assert response.status_code == 404
    assert "Nothing here" in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_a_missing_slash_still_redirects_in_debug(settings, viewer_a):
    settings.DEBUG = True
    response = client_for(viewer_a).get("/t/acme/agents")
    assert response.status_code == 301 and response["Location"] == "/t/acme/agents/"


def test_the_favicon_address_leads_to_the_consoles_icon():
    response = Client().get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/img/favicon.svg"
    icon = Client().get(response["Location"])
    assert icon.status_code == 200
    assert b"<svg" in icon.getvalue()
