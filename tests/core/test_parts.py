"""Page parts read side by side (core.parts)."""

from __future__ import annotations

import threading

import pytest
from django.db import transaction

from core import parts
from tenancy.models import Tenant
from tests.factories import TenantFactory


def _where() -> tuple[str, int]:
    return threading.current_thread().name, Tenant.objects.count()


@pytest.mark.django_db(transaction=True)
def test_a_part_runs_on_a_part_thread_and_sees_committed_rows():
    TenantFactory.create(slug="acme")
    name, tenants = parts.beside(_where)()
    assert name.startswith("page-part") and tenants == 1


@pytest.mark.django_db(transaction=True)
def test_a_parts_error_reaches_the_caller():
    def fails() -> None:
        raise ValueError("metrics store down")

    wait = parts.beside(fails)
    with pytest.raises(ValueError, match="metrics store down"):
        wait()


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_a_part_runs_inline_and_sees_its_rows():
    with transaction.atomic():
        TenantFactory.create(slug="acme")  # not committed: another connection would not see it
        name, tenants = parts.beside(_where)()
    assert name == threading.current_thread().name and tenants == 1


def test_http_threads_leave_room_for_the_parts_in_the_pool():
    assert parts.http_threads(20, wanted=100) == 20 - parts.PART_THREADS
    assert parts.http_threads(parts.PART_THREADS, wanted=100) == parts.PART_THREADS  # parts run inline then
    assert parts.http_threads(20, wanted=4) == 4  # L10_HTTP_THREADS, below what the pool allows
