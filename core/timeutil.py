from __future__ import annotations

from datetime import datetime


def floor_minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)
