# The error rate is failed requests per request, errors capped at the requests, and no rate
# without requests (core.stats.error_rate): the overview's top ten by it walks this index.

import django.db.models.expressions
import django.db.models.functions.comparison
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("fleet", "0009_tenant_metric_minute"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="agent",
            name="agent_top_error_rate",
        ),
        migrations.AddIndex(
            model_name="agent",
            index=models.Index(
                models.F("tenant"),
                models.OrderBy(
                    django.db.models.expressions.CombinedExpression(
                        django.db.models.functions.comparison.Least(
                            models.F("errors_per_min"), models.F("requests_per_min"), output_field=models.FloatField()
                        ),
                        "/",
                        django.db.models.functions.comparison.NullIf(
                            models.F("requests_per_min"), 0.0, output_field=models.FloatField()
                        ),
                    ),
                    descending=True,
                ),
                condition=models.Q(
                    ("errors_per_min__gt", 0), ("metrics_at__isnull", False), ("requests_per_min__gt", 0)
                ),
                name="agent_top_error_rate",
            ),
        ),
    ]
