from django.urls import path

from alerts import views

app_name = "alerts"
urlpatterns = [
    path("alerts/", views.alert_list, name="list"),
    path("alerts/<int:alert_id>/", views.alert_detail, name="detail"),
    path("alerts/<int:alert_id>/acknowledge/", views.alert_acknowledge, name="acknowledge"),
    path("alerts/<int:alert_id>/unacknowledge/", views.alert_unacknowledge, name="unacknowledge"),
    path("alerts/<int:alert_id>/snooze/", views.alert_snooze, name="snooze"),
]
