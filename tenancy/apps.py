from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_save

        from tenancy.usernames import store_normalized

        # Usernames are stored in one spelling, whoever saves them (tenancy/usernames.py).
        pre_save.connect(store_normalized, sender=get_user_model(), dispatch_uid="tenancy-normalized-username")
