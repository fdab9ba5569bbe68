"""What an approval says to the apps above it, which this app does not import: a new
request (``request``), sent after its commit. The alert manager tells its targets
(alerts/apps.py connects it)."""

from __future__ import annotations

from django.dispatch import Signal

requested = Signal()
