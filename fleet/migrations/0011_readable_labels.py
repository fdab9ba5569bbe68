# Labels and help texts for Django admin: no change to the tables.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("fleet", "0010_error_rate_capped"),
    ]

    operations = [
        migrations.AlterField(
            model_name="agent",
            name="cpu_percent",
            field=models.FloatField(blank=True, null=True, verbose_name="CPU %"),
        ),
        migrations.AlterField(
            model_name="agent",
            name="delivered_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="delivered"),
        ),
        migrations.AlterField(
            model_name="agent",
            name="delivered_version",
            field=models.PositiveBigIntegerField(
                default=0, help_text="The latest control version the agent was sent.", verbose_name="version delivered"
            ),
        ),
        migrations.AlterField(
            model_name="agent",
            name="desired_changed_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="desired state changed"),
        ),
        migrations.AlterField(
            model_name="agent",
            name="desired_state",
            field=models.CharField(
                choices=[("running", "Running"), ("paused", "Paused"), ("stopped", "Stopped")],
                default="running",
                help_text="What the console tells the agent; changed on the agent's page (audited, sent to the agent).",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="agent",
            name="errors_per_min",
            field=models.FloatField(blank=True, null=True, verbose_name="errors / min"),
        ),
        migrations.AlterField(
            model_name="agent",
            name="external_id",
            field=models.CharField(
                help_text="The name the SDK registers with.", max_length=200, verbose_name="external id"
            ),
        ),
        migrations.AlterField(
            model_name="agent",
            name="labels",
            field=models.JSONField(
                blank=True, default=dict, help_text='As the SDK registered them, e.g. {"team": "search"}.'
            ),
        ),
        migrations.AlterField(
            model_name="agent",
            name="last_heartbeat_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="last heartbeat"),
        ),
        migrations.AlterField(
            model_name="agent",
            name="latency_p95_ms",
            field=models.FloatField(blank=True, null=True, verbose_name="latency p95 (ms)"),
        ),
        migrations.AlterField(
            model_name="agent",
            name="memory_mb",
            field=models.FloatField(blank=True, null=True, verbose_name="memory (MB)"),
        ),
        migrations.AlterField(
            model_name="agent",
            name="metrics_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="figures reported"),
        ),
        migrations.AlterField(
            model_name="agent",
            name="observed_changed_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="observed state changed"),
        ),
        migrations.AlterField(
            model_name="agent",
            name="observed_state",
            field=models.CharField(
                choices=[
                    ("starting", "Starting"),
                    ("running", "Running"),
                    ("paused", "Paused"),
                    ("stopped", "Stopped"),
                    ("error", "Error"),
                    ("unresponsive", "Unresponsive"),
                ],
                default="starting",
                help_text="What the agent last reported (or unresponsive, when it went silent).",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="agent",
            name="requests_per_min",
            field=models.FloatField(blank=True, null=True, verbose_name="requests / min"),
        ),
        migrations.AlterField(
            model_name="agent",
            name="tokens_per_min",
            field=models.FloatField(blank=True, null=True, verbose_name="tokens / min"),
        ),
        migrations.AlterField(
            model_name="agent",
            name="version",
            field=models.PositiveBigIntegerField(
                default=1,
                help_text="Goes up with every change of desired state or quotas.",
                verbose_name="control version",
            ),
        ),
    ]
