from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "l10console.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"
