"""The seed's Python façade: ``from l10console.services import ...``.

The services themselves live in each app's ``services.py``/``selectors.py``; this module
exposes them under the seed's names.
"""

from l10console.config import L10Settings
from l10console.errors import ErrorCode, InterfaceError

__all__ = ["ErrorCode", "InterfaceError", "L10Settings"]
