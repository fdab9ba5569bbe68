# The overview's top tens served by indexes, and label selectors by a GIN index on
# PostgreSQL (docs/performance.md, "Tiles and filters at 50,000 agents").

import django.db.models.expressions
import django.db.models.functions.comparison
from django.db import migrations, models

# PostgreSQL only: SQLite has no GIN index and no JSON containment in Django, and its label
# selectors keep the key lookup (fleet/labels.py). jsonb_path_ops serves @> (containment),
# the only operator the selectors use on PostgreSQL, in a smaller index than jsonb_ops.
LABELS_GIN = "CREATE INDEX IF NOT EXISTS agent_labels_gin ON fleet_agent USING gin (labels jsonb_path_ops)"
LABELS_GIN_DROP = "DROP INDEX IF EXISTS agent_labels_gin"


def create_labels_gin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(LABELS_GIN)
        # Fresh statistics for the planner's estimates of label filters (it reads the MCV
        # list of the labels column for @>); autovacuum keeps them up to date afterwards.
        schema_editor.execute("ANALYZE fleet_agent")


def drop_labels_gin(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(LABELS_GIN_DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("fleet", "0007_rollup_backlog_sample_ids"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="agent",
            index=models.Index(
                models.F("tenant"),
                models.OrderBy(models.F("cpu_percent"), descending=True),
                condition=models.Q(("cpu_percent__isnull", False), ("metrics_at__isnull", False)),
                name="agent_top_cpu",
            ),
        ),
        migrations.AddIndex(
            model_name="agent",
            index=models.Index(
                models.F("tenant"),
                models.OrderBy(models.F("tokens_per_min"), descending=True),
                condition=models.Q(("metrics_at__isnull", False), ("tokens_per_min__gt", 0)),
                name="agent_top_tokens",
            ),
        ),
        migrations.AddIndex(
            model_name="agent",
            index=models.Index(
                models.F("tenant"),
                models.OrderBy(
                    django.db.models.functions.comparison.Coalesce(
                        django.db.models.expressions.CombinedExpression(
                            models.F("errors_per_min"),
                            "/",
                            django.db.models.functions.comparison.NullIf(
                                models.F("requests_per_min"), 0.0, output_field=models.FloatField()
                            ),
                        ),
                        0.0,
                        output_field=models.FloatField(),
                    ),
                    descending=True,
                ),
                condition=models.Q(("errors_per_min__gt", 0), ("metrics_at__isnull", False)),
                name="agent_top_error_rate",
            ),
        ),
        migrations.RunPython(create_labels_gin, drop_labels_gin, elidable=False),
    ]
