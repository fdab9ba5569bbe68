from django.urls import path

from alerts import rule_views, views

app_name = "alerts"
urlpatterns = [
    path("alerts/", views.alert_list, name="list"),
    path("alerts/<int:alert_id>/", views.alert_detail, name="detail"),
    path("alerts/<int:alert_id>/acknowledge/", views.alert_acknowledge, name="acknowledge"),
    path("alerts/<int:alert_id>/unacknowledge/", views.alert_unacknowledge, name="unacknowledge"),
    path("alerts/<int:alert_id>/snooze/", views.alert_snooze, name="snooze"),
    path("alerts/<int:alert_id>/pause-agent/", views.alert_pause_agent, name="pause_agent"),
    path("alerts/<int:alert_id>/ack/<str:token>/", views.alert_ack_link, name="ack_link"),
    path("alerts/rules/", rule_views.rule_list, name="rules"),
    path("alerts/rules/new/", rule_views.rule_edit, name="rule_new"),
    path("alerts/rules/<int:rule_id>/", rule_views.rule_edit, name="rule_edit"),
    path("alerts/rules/<int:rule_id>/toggle/", rule_views.rule_toggle, name="rule_toggle"),
    path("alerts/silences/", views.silence_list, name="silences"),
    path("alerts/silences/add/", views.silence_add, name="silence_add"),
    path("alerts/silences/<int:silence_id>/expire/", views.silence_expire, name="silence_expire"),
    path("alerts/targets/", rule_views.target_list, name="targets"),
    path("alerts/targets/add/", rule_views.target_add, name="target_add"),
    path("alerts/targets/<int:target_id>/approvals/", rule_views.target_approvals, name="target_approvals"),
    path("alerts/targets/<int:target_id>/delete/", rule_views.target_delete, name="target_delete"),
]
