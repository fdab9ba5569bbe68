from django.apps import AppConfig


class IngestConfig(AppConfig):
    """What agents speak: the ingest API and the agent socket."""

    name = "ingest"
    verbose_name = "Agent ingest"
