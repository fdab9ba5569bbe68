"""The seed's data types, importable as ``l10console.models`` (no Django models here)."""

from l10console.errors import ErrorCode, InterfaceError

__all__ = ["ErrorCode", "InterfaceError"]
