"""Tokens get scopes and an optional expiry. Tokens made before keep working as they did:
no expiry, and the scopes their kind could always use (docs/api.md, "Token scopes and
expiry"): a tenant's token ingest and read, a person's token read and control."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tenancy", "0004_apitoken_table")]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(blank=True, help_text="Empty: the token never expires.", null=True),
        ),
        migrations.AddField(
            model_name="personaltoken",
            name="expires_at",
            field=models.DateTimeField(blank=True, help_text="Empty: the token never expires.", null=True),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="scopes",
            field=models.CharField(
                default="ingest read", help_text="Space-separated: read, control, ingest.", max_length=64
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="personaltoken",
            name="scopes",
            field=models.CharField(
                default="control read", help_text="Space-separated: read, control, ingest.", max_length=64
            ),
            preserve_default=False,
        ),
    ]
