from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from core import health
from l10console.api import api_not_found, api_urls
from realtime.views import websocket_only
from tenancy import views as tenancy_views

tenant_patterns = [
    path("", include("dashboard.urls")),
    path("", include("tenancy.urls")),
    path("", include("control.urls")),
    path("", include("members.urls")),
    path("", include("alerts.urls")),
    path("", include("audit.urls")),
    path("", include("events.urls")),
    path("", include("costs.urls")),
    path("", include("approvals.urls")),
]

urlpatterns = [
    path("", tenancy_views.home, name="home"),
    path("login/", tenancy_views.login, name="login"),
    path("logout/", tenancy_views.logout, name="logout"),
    path("account/tokens/", tenancy_views.personal_tokens, name="personal_tokens"),
    path("account/tokens/new/", tenancy_views.personal_token_create, name="personal_token_create"),
    path("account/tokens/<int:token_id>/revoke/", tenancy_views.personal_token_revoke, name="personal_token_revoke"),
    # Browsers ask for /favicon.ico where a page names no icon (the API's, Django admin's).
    path("favicon.ico", RedirectView.as_view(url=static("img/favicon.svg"), permanent=True), name="favicon"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("t/<slug:slug>/", include(tenant_patterns)),
    path("ws/live/<slug:slug>/", websocket_only, name="live"),
    path("ws/events", websocket_only, name="events"),
    # Staff sign in where everyone does: one lockout, and a page that answers 503 (not 500)
    # when the lockout's store is down.
    path("admin/login/", tenancy_views.login, name="admin_login"),
    path("admin/", admin.site.urls),
    path("api/v1/", api_urls()),
    re_path(r"^api/", api_not_found, name="api_not_found"),
]
