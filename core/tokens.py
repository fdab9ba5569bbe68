"""API tokens: ``l10_<prefix>_<secret>`` for a tenant's agents and programs,
``l10p_<prefix>_<secret>`` for a person's own use of the API. Only the SHA-256 of the
whole token is stored.

A token carries 256 bits of randomness, so a fast hash is enough: there is nothing to
brute-force, unlike a password.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

SCHEME = "l10"
PERSONAL_SCHEME = "l10p"


@dataclass(frozen=True)
class NewToken:
    plain: str
    prefix: str
    digest: str


def hash_token(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


def new_token(scheme: str = SCHEME) -> NewToken:
    prefix = secrets.token_hex(4)
    plain = f"{scheme}_{prefix}_{secrets.token_urlsafe(32)}"
    return NewToken(plain=plain, prefix=f"{scheme}_{prefix}", digest=hash_token(plain))


def looks_like_token(value: str, scheme: str = SCHEME) -> bool:
    parts = value.split("_", 2)  # the secret itself may contain "_"
    return len(parts) == 3 and parts[0] == scheme and len(parts[1]) == 8 and 20 <= len(parts[2]) <= 64
