from django.urls import path

from dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="home"),
    path("agents/", views.agents, name="agents"),
    path("agents/<uuid:agent_id>/", views.agent_detail, name="agent"),
]
