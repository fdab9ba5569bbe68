from django.urls import path

from approvals import views

app_name = "approvals"
urlpatterns = [
    path("approvals/", views.inbox, name="inbox"),
    path("approvals/rules/", views.rules, name="rules"),
    path("approvals/rules/add/", views.rule_add, name="rule_add"),
    path("approvals/rules/<int:approval_rule_id>/remove/", views.rule_remove, name="rule_remove"),
    # Notifications link here (alerts/): keep the name and its arguments (slug, approval_id).
    path("approvals/<uuid:approval_id>/", views.detail, name="detail"),
    path("approvals/<uuid:approval_id>/decide/", views.decide, name="decide"),
]
