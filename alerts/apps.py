from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from alerts import signals  # noqa: F401 - a new tenant gets the default rules
        from alerts.approvals import on_requested
        from approvals.signals import requested

        # A new approval request is told to the tenant's targets (approvals does not
        # import alerts: it only says that a request was made).
        requested.connect(on_requested, dispatch_uid="alerts-approval-requested")
