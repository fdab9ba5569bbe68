from django.urls import path

from audit import views

app_name = "audit"
urlpatterns = [
    path("audit/", views.trail, name="trail"),
    path("audit/export/", views.download, name="export"),
    path("audit/<int:entry_id>/", views.entry, name="entry"),
]
