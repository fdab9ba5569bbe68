# The moved API token table takes tenancy's name.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('tenancy', '0003_apitoken_from_fleet'),
        ('fleet', '0006_apitoken_to_tenancy'),
    ]

    operations = [
        migrations.AlterModelTable(name='apitoken', table=None),
    ]
