"""Django's admin with the console's site (``l10console.admin_site``) as its default.
Apart from it: an app's config is imported before any model is, the site after."""

from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    default_site = "l10console.admin_site.ConsoleAdminSite"
