from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.errors import ErrorCode
from core.http import ConsoleRequest
from tenancy import lockout, selectors, services
from tenancy.access import memberships_of
from tenancy.decorators import LAST_TENANT_SESSION_KEY, tenant_view
from tenancy.models import ApiToken, Membership, PersonalToken, Role, Scope

log = logging.getLogger(__name__)


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    if request.user.is_authenticated and request.method == "GET":
        return redirect(next_url or "home")

    form = AuthenticationForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "GET":
        return render(request, "tenancy/login.html", {"form": form, "next": next_url})

    # The lockout counts the name as users are stored (normalised): every spelling of a
    # name shares one counter, and the backend finds the one user it names.
    credentials = {"username": request.POST.get("username", "")[:150]}
    username = credentials["username"]
    try:
        if lockout.is_locked(request, credentials):
            error, status = f"{lockout.THROTTLED_MESSAGE} ({ErrorCode.LOGIN_THROTTLED})", 429
        elif form.is_valid():
            auth_login(request, form.get_user())
            return redirect(next_url or "home")
        else:
            said = " ".join(str(e) for e in form.non_field_errors()) or "Enter your username and password."
            error, status = f"{said} ({ErrorCode.LOGIN_FAILED})", 400
    except Exception:
        log.exception("sign-in lockout unavailable")
        error, status = f"Sign-in is briefly unavailable. Try again in a minute. ({ErrorCode.SERVICE_UNAVAILABLE})", 503
    context = {"form": AuthenticationForm(request, initial={"username": username}), "next": next_url, "error": error}
    return render(request, "tenancy/login.html", context, status=status)


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    auth_logout(request)
    return redirect("login")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The last tenant used, else the first one; a page of its own when there is none."""
    memberships = memberships_of(request.user)
    if not memberships:
        return render(request, "tenancy/no_tenant.html", status=200)
    last = request.session.get(LAST_TENANT_SESSION_KEY)
    chosen = next((m for m in memberships if m.tenant.slug == last), memberships[0])
    return redirect(reverse("dashboard:home", args=[chosen.tenant.slug]))


# --- a person's own API tokens ----------------------------------------------------------
# Token pages show a new token's plain text once: every answer is no-store (never_cache),
# so neither the browser nor a proxy keeps a copy.


def _token_options(request: HttpRequest) -> tuple[list[str] | None, int | None]:
    """The scopes and expiry (days) chosen on a token form; ValueError for a bad expiry."""
    scopes = request.POST.getlist("scopes") if request.POST.get("scopes_chosen") else None
    days = request.POST.get("expires_in_days", "").strip()
    if not days:
        return scopes, None
    if not days.isdigit() or len(days) > 5:
        raise ValueError("Expiry is a number of days (e.g. 90), or empty for a token that does not expire.")
    return scopes, int(days)


def _form_context(request: HttpRequest) -> dict[str, object]:
    """What the form showed, to show it again with its error."""
    return {
        "name": request.POST.get("name", ""),
        "chosen_scopes": request.POST.getlist("scopes"),
        "expires_in_days": request.POST.get("expires_in_days", "")[:5],
    }


def _personal_tokens(request: HttpRequest, status: int = 200, **context: object) -> HttpResponse:
    tokens = PersonalToken.objects.filter(user_id=request.user.pk or 0)
    context.setdefault("chosen_scopes", sorted(PersonalToken.DEFAULT_SCOPES))
    context = {"tokens": tokens, "scope_choices": _scope_choices(PersonalToken), "now": timezone.now(), **context}
    return render(request, "tenancy/personal_tokens.html", context, status=status)


def _scope_choices(kind: type[ApiToken] | type[PersonalToken]) -> list[tuple[str, str]]:
    return [(value, label) for value, label in Scope.choices if value in kind.ALLOWED_SCOPES]


@never_cache
@login_required
@require_http_methods(["GET"])
def personal_tokens(request: HttpRequest) -> HttpResponse:
    return _personal_tokens(request)


@never_cache
@login_required
@require_POST
def personal_token_create(request: HttpRequest) -> HttpResponse:
    try:
        scopes, days = _token_options(request)
        token, plain = services.personal_token_create(
            user=request.user,  # type: ignore[arg-type]
            name=request.POST.get("name", ""),
            scopes=scopes,
            expires_in_days=days,
        )
    except ValueError as exc:
        return _personal_tokens(
            request, 400, error=f"{exc} ({ErrorCode.TOKEN_REQUEST_INVALID})", **_form_context(request)
        )
    # Shown once, on this response only; never stored in plain text.
    return _personal_tokens(request, 201, new_token=plain, new_token_name=token.name)


@never_cache
@login_required
@require_POST
def personal_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    # Another person's token is a 404, as one that does not exist.
    token = get_object_or_404(PersonalToken, pk=token_id, user_id=request.user.pk)
    if services.personal_token_revoke(token=token, by=request.user):  # type: ignore[arg-type]  # signed in
        messages.success(request, f"Token “{token.name}” is revoked.")
    else:
        messages.info(request, f"Token “{token.name}” was already revoked.")
    return redirect("personal_tokens")


# --- a tenant's API tokens (admins) -------------------------------------------------------


def _tenant_tokens(
    request: ConsoleRequest, membership: Membership, status: int = 200, **context: object
) -> HttpResponse:
    tokens = selectors.tokens_of(membership.tenant)
    context.setdefault("chosen_scopes", sorted(ApiToken.DEFAULT_SCOPES))
    context = {"tokens": tokens, "scope_choices": _scope_choices(ApiToken), "now": timezone.now(), **context}
    return render(request, "tenancy/tokens.html", context, status=status)


@never_cache
@require_GET
@tenant_view(need=Role.ADMIN)
def tokens(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    return _tenant_tokens(request, membership)


@never_cache
@require_POST
@tenant_view(need=Role.ADMIN)
def token_create(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    try:
        scopes, days = _token_options(request)
        token, plain = services.token_create(
            tenant=membership.tenant,
            name=request.POST.get("name", ""),
            created_by=request.user,
            scopes=scopes,
            expires_in_days=days,
        )
    except ValueError as exc:
        return _tenant_tokens(
            request, membership, 400, error=f"{exc} ({ErrorCode.TOKEN_REQUEST_INVALID})", **_form_context(request)
        )
    # Shown once, on this response only; never stored in plain text, not even in the session.
    return _tenant_tokens(request, membership, 201, new_token=plain, new_token_name=token.name)


@never_cache
@require_POST
@tenant_view(need=Role.ADMIN)
def token_revoke(request: ConsoleRequest, membership: Membership, token_id: int) -> HttpResponse:
    token = selectors.get_token_for_user(request.user, membership.tenant, token_id)
    if services.token_revoke(token=token, by=request.user):
        messages.success(request, f"Token “{token.name}” is revoked; agents using it can no longer report.")
    else:
        messages.info(request, f"Token “{token.name}” was already revoked.")
    return redirect("tenancy:tokens", membership.tenant.slug)
