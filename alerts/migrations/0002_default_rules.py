"""Tenants made before alerting get the default rules a new tenant gets (alerts/services.py)."""

from django.db import migrations

from alerts.migrations import _rules


def add_default_rules(apps, schema_editor):
    _rules.add(apps)


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial"), ("tenancy", "0001_initial")]
    operations = [migrations.RunPython(add_default_rules, migrations.RunPython.noop)]
