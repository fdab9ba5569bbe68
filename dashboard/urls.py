from django.urls import path

from dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.tenant_home, name="home"),
    path("agents/", views.agents, name="agents"),
]
