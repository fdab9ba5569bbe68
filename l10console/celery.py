"""The Celery app. Periodic schedules live in settings.CELERY_BEAT_SCHEDULE."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "l10console.settings")

app = Celery("l10console")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The app of every thread: the apps start tasks through ``celery.current_app`` (core.runner),
# never by importing this module, which nothing below the wiring imports.
app.set_default()
