"""Adding default rules (alerts/services.py, ``DEFAULT_RULES``) to the tenants that exist."""

from django.utils import timezone


def add(apps, *, names=None):
    from alerts.services import DEFAULT_RULES

    Tenant = apps.get_model("tenancy", "Tenant")
    AlertRule = apps.get_model("alerts", "AlertRule")
    now = timezone.now()
    for tenant in Tenant.objects.all():
        for name, metric, agg, comp, threshold, resolve, window, for_s, samples, no_data, severity in DEFAULT_RULES:
            if names is not None and name not in names:
                continue
            AlertRule.objects.get_or_create(
                tenant=tenant, name=name,
                defaults={
                    "metric": metric, "aggregation": agg, "comparator": comp, "threshold": threshold,
                    "resolve_threshold": resolve, "window_seconds": window, "for_seconds": for_s,
                    "min_samples": samples, "no_data": no_data, "severity": severity, "created_at": now,
                    "updated_at": now,
                },
            )  # fmt: skip
