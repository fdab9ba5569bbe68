from __future__ import annotations

from celery import shared_task

from costs import rollups, services


@shared_task(name="costs.tasks.price_unpriced", ignore_result=True, time_limit=3600, soft_time_limit=3500)
def price_unpriced(tenant_id: int | None) -> int:
    """After a price is added: the tenant's (every tenant's, for None) usage stored without
    a price that it now has one for; the number priced."""
    return services.price_unpriced(tenant_id=tenant_id)


@shared_task(name="costs.tasks.rollup", ignore_result=True, time_limit=1800, soft_time_limit=1700)
def rollup() -> tuple[int, int]:
    """The hourly cost rollups (every five minutes): recent hours, then dirty ones."""
    return rollups.rollup()


@shared_task(name="costs.tasks.reprice", ignore_result=True, time_limit=3600, soft_time_limit=3500)
def reprice(price_id: int) -> int:
    """After a price's correction: the records it priced, costed again; the number changed."""
    return services.reprice(price_id=price_id)
