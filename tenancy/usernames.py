"""One spelling per username (docs/operations.md, "Sign-in").

A username is stored, looked up and counted by the sign-in lockout in one form: Unicode
NFKC, then case-folded (``ＡＬＩＣＥ``, ``Alice`` and ``alice`` are the same person). Every
save of a user stores that form; the sign-in backend looks a name up in it; on
PostgreSQL a unique index on ``lower(normalize(username, NFKC))`` refuses two users that
differ only by spelling even if a write bypasses the model (0006's migration).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from tenancy import sql


def normalize_username(value: str) -> str:
    """NFKC, case-folded, NFKC again (case folding can undo a composition), stripped."""
    folded = unicodedata.normalize("NFKC", value).casefold()
    return unicodedata.normalize("NFKC", folded).strip()


def store_normalized(sender: type, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """``pre_save`` of the user model: the username is stored normalised, whoever saves it
    (the admin, ``createsuperuser``, the seed, a shell). Django's user model is not ours,
    so a receiver is the one place every write passes through."""
    name = getattr(instance, "username", None)
    if isinstance(name, str):
        instance.username = normalize_username(name)


class NormalizedUsernameBackend(ModelBackend):
    """Django's model backend, looking the user up by the normalised name."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None:
            return None
        return super().authenticate(request, username=normalize_username(username), password=password, **kwargs)

    def get_user(self, user_id: Any) -> Any:
        """The user of a signed-in session: read on every request, so one plain statement
        (``tenancy.sql.user_by_id``), not an ORM query."""
        try:
            user = sql.user_by_id(int(user_id))
        except (TypeError, ValueError):
            return None
        return user if user is not None and self.user_can_authenticate(user) else None


def clean_unique_username(form: forms.ModelForm[Any]) -> str:
    """A form's username, normalised, or a ValidationError when another user has it
    under normalisation (the admin's user forms)."""
    username = normalize_username(form.cleaned_data.get("username") or "")
    if not username:
        raise forms.ValidationError("Enter a username.")
    taken = get_user_model()._default_manager.filter(username=username)
    if form.instance.pk is not None:
        taken = taken.exclude(pk=form.instance.pk)
    if taken.exists():
        raise forms.ValidationError(
            f"A user named “{username}” already exists. Usernames are compared without regard to case "
            "or to Unicode compatibility forms (full-width letters, ligatures), so this one would be the same.",
            code="unique",
        )
    return username
