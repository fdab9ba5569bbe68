from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bottom package: helpers every app may use (errors, settings, caches, the task
    runner, breakers, the rate limiter, SQL helpers); it imports no app. An app only for
    its template tags (``{% load console %}``)."""

    name = "core"
    verbose_name = "Core"
