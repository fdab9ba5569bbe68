"""The Python API's ``AlertService`` (docs/python-api.md)::

    alert_service = AlertService(metrics_engine=metrics_engine)
    alerts = await alert_service.get_active_alerts()
    await alert_service.acknowledge_alert(alert_id="alert-123", user="user-456")
    await alert_service.snooze_alert(alert_id="alert-456", duration=timedelta(hours=1))

An alert's id reads ``alert-<n>`` (the number alone is taken too); ``user`` is the acting
person's username, whose role in the alert's tenant is checked (an operator at least).
Without a user the caller acts as the system, as the console's own tasks do. Refusals
raise ``InterfaceError`` (E107xx; E10004 for too low a role). ``metrics_engine``: where
``evaluate()`` reads the fleet's figures: the dashboard's ``MetricsEngine`` (which includes
the ``alerts.evaluation.MetricsSource`` reads), by default the console's metric store; the
evaluation itself is the Celery task's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.utils import timezone

from alerts import evaluation, selectors, services
from alerts.models import OPEN_STATES, Alert
from audit.services import SYSTEM, Actor, actor_named
from core.errors import ErrorCode, InterfaceError
from tenancy.selectors import tenant_by_ref


@dataclass(frozen=True)
class ActiveAlert:
    id: str
    tenant_id: int
    rule: str
    agent_id: str | None
    severity: str
    state: str
    message: str
    value: float | None
    started_at: datetime
    fired_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    snoozed_until: datetime | None

    @classmethod
    def of(cls, alert: Alert) -> ActiveAlert:
        return cls(
            id=f"alert-{alert.pk}", tenant_id=alert.tenant_id, rule=alert.rule.name,
            agent_id=None if alert.agent_id is None else str(alert.agent_id), severity=alert.severity,
            state=alert.state, message=alert.message, value=alert.value, started_at=alert.started_at,
            fired_at=alert.fired_at,
            acknowledged_by=alert.acknowledged_by.get_username() if alert.acknowledged_by else None,
            acknowledged_at=alert.acknowledged_at, snoozed_until=alert.snoozed_until,
        )  # fmt: skip


def alert_pk(alert_id: str | int) -> int:
    text = str(alert_id).strip().removeprefix("alert-")
    if not text.isdigit():
        raise InterfaceError(ErrorCode.ALERT_NOT_FOUND, f"No alert {str(alert_id)[:40]!r}; ids read alert-<number>.")
    return int(text)


def _actor(user: str | User | None) -> Actor:
    return SYSTEM if user is None else actor_named(user)


def _fresh(pk: int) -> ActiveAlert:
    return ActiveAlert.of(Alert.objects.select_related("rule", "acknowledged_by").get(pk=pk))


class AlertService:
    def __init__(self, metrics_engine: evaluation.MetricsSource | None = None) -> None:
        self.metrics_engine = metrics_engine

    async def get_active_alerts(self, tenant_id: str | int | None = None) -> list[ActiveAlert]:
        """Open alerts (pending and firing), newest first; one tenant's when named."""

        def read() -> list[ActiveAlert]:
            alerts = Alert.objects.filter(state__in=OPEN_STATES).select_related("rule", "acknowledged_by")
            if tenant_id is not None:
                tenant = tenant_by_ref(tenant_id)
                if tenant is None:
                    raise InterfaceError(ErrorCode.TENANT_NOT_FOUND)
                alerts = alerts.filter(tenant=tenant)
            return [ActiveAlert.of(a) for a in alerts.order_by("-started_at", "-id")]

        return await sync_to_async(read)()

    async def acknowledge_alert(
        self, *, alert_id: str | int, user: str | User | None = None, comment: str = "", until: datetime | None = None
    ) -> ActiveAlert:
        def run() -> ActiveAlert:
            pk = alert_pk(alert_id)
            services.alert_acknowledge(alert_id=pk, actor=_actor(user), comment=comment, until=until)
            return _fresh(pk)

        return await sync_to_async(run)()

    async def snooze_alert(
        self, *, alert_id: str | int, duration: timedelta | None = None, until: datetime | None = None,
        user: str | User | None = None,
    ) -> ActiveAlert:  # fmt: skip
        def run() -> ActiveAlert:
            pk = alert_pk(alert_id)
            services.alert_snooze(alert_id=pk, actor=_actor(user), duration=duration, until=until)
            return _fresh(pk)

        return await sync_to_async(run)()

    async def attention_count(self, tenant_id: str | int) -> int:
        def read() -> int:
            tenant = tenant_by_ref(tenant_id)
            if tenant is None:
                raise InterfaceError(ErrorCode.TENANT_NOT_FOUND)
            return selectors.attention_count(tenant.pk)

        return await sync_to_async(read)()

    async def evaluate(self, *, now: datetime | None = None) -> Any:
        """Evaluate every tenant's rules once, reading from ``metrics_engine``."""
        return await sync_to_async(evaluation.evaluate)(now=now or timezone.now(), source=self.metrics_engine)
