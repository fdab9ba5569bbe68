# The API token model now lives in tenancy (its 0003); its table stays, so state only.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('fleet', '0005_stop_unconfirmed'),
        ('tenancy', '0003_apitoken_from_fleet'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='ApiToken')],
        ),
    ]
