"""The Python API's data types, importable as ``l10console.models`` (docs/python-api.md).
Not a Django models module: ``l10console`` holds the wiring only and is not an app."""

from audit.facade import AuditQuery
from core.errors import ErrorCode, InterfaceError
from events.facade import EventQuery

__all__ = ["AuditQuery", "ErrorCode", "EventQuery", "InterfaceError"]
