from django.urls import path

from control import views

app_name = "control"
urlpatterns = [
    path("agents/<uuid:agent_id>/control/<str:action>/", views.agent_control, name="agent"),
    path("control/bulk/", views.bulk_preview, name="bulk_preview"),
    path("control/bulk/start/", views.bulk_start, name="bulk_start"),
    path("control/batches/", views.batches, name="batches"),
    path("control/batches/<uuid:batch_id>/", views.batch, name="batch"),
    path("control/batches/<uuid:batch_id>/undo/", views.batch_undo, name="batch_undo"),
]
