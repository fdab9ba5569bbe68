"""A new tenant starts with the default alert rules (``alerts.services.default_rules``)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from alerts.services import default_rules
from tenancy.models import Tenant


@receiver(post_save, sender=Tenant, dispatch_uid="alerts-default-rules")
def tenant_created(sender: type[Tenant], instance: Tenant, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if created and not raw:
        transaction.on_commit(lambda: default_rules(instance), robust=True)
