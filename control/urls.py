from django.urls import path

from control import views

app_name = "control"
urlpatterns = [
    path("agents/<uuid:agent_id>/control/<str:action>/", views.agent_control, name="agent"),
]
